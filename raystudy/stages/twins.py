"""The twins stage: per (metric, K, seed, variant, snapshot), model A's and its twin's eval
samples compared (``raystudy.compute.twins``), one ``twins`` part per unit. Each sample's distance
to its own K-set is read from the neighbors table (the knn stage's); the rest is computed in the
driver (no Ray): a few brute-force distance matrices per unit."""

from __future__ import annotations

import numpy as np

from .. import axes, tables
from ..compute.twins import twin_columns, twin_of


def twin_units(cfg) -> list:
    """A unit per model A (twin 0) of every metric; none without ``twins``."""
    if not cfg.twins:
        return []
    return [axes.Unit(k, s, m, a) for m in cfg.knn.metrics for a in axes.model_axes(cfg) if a.twin == 0
            for k in cfg.ks for s in cfg.seeds]


def read_twin(cfg, study_dir, unit) -> dict:
    """One twin's eval samples (sample_id, sample_seed, images) and each one's distance to its own
    K-set in the unit's metric (d_own: the neighbors table's nearest ``train_dist``)."""
    import pyarrow.compute as pc

    seeds = tables.read_unit(study_dir, "samples", unit, cfg, set="eval", columns=["sample_id", "sample_seed"])
    ids, images = tables.read_samples(study_dir, unit.K, unit.seed, "eval", unit.axis, unit.axis.seen(cfg))
    nb = tables.read_unit(study_dir, "neighbors", unit, cfg, columns=["sample_id", "train_dist"])
    if not np.array_equal(nb["sample_id"].to_numpy(), ids):
        raise FileNotFoundError(f"K={unit.K} seed={unit.seed} {unit.axis}: the neighbors table holds {nb.num_rows} "
                                f"of the {len(ids)} eval samples in {unit.metric}: run the knn stage")
    return {"sample_id": ids, "sample_seed": seeds["sample_seed"].to_numpy(), "images": images,
            "d_own": pc.list_element(nb["train_dist"], 0).to_numpy()}


def run_twins(stage, cfg, study_dir, todo) -> None:
    from ..datasets import load_dataset
    from ..metrics import get_metric

    dataset = load_dataset(cfg.data)
    metrics = {}
    for unit in todo:
        name = unit.metric
        metrics.setdefault(name, get_metric(name, cfg.knn.weights_dir))
        pair = [read_twin(cfg, study_dir, u) for u in (unit, unit.at(twin_of(unit.axis)))]
        cols = twin_columns(cfg, dataset, unit, *pair, metrics[name])
        tables.write_part(study_dir, "twins", stage.part(unit), tables.to_table("twins", cols, stage.meta(cfg, unit)))
