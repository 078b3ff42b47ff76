"""Twin models on disjoint data: how alike are two models' samples from the same noise?

Per (K, seed, variant, snapshot) a study with ``twins: true`` has model A (twin 0, the study's
K-set) and model B (twin 1, a disjoint K-set of the same size: ``splits.kset_indices``), both
sampled from the same per-sample seeds. Kadkhodaie et al. (ICLR 2024): while each model copies
its own training set the twins disagree (their samples are images of two disjoint sets); once
they generalize, the same noise gives nearly the same image. The ``twins`` table keeps, per eval
sample, the twin distance and each sample's nearest distance to its own and to the other's
K-set, in the metric's units (l2: per-pixel RMS, as neighbors/labels), so the threshold of
reproducibility (``classify.delta_m``) is chosen in analysis (``analysis.phase.reproducibility``).
The distance to its own K-set is the knn stage's (the neighbors table's nearest ``train_dist``,
which the twins stage reads and passes in); the one to the other's K-set is searched here by
exact brute force (the K-set read ``chunk`` images at a time). Plain numpy, no Ray, no tables.
"""

from __future__ import annotations

import numpy as np

from ..axes import Axis
from ..metrics.search import nearest_two
from ..splits import kset


def twin_of(axis: Axis) -> Axis:
    return Axis(axis.variant, 1, axis.images_seen)


def twin_columns(cfg, dataset, unit, a: dict, b: dict, metric=None) -> dict:
    """The ``twins`` rows of unit (metric, axis of model A, K, seed) from model A's and model B's
    eval samples, ``a`` and ``b``: each a dict of sample_id, sample_seed, images (n, C, H, W) and
    d_own (each sample's distance to its own model's K-set, in the metric's units)."""
    from ..metrics import get_metric

    name, axis_a, k, seed = unit.metric, unit.axis, unit.K, unit.seed
    metric = metric or get_metric(name, cfg.knn.weights_dir)
    if not (np.array_equal(a["sample_id"], b["sample_id"]) and np.array_equal(a["sample_seed"], b["sample_seed"])):
        raise RuntimeError(f"K={k} seed={seed} {axis_a}: the twins' eval samples do not share ids and seeds")
    ea, eb = metric.embed(a["images"]).astype(np.float64), metric.embed(b["images"]).astype(np.float64)
    set_a, set_b = kset(cfg, dataset, axis_a, k), kset(cfg, dataset, twin_of(axis_a), k)

    def nearest(q, idx):
        return metric.from_sq(nearest_two(q, dataset, idx, metric.embed)[:, 0])

    n = len(a["sample_id"])
    return {"K": np.full(n, k), "seed": np.full(n, seed), "variant": np.full(n, axis_a.variant, dtype=object),
            "images_seen": np.full(n, axis_a.seen(cfg)), "metric": np.full(n, name, dtype=object),
            "sample_id": a["sample_id"], "sample_seed": a["sample_seed"],
            "d_twin": metric.from_sq(((ea - eb) ** 2).sum(1)),
            "d_own_a": a["d_own"], "d_other_a": nearest(ea, set_b),
            "d_own_b": b["d_own"], "d_other_b": nearest(eb, set_a)}
