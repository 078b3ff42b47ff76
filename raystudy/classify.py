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
    """||x - NN1|| / ||x - NN2|| and whether it is below ``threshold`` (Carlini et al. 2023)."""
    nn1, nn2 = np.asarray(nn1, float), np.asarray(nn2, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(nn2 > 0, nn1 / nn2, np.where(nn1 > 0, np.inf, 0.0))
    return ratio, ratio < threshold


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


# -- the stage: neighbors -> labels (one part per metric, K, seed) -> fractions

def _labels_for(cfg, study_dir, metric: str, k: int, seed: int):
    import pyarrow.compute as pc

    from . import tables
    from .knn import part_name

    def nb(m):
        t = tables.read(study_dir, "neighbors", filters=(pc.field("metric") == m) & (pc.field("K") == k)
                        & (pc.field("seed") == seed))
        return t.sort_by("sample_id")

    t = nb(metric)
    train = tables.list_to_numpy(t["train_dist"])
    synth = tables.list_to_numpy(t["synth_dist"])
    d_train, d_synth = train[:, 0], synth[:, 0]
    labels = label_samples(d_train, d_synth, cfg.classify.delta_m[metric], cfg.classify.delta_s[metric])
    # The ratio test is defined on per-pixel L2 to the training set, whatever metric labels the row.
    l2 = train if metric == "l2" else tables.list_to_numpy(nb("l2")["train_dist"])
    if l2.shape[1] >= 2 and len(l2) == len(t):
        ratio, ratio_mem = ratio_test(l2[:, 0], l2[:, 1])
    else:  # K = 1 has no second neighbour
        ratio, ratio_mem = np.full(len(t), np.nan), np.zeros(len(t), dtype=bool)
    manifold = _manifold_error(cfg, study_dir, k, seed, len(t))
    n = len(t)
    table = tables.to_table("labels", {
        "K": np.full(n, k), "seed": np.full(n, seed), "sample_id": t["sample_id"].to_numpy(),
        "metric": np.full(n, metric), "d_train": d_train, "d_synth": d_synth, "label": labels,
        "ratio": ratio, "ratio_memorized": ratio_mem, "manifold_error": manifold,
    }, meta=tables.dumps_meta(study=cfg.study.name, classify_hash=cfg.section_hash("classify")))
    tables.write_part(study_dir, "labels", part_name(metric, k, seed), table)


def _manifold_error(cfg, study_dir, k, seed, n):
    if cfg.data.name != "manifold":
        return [None] * n
    from .knn import read_samples
    from .manifold import manifold_error

    _, images = read_samples(study_dir, k, seed, "eval")
    return manifold_error(images)


def run_classify(cfg, study_dir) -> bool:
    """Label every (metric, K, seed) whose labels are missing or used other thresholds;
    rewrite ``fractions`` when any label changed. Returns whether anything was written."""
    from . import tables
    from .knn import part_name

    h = cfg.section_hash("classify")
    changed = False
    for metric in cfg.knn.metrics:
        for k in cfg.ks:
            for seed in cfg.seeds:
                part = part_name(metric, k, seed)
                if tables.has_part(study_dir, "labels", part) and \
                        tables.part_meta(study_dir, "labels", part).get("classify_hash") == h:
                    continue
                _labels_for(cfg, study_dir, metric, k, seed)
                changed = True
    if changed or not tables.has_part(study_dir, "fractions", "all"):
        lab = tables.read_pandas(study_dir, "labels", columns=["K", "seed", "metric", "label", "ratio_memorized"])
        lab = lab[lab.K.isin(cfg.ks) & lab.seed.isin(cfg.seeds) & lab.metric.isin(cfg.knn.metrics)]
        cols = fractions(lab.K.to_numpy(), lab.seed.to_numpy(), lab.metric.to_numpy(), lab.label.to_numpy(),
                         lab.ratio_memorized.to_numpy())
        tables.write_part(study_dir, "fractions", "all", tables.to_table(
            "fractions", cols, meta=tables.dumps_meta(study=cfg.study.name, classify_hash=h)))
        changed = True
    return changed
