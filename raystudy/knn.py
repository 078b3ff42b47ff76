"""Nearest neighbours of every eval sample: to the K training images (``d_train``)
and to the independent ref set of the same model (``d_synth``), per metric.

``neighbors_for`` is the plain function; ``KnnActor`` wraps it for Ray Data,
which shards the eval samples. An actor embeds a (K, seed)'s training set and
ref set and builds its references once, then answers batch after batch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from . import tables
from .raytools import pool_size, stream_groups
from .search import knn_search


def part_name(metric: str, k: int, seed: int) -> str:
    return f"{metric}-K{k}-s{seed}"


def read_samples(study_dir, k: int, seed: int, set_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(sample_id, images (n, C, H, W)) of one set, ordered by sample_id."""
    t = tables.read(study_dir, "samples", filters=(pc.field("K") == k) & (pc.field("seed") == seed)
                    & (pc.field("set") == set_name))
    t = t.sort_by("sample_id")
    if t.num_rows == 0:
        raise FileNotFoundError(f"no {set_name} samples for K={k} seed={seed} in {study_dir}: run the generate stage")
    c, h, w = (int(t[col][0].as_py()) for col in ("channels", "height", "width"))
    return t["sample_id"].to_numpy(), tables.list_to_numpy(t["image"]).reshape(-1, c, h, w).astype(np.float32)


def embed_all(metric, images, chunk: int = 1024, max_ram_bytes: float = 4e9, spill_dir=None) -> np.ndarray:
    """Embed ``images`` (an array, or anything indexable by positions such as ``LazyImages``)
    chunk by chunk. Embeddings larger than ``max_ram_bytes`` (VGG at 32x32 is ~0.5 MB an image)
    go to a disk-backed memmap, which the sharded search reads shard by shard."""
    import tempfile

    n = len(images)
    first = metric.embed(np.asarray(images[np.arange(min(chunk, n))], dtype=np.float32))
    if n <= chunk:
        return first
    d = first.shape[1]
    if n * d * 4 > max_ram_bytes:
        fd, path = tempfile.mkstemp(prefix="emb-", suffix=".f32", dir=spill_dir)
        os.close(fd)
        out = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, d))
        os.unlink(path)  # the mapping keeps the data; nothing is left behind on exit
    else:
        out = np.empty((n, d), dtype=np.float32)
    out[:len(first)] = first
    for s in range(len(first), n, chunk):
        out[s:s + chunk] = metric.embed(np.asarray(images[np.arange(s, min(s + chunk, n))], dtype=np.float32))
    return out


class References:
    """One (K, seed, metric)'s embedded training set and ref set, built once."""

    def __init__(self, metric, train_images, train_idx, ref_images, ref_ids, shard_size=None, threads=None,
                 max_ram_bytes: float = 4e9, spill_dir=None, chunk: int = 1024):
        self.metric, self.shard_size, self.threads = metric, shard_size, threads
        self.train_emb = embed_all(metric, train_images, chunk, max_ram_bytes, spill_dir)
        self.ref_emb = embed_all(metric, ref_images, chunk, max_ram_bytes, spill_dir)
        self.train_idx, self.ref_ids = np.asarray(train_idx), np.asarray(ref_ids)

    def neighbors(self, query_images, k: int) -> dict[str, np.ndarray]:
        """Top-k training images (as dataset indices) and top-k ref samples, in the metric's units."""
        q = self.metric.embed(query_images)
        kt = min(k, len(self.train_emb))
        sq_t, it = knn_search(q, self.train_emb, kt, self.shard_size, self.threads)
        sq_s, is_ = knn_search(q, self.ref_emb, min(k, len(self.ref_emb)), self.shard_size, self.threads)
        return {"train_idx": self.train_idx[it], "train_dist": self.metric.from_sq(sq_t),
                "synth_idx": self.ref_ids[is_], "synth_dist": self.metric.from_sq(sq_s)}


def build_references(cfg, study_dir, metric, k: int, seed: int, dataset) -> References:
    from .data import subset_indices, training_images

    # The K-set is read chunk by chunk (rendered on demand for lazy datasets), never whole.
    train_idx = subset_indices(len(dataset), k, cfg.study.seed)
    ref_ids, ref_images = read_samples(study_dir, k, seed, "ref")
    spill = Path(study_dir) / ".knn-spill"
    spill.mkdir(exist_ok=True)
    return References(metric, training_images(dataset, k, cfg.study.seed), train_idx, ref_images, ref_ids,
                      cfg.knn.shard_size, cfg.knn.faiss_threads, cfg.knn.max_ram_gb * 1e9, spill)


class KnnActor:
    """Ray Data actor: per (K, seed), references are built on first use and kept."""

    def __init__(self, cfg_dict: dict, study_dir: str, metric_name: str):
        from .config import from_dict
        from .data import load_dataset
        from .embed import get_metric

        self.cfg = from_dict(cfg_dict)
        self.study_dir = study_dir
        self.dataset = load_dataset(self.cfg.data)
        self.metric = get_metric(metric_name, self.cfg.knn.weights_dir)
        self.refs: dict[tuple[int, int], References] = {}

    def __call__(self, batch: dict) -> dict:
        n, k = len(batch["K"]), self.cfg.knn.k
        out = {c: np.zeros((n, k), dtype=np.int64 if c.endswith("idx") else np.float64)
               for c in ("train_idx", "train_dist", "synth_idx", "synth_dist")}
        for c in ("train_idx", "synth_idx"):
            out[c][:] = -1
        for c in ("train_dist", "synth_dist"):
            out[c][:] = np.inf
        for K, seed in sorted(set(zip(batch["K"].tolist(), batch["seed"].tolist()))):
            if (K, seed) not in self.refs:
                self.refs[(K, seed)] = build_references(self.cfg, self.study_dir, self.metric, K, seed, self.dataset)
            rows = np.flatnonzero((batch["K"] == K) & (batch["seed"] == seed))
            # A list column arrives as an object array of rows; stacking handles both forms.
            images = np.stack(batch["image"][rows]).astype(np.float32).reshape(len(rows), *self.dataset.shape)
            res = self.refs[(K, seed)].neighbors(images, k)
            for c, v in res.items():
                out[c][rows, : v.shape[1]] = v
        return {"K": batch["K"], "seed": batch["seed"], "sample_id": batch["sample_id"], **out}


def missing_parts(cfg, study_dir) -> list[tuple[str, int, int]]:
    return [(m, k, s) for m in cfg.knn.metrics for k in cfg.ks for s in cfg.seeds
            if not tables.has_part(study_dir, "neighbors", part_name(m, k, s))]


def write_neighbors(cfg, study_dir, metric: str, cols: dict) -> None:
    order = np.argsort(cols["sample_id"], kind="stable")
    cols = {c: np.asarray(v)[order] for c, v in cols.items()}
    table = tables.to_table("neighbors", {
        "K": cols["K"], "seed": cols["seed"], "sample_id": cols["sample_id"],
        "metric": np.full(len(order), metric),
        # 2-D arrays become list columns of the schema's value type (tables.to_table).
        "train_idx": cols["train_idx"], "train_dist": cols["train_dist"],
        "synth_idx": cols["synth_idx"], "synth_dist": cols["synth_dist"],
    }, meta=tables.dumps_meta(study=cfg.study.name, metric=metric, k=cfg.knn.k))
    tables.write_part(study_dir, "neighbors", part_name(metric, int(cols["K"][0]), int(cols["seed"][0])), table)


def run_knn(cfg, study_dir) -> None:
    """Search every missing (metric, K, seed): Ray Data shards the eval samples over actors."""
    import ray
    from ray.data import ActorPoolStrategy

    todo = missing_parts(cfg, study_dir)
    study_dir = str(Path(study_dir).resolve())
    for metric in dict.fromkeys(m for m, _, _ in todo):
        groups = [(k, s) for m, k, s in todo if m == metric]
        t = tables.read(study_dir, "samples", columns=["K", "seed", "set", "sample_id", "image"],
                        filters=pc.field("set") == "eval")
        keep = np.zeros(t.num_rows, dtype=bool)
        K, S = t["K"].to_numpy(), t["seed"].to_numpy()
        for k, s in groups:
            keep |= (K == k) & (S == s)
        t = t.filter(keep)
        # One input block per batch, so every actor gets work. (A repartition would need a CPU
        # task, which a pool holding every CPU of a small machine starves: a deadlock.)
        t = t.drop(["set"])
        rows = max(1, min(cfg.knn.batch_size, -(-t.num_rows // cfg.knn.workers)))
        ds = ray.data.from_arrow([t.slice(i, rows) for i in range(0, t.num_rows, rows)])
        ds = ds.map_batches(
            KnnActor, fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "study_dir": study_dir, "metric_name": metric},
            compute=ActorPoolStrategy(size=pool_size(cfg.knn.workers, cfg.knn.faiss_threads)), batch_size=cfg.knn.batch_size,
            batch_format="numpy", num_cpus=cfg.knn.faiss_threads,
        )
        stream_groups(ds.iter_batches(batch_size=None, batch_format="numpy"), cfg.generate.n_samples,
                      lambda cols: write_neighbors(cfg, study_dir, metric, cols))
