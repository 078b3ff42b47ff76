"""Labels and fractions: the paper's rule, applied to raw distances.

memorized:   d_train <= delta_m
spurious:    not memorized and d_synth <= delta_s
generalized: neither
Thresholds are in the metric's own units; raw distances stay in the tables, so analysis
relabels with this same function without recomputing anything. numpy and pandas only:
``raystudy.analysis`` imports it without torch or Ray.
"""

from __future__ import annotations

import numpy as np

from ..tables import LABELS

RATIO_THRESHOLD = 1.0 / 3.0

# The default thresholds (the config's ``classify`` section and analysis read these): l2 is
# per-pixel RMS on [-1, 1] images, euclidean the plain distance (the circle's plane); LPIPS
# values are the paper's delta_m = 0.03, delta_s = 0.02.
DELTA_M = {"l2": 0.1, "euclidean": 0.02, "lpips-alex": 0.03, "lpips-vgg": 0.03}
DELTA_S = {"l2": 0.1, "euclidean": 0.02, "lpips-alex": 0.02, "lpips-vgg": 0.02}


def label_samples(d_train, d_synth, delta_m: float, delta_s: float) -> np.ndarray:
    d_train, d_synth = np.asarray(d_train, float), np.asarray(d_synth, float)
    memorized = d_train <= delta_m
    spurious = ~memorized & (d_synth <= delta_s)
    return np.where(memorized, "memorized", np.where(spurious, "spurious", "generalized")).astype(object)


def ratio_test(nn1, nn2, threshold: float = RATIO_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """||x - NN1|| / ||x - NN2|| and whether it is below ``threshold``: the ratio test of Gu et al.
    2023 ("On memorization in diffusion models", threshold 1/3). Not Carlini et al. 2023's criterion,
    which divides by the mean distance to the 50 nearest neighbours (alpha = 0.5): a different test.

    A missing second neighbour (K = 1: stored as distance inf, or NaN) has no ratio:
    the ratio is NaN and the sample is not ratio-memorized. An exact duplicate of two
    identical training images (nn1 = nn2 = 0) keeps ratio 0, a copy (Gu et al.'s code divides and
    gets NaN, so it never calls it memorized); nn2 = 0 < nn1
    (impossible for sorted neighbours) gives inf.
    """
    nn1, nn2 = np.asarray(nn1, float), np.asarray(nn2, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(nn2 > 0, nn1 / nn2, np.where(nn1 > 0, np.inf, 0.0))
    ratio = np.where(np.isfinite(nn2) & ~np.isnan(nn1), ratio, np.nan)
    return ratio, ratio < threshold  # NaN < threshold is False


def label_distances(train, synth, l2, delta_m: float, delta_s: float) -> dict[str, np.ndarray]:
    """One set of samples labelled from its distances: the ``labels`` columns d_train, d_synth, label,
    ratio and ratio_memorized.

    ``train`` and ``synth`` (n, >= 1): each sample's nearest distances, nearest first, in the metric's
    units, to the K-set and to the reference set; ``l2`` (n, >= 2): its per-pixel L2 distances to the
    two nearest of the K-set, the ratio test's whatever the metric (inf where K = 1)."""
    d_train, d_synth = np.asarray(train, float)[:, 0], np.asarray(synth, float)[:, 0]
    l2 = np.asarray(l2, float)
    ratio, ratio_memorized = ratio_test(l2[:, 0], l2[:, 1])
    return {"d_train": d_train, "d_synth": d_synth, "label": label_samples(d_train, d_synth, delta_m, delta_s),
            "ratio": ratio, "ratio_memorized": ratio_memorized}


def fractions(K, seed, metric, labels, ratio_memorized=None) -> dict[str, list]:
    """One row per (K, seed, metric): n, the fraction of each label, and of ratio-test copies."""
    import pandas as pd

    rm = np.zeros(len(labels), bool) if ratio_memorized is None else np.asarray(ratio_memorized, bool)
    df = pd.DataFrame({"K": K, "seed": seed, "metric": metric, "label": labels, "ratio_memorized": rm})
    out = {c: [] for c in ("K", "seed", "metric", "n", *LABELS, "ratio_memorized")}
    for (k, s, m), g in df.groupby(["K", "seed", "metric"], sort=True):
        counts = g["label"].value_counts()
        out["K"].append(int(k))
        out["seed"].append(int(s))
        out["metric"].append(m)
        out["n"].append(len(g))
        for lab in LABELS:
            out[lab].append(float(counts.get(lab, 0)) / len(g))
        out["ratio_memorized"].append(float(g["ratio_memorized"].mean()))
    return out
