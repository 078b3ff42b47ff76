"""The knn stage: every eval sample's nearest training images and other-set samples, per
metric, streamed shard by shard through an elastic pool of Ray Data actors. An actor builds
a (K, seed)'s ``compute.knn.References`` once and writes each shard's neighbours as its own part."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import axes, tables
from ..cluster import pool
from ..compute.knn import References, search_device
from ..splits import kset
from .shards import stream, task_axis


class StoredSamples:
    """A unit's stored sample set, indexable by positions like an array and read from its Parquet
    parts range by range (``embed_all`` asks for consecutive chunks): the set is never whole in
    memory, only each chunk and its embedding."""

    def __init__(self, study_dir, unit, cfg, set_name: str, shape):
        self.where = dict(unit=unit, cfg_or_seed=cfg, set=set_name)
        self.study_dir, self.item = study_dir, tuple(shape)
        self.ids = tables.read_unit(study_dir, "samples", **self.where, columns=["sample_id"])["sample_id"].to_numpy()
        if not len(self.ids):
            raise FileNotFoundError(f"no {set_name} samples for K={unit.K} seed={unit.seed} in {study_dir}: "
                                    f"run the generate stage")
        self.shape = (len(self.ids), *self.item)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, pos) -> np.ndarray:
        ids = self.ids[np.asarray(pos)]
        t = tables.read_unit(self.study_dir, "samples", **self.where, ids=(int(ids.min()), int(ids.max()) + 1),
                             columns=["sample_id", "image"])
        got = t["sample_id"].to_numpy()
        x = tables.list_to_numpy(t["image"]).reshape(-1, *self.item)
        return x[np.searchsorted(got, ids)]


def build_references(cfg, study_dir, metric, unit, dataset) -> References:
    """The references of the unit's model (K, seed at its axis): its own K-set (a twin's is
    another) and its own ref samples, both read chunk by chunk (the K-set rendered on demand for
    lazy datasets), never whole."""
    from ..datasets import LazyImages

    train_idx = kset(cfg, dataset, unit.axis, unit.K)
    refs = StoredSamples(study_dir, unit, cfg, "ref", dataset.shape)
    spill = Path(study_dir) / ".knn-spill"
    spill.mkdir(exist_ok=True)
    backend, device = search_device(cfg.knn)
    return References(metric, LazyImages(dataset, train_idx), train_idx, refs, refs.ids,
                      cfg.knn.shard_size, cfg.knn.faiss_threads, cfg.knn.max_ram_gb * 1e9, spill,
                      backend=backend, device=device)


class KnnActor:
    """Ray Data actor: per (K, seed), references are built on first use and kept."""

    def __init__(self, cfg_dict: dict, study_dir: str, metric_name: str):
        from ..config import from_dict
        from ..datasets import load_dataset
        from ..metrics import get_metric

        self.cfg = from_dict(cfg_dict)
        self.study_dir = study_dir
        self.dataset = load_dataset(self.cfg.data)
        self.metric = get_metric(metric_name, self.cfg.knn.weights_dir, device=search_device(self.cfg.knn)[1])
        self.refs: dict[axes.Unit, References] = {}

    def __call__(self, batch: dict, study_dir: str = "", metas: dict | None = None) -> dict:
        """Each row is one shard of a (metric, K, seed)'s eval samples (sample ids lo..hi): read
        those samples here, search them in batches of ``knn.batch_size`` and write the part
        here, so neither samples nor neighbours travel through the driver."""
        study_dir = study_dir or self.study_dir
        metric = self.metric.name
        written = []
        for K, seed, lo, hi, shard, unit, *ax in zip(*(batch[c].tolist() for c in (
                "K", "seed", "lo", "hi", "shard", "base", "variant", "twin", "snap"))):
            axis = task_axis(*ax)
            u = axes.Unit(K, seed, metric, axis)
            if u not in self.refs:
                while len(self.refs) >= 2:  # shards come unit by unit: keep the last two units' references
                    self.refs.pop(next(iter(self.refs)))
                self.refs[u] = build_references(self.cfg, study_dir, self.metric, u, self.dataset)
            t = tables.read_unit(study_dir, "samples", u, self.cfg, set="eval", ids=(lo, hi),
                                 columns=["sample_id", "image"])
            if t.num_rows != hi - lo:
                raise RuntimeError(f"K={K} seed={seed}: {t.num_rows} eval samples with ids {lo}..{hi - 1}, "
                                   f"expected {hi - lo}: run the generate stage")
            res = [self.refs[u].neighbors(
                tables.list_to_numpy(t["image"].slice(j, self.cfg.knn.batch_size)).astype(np.float32)
                .reshape(-1, *self.dataset.shape), self.cfg.knn.k)
                for j in range(0, t.num_rows, self.cfg.knn.batch_size)]
            n = t.num_rows
            tables.write_part(study_dir, "neighbors", f"{unit}-{shard:05d}", tables.to_table("neighbors", {
                "K": np.full(n, K), "seed": np.full(n, seed), **axes.columns(self.cfg, axis, n),
                "sample_id": t["sample_id"].to_numpy(),
                "metric": np.full(n, metric), **{c: np.concatenate([r[c] for r in res]) for c in res[0]}},
                meta=metas[unit]))
            written.append(n)
        return {"K": batch["K"], "seed": batch["seed"], "rows": np.asarray(written)}


def knn_worker(stage, cfg) -> tuple[str, float, float]:
    """A knn actor: ``knn.faiss_threads`` CPUs and ``knn.gpus_per_worker`` GPUs."""
    return f"{stage.name} worker", float(cfg.knn.faiss_threads), cfg.knn.gpus_per_worker


def check_weights(stage, cfg, study_dir, todo, dataset) -> None:
    """An absent or corrupt LPIPS backbone is a one-line error before any work."""
    from ..metrics import check_backbones

    check_backbones([m.split("-", 1)[1] for m in dict.fromkeys(u.metric for u in todo) if m.startswith("lpips-")],
                    cfg.knn.weights_dir)


def run_knn(stage, cfg, study_dir, todo) -> None:
    """Search every (metric, K, seed) in ``todo``, streamed shard by shard of eval samples
    (``shards.stream``); one pass per metric, whose actors embed with that metric."""
    for metric in dict.fromkeys(u.metric for u in todo):
        stream(stage, cfg, study_dir, [u for u in todo if u.metric == metric], "neighbors", (None,), KnnActor,
               {"cfg_dict": cfg.to_dict(), "metric_name": metric},
               pool(cfg.knn.workers, cfg.knn.faiss_threads, cfg.knn.gpus_per_worker))
