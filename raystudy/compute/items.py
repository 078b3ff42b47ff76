"""What the basins and energy stages measure in a (metric, K, seed) unit, and with which seeds.

Items: per label the top and the bottom of the label's ranking (``basins.select_items``), the
first training images of the K-set (the basin of a stored memory) and held-out images, from
the study's held-out split (``datasets.study_held_out``: ``data.held_out`` images of the dataset's
own test split where it has one, else the permutation's reserved tail; no K-set of the study holds them).
Energy references: the K-set's first training images and held-out images. Every item owns a
seed (``seeds.item_seed``), so its noise never depends on the batch or the actor it lands in.
Plain functions over the tables and the dataset, no Ray.
"""

from __future__ import annotations

import numpy as np

from .. import tables
from ..seeds import item_seed


def held_out(dataset, n: int, cfg) -> np.ndarray:
    """The first n of the held-out split, from its end backwards (the same images for every K,
    and for K <= N - n the images no K-set holds)."""
    from ..datasets import study_held_out

    return study_held_out(dataset, cfg.data.held_out, cfg.study.seed)[::-1][:n].copy()


def select(cfg, study_dir, dataset, unit, per_label: int, n_train: int, n_held: int, salt: int) -> dict:
    """The unit's items: kind, item_id, label, pick, d_train, d_synth, images (n, C, H, W) and seeds."""
    from ..axes import split_unit, unit_kset
    from .basins import select_items

    metric, axis, k, seed = split_unit(unit)
    at = {"axis": axis, "images_seen": axis.seen(cfg)}
    labels = tables.read_unit(study_dir, "labels", k, seed, metric=metric,
                              columns=["sample_id", "label", "d_train", "d_synth"], **at).to_pandas()
    chosen = select_items(labels, per_label, rank=cfg.basins.rank)
    ids, imgs = tables.read_samples(study_dir, k, seed, "eval", **at)
    pos = np.searchsorted(ids, chosen["sample_id"].to_numpy())
    train_idx = unit_kset(cfg, dataset, axis, k)[:n_train]
    held = held_out(dataset, n_held, cfg)
    kind = np.array(["sample"] * len(chosen) + ["train"] * len(train_idx) + ["held-out"] * len(held), dtype=object)
    item_id = np.concatenate([chosen["sample_id"].to_numpy(), train_idx, held]).astype(np.int64)
    none = [None] * (len(train_idx) + len(held))
    nan = np.full(len(train_idx) + len(held), np.nan)
    return {"kind": kind, "item_id": item_id, "label": list(chosen["label"]) + none,
            "pick": list(chosen["pick"]) + none,
            "d_train": np.concatenate([chosen["d_train"].to_numpy(), nan]),
            "d_synth": np.concatenate([chosen["d_synth"].to_numpy(), nan]),
            "images": np.concatenate([imgs[pos], dataset.get(train_idx), dataset.get(held)]).astype(np.float32),
            "seeds": np.array([item_seed(cfg.study.seed, k, seed, kd, i, salt) for kd, i in zip(kind, item_id)],
                              dtype=np.int64)}


def references(cfg, dataset, k: int, axis=None) -> dict:
    """Energy references of a K: its first training images (of the twin's K-set for a twin) and
    held-out images."""
    from ..axes import DEFAULT, unit_kset

    train_idx = unit_kset(cfg, dataset, axis or DEFAULT, k)[:cfg.energy.train_refs]
    held = held_out(dataset, cfg.energy.held_out_refs, cfg)
    return {"kind": ["train"] * len(train_idx) + ["held-out"] * len(held),
            "item_id": np.concatenate([train_idx, held]).astype(np.int64),
            "images": np.concatenate([dataset.get(train_idx), dataset.get(held)]).astype(np.float32)}
