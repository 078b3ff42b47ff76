"""Twin models on disjoint data: how alike are two models' samples from the same noise?

Per (K, seed, variant, snapshot) a study with ``twins: true`` has model A (twin 0, the study's
K-set) and model B (twin 1, a disjoint K-set of the same size: ``axes.kset_indices``), both
sampled from the same per-sample seeds. Kadkhodaie et al. (ICLR 2024): while each model copies
its own training set the twins disagree (their samples are images of two disjoint sets); once
they generalize, the same noise gives nearly the same image. The ``twins`` table keeps, per eval
sample, the twin distance and each sample's nearest distance to its own and to the other's
K-set, in the metric's units (l2: per-pixel RMS, as neighbors/labels), so the threshold of
reproducibility (``classify.delta_m``) is chosen in analysis (``analysis.phase.reproducibility``).
Plain numpy, no Ray; exact brute force (the K-sets are read ``chunk`` images at a time).
"""

from __future__ import annotations

import numpy as np

from .. import tables
from ..axes import Axis, split_unit, unit_kset
from ..metrics.search import nearest_two


def twin_of(axis: Axis) -> Axis:
    return Axis(axis.variant, 1, axis.images_seen)


def twin_columns(cfg, study_dir, dataset, unit, metric=None) -> dict:
    """The ``twins`` rows of unit (metric, axis of model A, K, seed)."""
    from ..metrics import get_metric

    name, a, k, seed = split_unit(unit)
    b = twin_of(a)
    metric = metric or get_metric(name, cfg.knn.weights_dir)
    got = {}
    for ax in (a, b):
        t = tables.read_unit(study_dir, "samples", k, seed, set="eval", axis=ax, images_seen=ax.seen(cfg),
                             columns=["sample_id", "sample_seed"])
        ids, x = tables.read_samples(study_dir, k, seed, "eval", ax, ax.seen(cfg))
        got[ax.twin] = (ids, t["sample_seed"].to_numpy(), x)
    (ids_a, seeds_a, xa), (ids_b, seeds_b, xb) = got[0], got[1]
    if not (np.array_equal(ids_a, ids_b) and np.array_equal(seeds_a, seeds_b)):
        raise RuntimeError(f"K={k} seed={seed} {a}: the twins' eval samples do not share ids and seeds")
    ea, eb = metric.embed(xa).astype(np.float64), metric.embed(xb).astype(np.float64)
    set_a, set_b = unit_kset(cfg, dataset, a, k), unit_kset(cfg, dataset, b, k)

    def nearest(q, idx):
        return metric.from_sq(nearest_two(q, dataset, idx, metric.embed)[:, 0])

    n = len(ids_a)
    return {"K": np.full(n, k), "seed": np.full(n, seed), "variant": np.full(n, a.variant, dtype=object),
            "images_seen": np.full(n, a.seen(cfg)), "metric": np.full(n, name, dtype=object),
            "sample_id": ids_a, "sample_seed": seeds_a,
            "d_twin": metric.from_sq(((ea - eb) ** 2).sum(1)),
            "d_own_a": nearest(ea, set_a), "d_other_a": nearest(ea, set_b),
            "d_own_b": nearest(eb, set_b), "d_other_b": nearest(eb, set_a)}
