"""Labels and fractions: the paper's rule, applied to stored raw distances.

memorized:   d_train <= delta_m
spurious:    not memorized and d_synth <= delta_s
generalized: neither
Thresholds are in the metric's own units; raw distances stay in the tables, so
analysis can re-threshold without recomputing anything.
"""

from __future__ import annotations

import numpy as np

from .tables import LABELS

RATIO_THRESHOLD = 1.0 / 3.0


def label_samples(d_train, d_synth, delta_m: float, delta_s: float) -> np.ndarray:
    d_train, d_synth = np.asarray(d_train, float), np.asarray(d_synth, float)
    memorized = d_train <= delta_m
    spurious = ~memorized & (d_synth <= delta_s)
    return np.where(memorized, "memorized", np.where(spurious, "spurious", "generalized")).astype(object)


def ratio_test(nn1, nn2, threshold: float = RATIO_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """||x - NN1|| / ||x - NN2|| and whether it is below ``threshold`` (Carlini et al. 2023).

    A missing second neighbour (K = 1: stored as distance inf, or NaN) has no ratio:
    the ratio is NaN and the sample is not ratio-memorized. An exact duplicate of two
    identical training images (nn1 = nn2 = 0) keeps ratio 0, a copy; nn2 = 0 < nn1
    (impossible for sorted neighbours) gives inf.
    """
    nn1, nn2 = np.asarray(nn1, float), np.asarray(nn2, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(nn2 > 0, nn1 / nn2, np.where(nn1 > 0, np.inf, 0.0))
    ratio = np.where(np.isfinite(nn2) & ~np.isnan(nn1), ratio, np.nan)
    return ratio, ratio < threshold  # NaN < threshold is False


def fractions(K, seed, metric, labels, ratio_memorized=None) -> dict[str, list]:
    """One row per (K, seed, metric): n, the fraction of each label, and of ratio-test copies."""
    import pandas as pd

    rm = np.zeros(len(labels), bool) if ratio_memorized is None else np.asarray(ratio_memorized, bool)
    df = pd.DataFrame({"K": K, "seed": seed, "metric": metric, "label": labels, "ratio_memorized": rm})
    out = {c: [] for c in ("K", "seed", "metric", "n", *LABELS, "ratio_memorized")}
    for (k, s, m), g in df.groupby(["K", "seed", "metric"], sort=True):
        counts = g["label"].value_counts()
        out["K"].append(int(k)); out["seed"].append(int(s)); out["metric"].append(m)
        out["n"].append(len(g))
        for lab in LABELS:
            out[lab].append(float(counts.get(lab, 0)) / len(g))
        out["ratio_memorized"].append(float(g["ratio_memorized"].mean()))
    return out


# -- the stage: neighbors -> labels and fractions, one part each per (metric, K, seed)

def _neighbors(study_dir, metric: str, k: int, seed: int):
    import pyarrow.compute as pc

    from . import tables

    t = tables.read(study_dir, "neighbors", filters=(pc.field("metric") == metric) & (pc.field("K") == k)
                    & (pc.field("seed") == seed))
    return t.sort_by("sample_id")


def run_classify(stage, cfg, study_dir, todo) -> None:
    from . import tables

    for metric, k, seed in todo:
        t = _neighbors(study_dir, metric, k, seed)
        train = tables.list_to_numpy(t["train_dist"])
        d_train, d_synth = train[:, 0], tables.list_to_numpy(t["synth_dist"])[:, 0]
        labels = label_samples(d_train, d_synth, cfg.classify.delta_m[metric], cfg.classify.delta_s[metric])
        # The ratio test is defined on per-pixel L2 to the training set, whatever metric labels the row;
        # a missing second neighbour (K = 1) is stored as inf, which ratio_test turns into "undefined".
        l2 = train if metric == "l2" else tables.list_to_numpy(_neighbors(study_dir, "l2", k, seed)["train_dist"])
        ratio, ratio_mem = ratio_test(l2[:, 0], l2[:, 1])
        n = len(t)
        manifold = [None] * n
        if cfg.data.name == "manifold":
            from .generate import read_samples
            from .manifold import manifold_error

            manifold = manifold_error(read_samples(study_dir, k, seed, "eval")[1])
        meta, part = stage.meta(cfg, (metric, k, seed)), stage.part((metric, k, seed))
        tables.write_part(study_dir, "labels", part, tables.to_table("labels", {
            "K": np.full(n, k), "seed": np.full(n, seed), "sample_id": t["sample_id"].to_numpy(),
            "metric": np.full(n, metric), "d_train": d_train, "d_synth": d_synth, "label": labels,
            "ratio": ratio, "ratio_memorized": ratio_mem, "manifold_error": manifold,
        }, meta))
        tables.write_part(study_dir, "fractions", part, tables.to_table(
            "fractions", fractions(np.full(n, k), np.full(n, seed), np.full(n, metric), labels, ratio_mem), meta))
