"""The chance level of a study: held-out real images labelled with the samples' rule.

A perfect generalizer's samples are fresh draws from the data distribution, as the held-out split is
(``splits.held_out``: the dataset's own test split where it has one; no K-set holds it). So
the fractions the labelling rule gives held-out images at a K are what "memorized" / "spurious" mean
by chance there: a sample fraction at or below them is no evidence of memorization. The split's
first half are the queries: d_train is the distance to the nearest image of the K-set; d_synth the
distance to the nearest image of the second half, which plays the samples' `ref` set (it has
data.held_out - data.held_out // 2 images, the ref set generate.n_samples: spurious fractions
compare fairly when the two are alike). The ratio test is on per-pixel L2, as for samples.

Pixel metrics only (l2, euclidean: brute force, exact); for an LPIPS metric the null is not
computed (its row has n = 0 and NaN fractions). Plain numpy, no Ray, no torch.
"""

from __future__ import annotations

import numpy as np

from ..splits import held_out, kset
from .classify import fractions, label_distances

PIXEL_METRICS = ("l2", "euclidean")


def split(cfg, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(queries, references): the held-out split's first half and the rest, as dataset indices."""
    held = held_out(cfg, dataset)
    return held[: len(held) // 2], held[len(held) // 2:]


def null_labels(cfg, dataset, metric: str, k: int, twin: int = 0) -> dict | None:
    """d_train, d_synth, label, ratio, ratio_memorized of the held-out queries at K (None: not computed),
    against the K-set of the study (twin 0) or of the twins (raystudy.axes)."""
    from ..axes import Axis
    from ..metrics import get_metric
    from ..metrics.search import nearest_two

    if metric not in PIXEL_METRICS or cfg.data.held_out < 2:
        return None
    queries, refs = split(cfg, dataset)
    train = kset(cfg, dataset, Axis(twin=twin), k)
    m = get_metric(metric)
    qx = dataset.get(queries)
    q = m.embed(qx)
    # The two nearest, as the neighbors table's train_dist and synth_dist columns.
    train_dist = m.from_sq(nearest_two(q, dataset, train, m.embed))
    synth_dist = m.from_sq(nearest_two(q, dataset, refs, m.embed))
    # The ratio test is on per-pixel L2 whatever the metric: for l2, train_dist itself.
    if metric == "l2":
        l2 = train_dist
    else:
        pix = get_metric("l2")
        l2 = pix.from_sq(nearest_two(pix.embed(qx), dataset, train, pix.embed))
    return label_distances(train_dist, synth_dist, l2, cfg.classify.delta_m[metric], cfg.classify.delta_s[metric])


def null_fractions(cfg, dataset, metric: str, k: int, seed: int, twin: int = 0) -> dict:
    """Table ``null_fractions``' row for (K, seed, metric) (without the axis columns); the same for
    every training seed (the null depends on the K-set and the split only), stored per seed to match
    its unit."""
    lab = null_labels(cfg, dataset, metric, k, twin)
    if lab is None:
        return {"K": [k], "seed": [seed], "metric": [metric], "n": [0], "memorized": [np.nan],
                "spurious": [np.nan], "generalized": [np.nan], "ratio_memorized": [np.nan]}
    n = len(lab["label"])
    return fractions(np.full(n, k), np.full(n, seed), np.full(n, metric), lab["label"], lab["ratio_memorized"])
