"""The classify stage: stored neighbours -> ``labels`` and ``fractions``, one part each per
(metric, K, seed), by ``raystudy.compute.classify``, and the chance level ``null_fractions``
(``raystudy.compute.null``: held-out images against the K-set, brute force). Runs in the driver (no Ray)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .. import axes, tables
from ..compute.classify import fractions, label_distances


def run_classify(stage, cfg, study_dir, todo) -> None:
    from ..compute.null import null_fractions
    from ..datasets import load_dataset

    dataset = load_dataset(cfg.data)
    nulls: dict = {}  # (metric, K, twin) -> row: one computation for every seed, variant and snapshot
    for unit in todo:
        metric, axis, k, seed = unit.metric, unit.axis, unit.K, unit.seed
        # Only the distances the labels need, never the index lists.
        t = tables.read_unit(study_dir, "neighbors", unit, cfg, columns=["sample_id", "train_dist", "synth_dist"])
        train = tables.list_to_numpy(t["train_dist"])
        # The ratio test is defined on per-pixel L2 to the training set, whatever metric labels the row;
        # a missing second neighbour (K = 1) is stored as inf, which ratio_test turns into "undefined".
        l2 = train if metric == "l2" else tables.list_to_numpy(
            tables.read_unit(study_dir, "neighbors", replace(unit, metric="l2"), cfg,
                             columns=["sample_id", "train_dist"])["train_dist"])
        lab = label_distances(train, tables.list_to_numpy(t["synth_dist"]), l2,
                              cfg.classify.delta_m[metric], cfg.classify.delta_s[metric])
        n = len(t)
        manifold = [None] * n
        if cfg.data.name == "manifold":
            from ..datasets.manifold import manifold_error

            manifold = manifold_error(tables.read_samples(study_dir, k, seed, "eval", axis, axis.seen(cfg))[1])
        meta, part = stage.meta(cfg, unit), stage.part(unit)
        tables.write_part(study_dir, "labels", part, tables.to_table("labels", {
            "K": np.full(n, k), "seed": np.full(n, seed), **axes.columns(cfg, axis, n),
            "sample_id": t["sample_id"].to_numpy(), "metric": np.full(n, metric), **lab,
            "manifold_error": manifold,
        }, meta))
        if (metric, k, axis.twin) not in nulls:
            nulls[metric, k, axis.twin] = null_fractions(cfg, dataset, metric, k, seed, axis.twin)
        tables.write_part(study_dir, "null_fractions", part, tables.to_table(
            "null_fractions", {**nulls[metric, k, axis.twin], "seed": [seed], **axes.columns(cfg, axis, 1)}, meta))
        tables.write_part(study_dir, "fractions", part, tables.to_table("fractions", {
            **fractions(np.full(n, k), np.full(n, seed), np.full(n, metric), lab["label"], lab["ratio_memorized"]),
            **axes.columns(cfg, axis, 1)}, meta))
