"""The twins stage: per (metric, K, seed, variant, snapshot), model A's and its twin's eval
samples compared (``raystudy.compute.twins``), one ``twins`` part per unit. Runs in the driver (no Ray):
the work is a few brute-force distance matrices per unit."""

from __future__ import annotations

from .. import axes, tables
from ..compute.twins import twin_columns


def twin_units(cfg) -> list:
    """A unit per model A (twin 0) of every metric; none without ``twins``."""
    if not cfg.twins:
        return []
    return [axes.make_unit(m, a, k, s) for m in cfg.knn.metrics for a in axes.model_axes(cfg) if a.twin == 0
            for k in cfg.ks for s in cfg.seeds]


def run_twins(stage, cfg, study_dir, todo) -> None:
    from ..datasets import load_dataset
    from ..metrics import get_metric

    dataset = load_dataset(cfg.data)
    metrics = {}
    for unit in todo:
        name = unit[0]
        metrics.setdefault(name, get_metric(name, cfg.knn.weights_dir))
        cols = twin_columns(cfg, study_dir, dataset, unit, metrics[name])
        tables.write_part(study_dir, "twins", stage.part(unit), tables.to_table("twins", cols, stage.meta(cfg, unit)))
