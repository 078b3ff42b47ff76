"""The basins and energy stages: which items are measured, their seeds, and Ray Data
sharding around the plain functions ``basins.basins_group`` and ``energy.relative_energy``.

Items of a (metric, K, seed) unit: per label the closest and farthest samples by d_train
(``basins.select_items``), the first training images of the K-set (the basin of a stored
memory) and held-out images, taken from the tail of the study's permutation so that no
K-set of a smaller size holds them. Every item owns a seed derived from (study seed, K,
seed, kind, item id), so its noise never depends on the batch or the actor it lands in.
"""

from __future__ import annotations


import numpy as np
import pyarrow.compute as pc

from . import tables
from .generate import ModelActor
from .raytools import pool

KINDS = ("sample", "train", "held-out")


def item_seed(study_seed: int, k: int, seed: int, kind: str, item_id: int, salt: int) -> int:
    s = np.random.SeedSequence([study_seed, k, seed, KINDS.index(kind), int(item_id), salt]).generate_state(2)
    return int((int(s[0]) << 31) ^ int(s[1]))


def _labels(study_dir, metric: str, k: int, seed: int):
    t = tables.read(study_dir, "labels", filters=(pc.field("metric") == metric) & (pc.field("K") == k)
                    & (pc.field("seed") == seed))
    return t.to_pandas().sort_values("sample_id")


def held_out(dataset, k: int, n: int, study_seed: int) -> np.ndarray:
    """Up to n dataset indices from the permutation's tail that the size-K set does not hold."""
    from .datasets import permutation

    perm = permutation(len(dataset), study_seed)
    return perm[max(k, len(perm) - n):][::-1][:n].copy()


def select(cfg, study_dir, dataset, unit, per_label: int, n_train: int, n_held: int) -> dict:
    """The unit's items: kind, item_id, label, d_train, images (n, C, H, W)."""
    from .basins import select_items
    from .datasets import subset_indices
    from .generate import read_samples

    metric, k, seed = unit
    chosen = select_items(_labels(study_dir, metric, k, seed), per_label)
    ids, imgs = read_samples(study_dir, k, seed, "eval")
    pos = np.searchsorted(ids, chosen["sample_id"].to_numpy())
    train_idx = subset_indices(len(dataset), k, cfg.study.seed)[:n_train]
    held = held_out(dataset, k, n_held, cfg.study.seed)
    kind = ["sample"] * len(chosen) + ["train"] * len(train_idx) + ["held-out"] * len(held)
    return {"kind": np.array(kind, dtype=object),
            "item_id": np.concatenate([chosen["sample_id"].to_numpy(), train_idx, held]).astype(np.int64),
            "label": list(chosen["label"]) + [None] * (len(train_idx) + len(held)),
            "d_train": np.concatenate([chosen["d_train"].to_numpy(), np.full(len(train_idx) + len(held), np.nan)]),
            "images": np.concatenate([imgs[pos], dataset.get(train_idx), dataset.get(held)]).astype(np.float32)}


class _ModelActor(ModelActor):
    """A model actor with the training schedule, fed rows of items."""

    def __init__(self, cfg_dict: dict, study_dir: str):
        from .model import build_train_scheduler

        super().__init__(cfg_dict, study_dir)
        self.train_scheduler = build_train_scheduler(self.cfg.model)

    def groups(self, batch):
        for k, s in sorted(set(zip(batch["K"].tolist(), batch["seed"].tolist()))):
            yield k, s, np.flatnonzero((batch["K"] == k) & (batch["seed"] == s))

    def images(self, batch, rows):
        return np.stack(batch["image"][rows]).astype(np.float32).reshape(len(rows), *self.dataset.shape)


class BasinActor(_ModelActor):
    def __call__(self, batch: dict) -> dict:
        from .basins import critical_times, metric_fn_from_embedding, scan_times
        from .embed import get_metric

        c = self.cfg.basins
        n_t = len(scan_times(self.cfg.model.num_train_timesteps, c.stride))
        n = len(batch["K"])
        out = {"t_crit": np.zeros(n, np.int64), "radius": np.zeros(n), "t_last": np.zeros((n, c.trials), np.int64),
               "radius_last": np.zeros((n, c.trials)), "rate": np.full((n, n_t), np.nan)}
        metric_fn = metric_fn_from_embedding(get_metric(c.metric, self.cfg.knn.weights_dir))
        for k, s, rows in self.groups(batch):
            res = critical_times(self.model(k, s), self.train_scheduler, self.images(batch, rows),
                                 batch["item_seed"][rows], metric_fn=metric_fn, delta=c.delta, trials=c.trials,
                                 p=c.p, stride=c.stride, ddim_steps=c.ddim_steps, batch_size=c.batch_size,
                                 device=self.device)
            for key in ("t_crit", "radius", "t_last", "radius_last"):
                out[key][rows] = res[key]
            for j, r in enumerate(rows):
                out["rate"][r, :len(res["rate"][j])] = res["rate"][j]
        return {"K": batch["K"], "seed": batch["seed"], "row": batch["row"], **out}


class EnergyActor(_ModelActor):
    def __call__(self, batch: dict) -> dict:
        from .energy import relative_energy

        c = self.cfg.energy
        sched = self.train_scheduler
        m = c.train_refs + c.held_out_refs
        n = len(batch["K"])
        out = {key: np.full((n, m), np.nan) for key in ("energy", "drift_potential", "quad_error")}
        for k, s, rows in self.groups(batch):
            refs = references(self.cfg, self.dataset, k)["images"]
            x = np.repeat(self.images(batch, rows), len(refs), axis=0)
            r = np.tile(refs, (len(rows), 1, 1, 1))
            res = relative_energy(self.model(k, s), x, r, c.t, sched.alphas_cumprod, sched.betas, points=c.points,
                                  reference_scale=c.reference_scale, device=self.device)
            for key in out:
                out[key][rows, :len(refs)] = np.asarray(res[key]).reshape(len(rows), len(refs))
        return {"K": batch["K"], "seed": batch["seed"], "row": batch["row"], **out}


def references(cfg, dataset, k: int) -> dict:
    """Energy references of a K: its first training images and held-out images."""
    from .datasets import subset_indices

    train_idx = subset_indices(len(dataset), k, cfg.study.seed)[:cfg.energy.train_refs]
    held = held_out(dataset, k, cfg.energy.held_out_refs, cfg.study.seed)
    return {"kind": ["train"] * len(train_idx) + ["held-out"] * len(held),
            "item_id": np.concatenate([train_idx, held]).astype(np.int64),
            "images": np.concatenate([dataset.get(train_idx), dataset.get(held)]).astype(np.float32)}


def _items_dataset(stage, cfg, study_dir, todo, dataset, counts, salt):
    """One Ray Data row per item of every unit in ``todo``; returns (dataset, items by unit)."""
    import ray

    rows, by_unit = [], {}
    for unit in todo:
        _, k, s = unit
        items = select(cfg, study_dir, dataset, unit, *counts)
        by_unit[unit] = items
        for j in range(len(items["kind"])):
            rows.append({"K": k, "seed": s, "row": j, "image": items["images"][j].reshape(-1),
                         "item_seed": item_seed(cfg.study.seed, k, s, items["kind"][j], items["item_id"][j], salt)})
    return ray.data.from_items(rows), by_unit


def _collect(ds, by_unit, metric):
    got = {}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["K"])):
            got[(metric, int(batch["K"][i]), int(batch["seed"][i]), int(batch["row"][i]))] = \
                {key: v[i] for key, v in batch.items()}
    return {u: [got[(*u, j)] for j in range(len(items["kind"]))] for u, items in by_unit.items()}


def run_basins(stage, cfg, study_dir, todo) -> None:
    from .datasets import load_dataset

    c = cfg.basins
    dataset = load_dataset(cfg.data)
    ds, by_unit = _items_dataset(stage, cfg, study_dir, todo, dataset, (c.per_label, c.train, c.held_out), 0xBA5)
    ds = ds.map_batches(BasinActor, fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "study_dir": str(study_dir)},
                        batch_size=c.batch_size, batch_format="numpy",
                        **pool(c.workers, cfg.generate.cpus_per_worker, cfg.generate.gpus_per_worker))
    from .basins import scan_times

    times = scan_times(cfg.model.num_train_timesteps, c.stride)
    for unit, res in _collect(ds, by_unit, c.metric).items():
        metric, k, s = unit
        items = by_unit[unit]
        n = len(res)
        meta = stage.meta(cfg, unit)
        kind, ids = items["kind"], items["item_id"]
        tables.write_part(study_dir, "basin_rates", stage.part(unit), _rates_table(k, s, kind, ids, res, times, c, meta))
        tables.write_part(study_dir, "basin_trials", stage.part(unit), tables.to_table("basin_trials", {
            "K": np.full(n * c.trials, k), "seed": np.full(n * c.trials, s), "kind": np.repeat(kind, c.trials),
            "item_id": np.repeat(ids, c.trials), "trial": np.tile(np.arange(c.trials), n),
            "t_last": np.concatenate([r["t_last"] for r in res]) if n else np.zeros(0, np.int64),
            "radius": np.concatenate([r["radius_last"] for r in res]) if n else np.zeros(0)}, meta))
        tables.write_part(study_dir, "basins", stage.part(unit), tables.to_table("basins", {
            "K": np.full(n, k), "seed": np.full(n, s), "metric": np.full(n, metric), "kind": kind, "item_id": ids,
            "label": items["label"], "d_train": items["d_train"], "t_crit": [int(r["t_crit"]) for r in res],
            "radius": [float(r["radius"]) for r in res]}, meta))


def _rates_table(k, s, kind, ids, res, times, c, meta):
    cols = {"K": [], "seed": [], "kind": [], "item_id": [], "t": [], "rate": [], "n_trials": []}
    for j, r in enumerate(res):
        ok = ~np.isnan(r["rate"])
        m = int(ok.sum())
        cols["K"] += [k] * m; cols["seed"] += [s] * m; cols["kind"] += [kind[j]] * m
        cols["item_id"] += [int(ids[j])] * m; cols["t"] += list(times[ok]); cols["rate"] += list(r["rate"][ok])
        cols["n_trials"] += [c.trials] * m
    return tables.to_table("basin_rates", cols, meta)


def run_energy(stage, cfg, study_dir, todo) -> None:
    from .datasets import load_dataset

    c = cfg.energy
    dataset = load_dataset(cfg.data)
    ds, by_unit = _items_dataset(stage, cfg, study_dir, todo, dataset, (c.per_label, 0, 0), 0xE6)
    ds = ds.map_batches(EnergyActor, fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "study_dir": str(study_dir)},
                        batch_size=16, batch_format="numpy",
                        **pool(cfg.basins.workers, cfg.generate.cpus_per_worker, cfg.generate.gpus_per_worker))
    for unit, res in _collect(ds, by_unit, cfg.basins.metric).items():
        _, k, s = unit
        items, refs = by_unit[unit], references(cfg, dataset, k)
        n, m = len(res), len(refs["kind"])
        cols = {"K": np.full(n * m, k), "seed": np.full(n * m, s), "kind": np.repeat(items["kind"], m),
                "item_id": np.repeat(items["item_id"], m), "label": [lab for lab in items["label"] for _ in range(m)],
                "reference_kind": np.tile(np.asarray(refs["kind"], dtype=object), n),
                "reference_id": np.tile(refs["item_id"], n), "t": np.full(n * m, c.t)}
        for key in ("energy", "drift_potential", "quad_error"):
            cols[key] = np.concatenate([r[key][:m] for r in res]) if n else np.zeros(0)
        tables.write_part(study_dir, "energy", stage.part(unit), tables.to_table("energy", cols, stage.meta(cfg, unit)))


def check(stage, cfg, study_dir, todo, dataset) -> None:
    if cfg.data.name == "circle":
        from .errors import ConfigError

        raise ConfigError(f"config: {stage.name}.enabled: the circle study measures energies in its own report "
                          "(raystudy.toy.report); basins/energy stages are for image studies")
