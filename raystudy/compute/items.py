"""What the basins and energy stages measure in a (metric, K, seed) unit, and with which seeds.

Items: per label the top and the bottom of the label's ranking (``basins.select_items``), the
first training images of the K-set (the basin of a stored memory) and held-out images, from
the study's held-out split (``splits.held_out``: ``data.held_out`` images of the dataset's
own test split where it has one, else the permutation's reserved tail; no K-set of the study holds them).
Energy references: the K-set's first training images and held-out images. Every item owns a
seed (``splits.item_seed``), so its noise never depends on the batch or the actor it lands in.
Plain functions over arrays and the dataset, no Ray, no table reads (the stages read a unit's
labels and eval samples and pass them in).
"""

from __future__ import annotations

import numpy as np

from .. import splits


def held_out(dataset, n: int, cfg) -> np.ndarray:
    """The first n of the held-out split, from its end backwards (the same images for every K,
    and for K <= N - n the images no K-set holds)."""
    return splits.held_out(cfg, dataset)[::-1][:n].copy()


def select(cfg, dataset, unit, labels, sample_ids: np.ndarray, samples: np.ndarray, per_label: int, n_train: int,
           n_held: int, salt: int) -> dict:
    """The unit's items: kind, item_id, label, pick, d_train, d_synth, images (n, C, H, W) and seeds.
    ``labels``: the unit's labels (a DataFrame with sample_id, label, d_train, d_synth);
    ``sample_ids``, ``samples``: its eval samples (ids in ascending order, images (n, C, H, W))."""
    from .basins import select_items

    axis, k, seed = unit.axis, unit.K, unit.seed
    chosen = select_items(labels, per_label, rank=cfg.basins.rank)
    pos = np.searchsorted(sample_ids, chosen["sample_id"].to_numpy())
    train_idx = splits.kset(cfg, dataset, axis, k)[:n_train]
    held = held_out(dataset, n_held, cfg)
    kind = np.array(["sample"] * len(chosen) + ["train"] * len(train_idx) + ["held-out"] * len(held), dtype=object)
    item_id = np.concatenate([chosen["sample_id"].to_numpy(), train_idx, held]).astype(np.int64)
    none = [None] * (len(train_idx) + len(held))
    nan = np.full(len(train_idx) + len(held), np.nan)
    return {"kind": kind, "item_id": item_id, "label": list(chosen["label"]) + none,
            "pick": list(chosen["pick"]) + none,
            "d_train": np.concatenate([chosen["d_train"].to_numpy(), nan]),
            "d_synth": np.concatenate([chosen["d_synth"].to_numpy(), nan]),
            "images": np.concatenate([samples[pos], dataset.get(train_idx), dataset.get(held)]).astype(np.float32),
            "seeds": np.array([splits.item_seed(cfg.study.seed, k, seed, kd, i, salt) for kd, i in zip(kind, item_id)],
                              dtype=np.int64)}


def references(cfg, dataset, k: int, axis=None) -> dict:
    """Energy references of a K: its first training images (of the twin's K-set for a twin) and
    held-out images."""
    from ..axes import DEFAULT

    train_idx = splits.kset(cfg, dataset, axis or DEFAULT, k)[:cfg.energy.train_refs]
    held = held_out(dataset, cfg.energy.held_out_refs, cfg)
    return {"kind": ["train"] * len(train_idx) + ["held-out"] * len(held),
            "item_id": np.concatenate([train_idx, held]).astype(np.int64),
            "images": np.concatenate([dataset.get(train_idx), dataset.get(held)]).astype(np.float32)}
