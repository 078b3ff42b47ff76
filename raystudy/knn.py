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
from .generate import read_samples
from .search import knn_search


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
        """Top-k training images (as dataset indices) and top-k ref samples, in the metric's units;
        fewer than k candidates (K < k) leave trailing -1 / inf."""
        q = self.metric.embed(query_images)
        sq_t, it = knn_search(q, self.train_emb, k, self.shard_size, self.threads)
        sq_s, is_ = knn_search(q, self.ref_emb, k, self.shard_size, self.threads)
        return {"train_idx": np.where(it >= 0, self.train_idx[it], -1), "train_dist": self.metric.from_sq(sq_t),
                "synth_idx": np.where(is_ >= 0, self.ref_ids[is_], -1), "synth_dist": self.metric.from_sq(sq_s)}


def build_references(cfg, study_dir, metric, k: int, seed: int, dataset) -> References:
    from .datasets import LazyImages, subset_indices

    # The K-set is read chunk by chunk (rendered on demand for lazy datasets), never whole.
    train_idx = subset_indices(len(dataset), k, cfg.study.seed)
    ref_ids, ref_images = read_samples(study_dir, k, seed, "ref")
    spill = Path(study_dir) / ".knn-spill"
    spill.mkdir(exist_ok=True)
    return References(metric, LazyImages(dataset, train_idx), train_idx, ref_images, ref_ids,
                      cfg.knn.shard_size, cfg.knn.faiss_threads, cfg.knn.max_ram_gb * 1e9, spill)


class KnnActor:
    """Ray Data actor: per (K, seed), references are built on first use and kept."""

    def __init__(self, cfg_dict: dict, study_dir: str, metric_name: str):
        from .config import from_dict
        from .datasets import load_dataset
        from .embed import get_metric

        self.cfg = from_dict(cfg_dict)
        self.study_dir = study_dir
        self.dataset = load_dataset(self.cfg.data)
        self.metric = get_metric(metric_name, self.cfg.knn.weights_dir)
        self.refs: dict[tuple[int, int], References] = {}

    def __call__(self, batch: dict, study_dir: str = "", metas: dict | None = None) -> dict:
        """Each row is one shard of a (metric, K, seed)'s eval samples (sample ids lo..hi): read
        those samples here, search them in batches of ``knn.batch_size`` and write the part
        here, so neither samples nor neighbours travel through the driver."""
        study_dir = study_dir or self.study_dir
        metric = self.metric.name
        written = []
        for K, seed, lo, hi, shard in zip(*(batch[c].tolist() for c in ("K", "seed", "lo", "hi", "shard"))):
            if (K, seed) not in self.refs:
                while len(self.refs) >= 2:  # shards come unit by unit: keep the last two units' references
                    self.refs.pop(next(iter(self.refs)))
                self.refs[(K, seed)] = build_references(self.cfg, study_dir, self.metric, K, seed, self.dataset)
            t = tables.read(study_dir, "samples", columns=["sample_id", "image"],
                            filters=(pc.field("K") == K) & (pc.field("seed") == seed) & (pc.field("set") == "eval")
                            & (pc.field("sample_id") >= lo) & (pc.field("sample_id") < hi)).sort_by("sample_id")
            if t.num_rows != hi - lo:
                raise RuntimeError(f"K={K} seed={seed}: {t.num_rows} eval samples with ids {lo}..{hi - 1}, "
                                   f"expected {hi - lo}: run the generate stage")
            res = [self.refs[(K, seed)].neighbors(
                tables.list_to_numpy(t["image"].slice(j, self.cfg.knn.batch_size)).astype(np.float32)
                .reshape(-1, *self.dataset.shape), self.cfg.knn.k)
                for j in range(0, t.num_rows, self.cfg.knn.batch_size)]
            unit, n = f"{metric}-K{K}-s{seed}", t.num_rows
            tables.write_part(study_dir, "neighbors", f"{unit}-{shard:05d}", tables.to_table("neighbors", {
                "K": np.full(n, K), "seed": np.full(n, seed), "sample_id": t["sample_id"].to_numpy(),
                "metric": np.full(n, metric), **{c: np.concatenate([r[c] for r in res]) for c in res[0]}},
                meta=metas[unit]))
            written.append(n)
        return {"K": batch["K"], "seed": batch["seed"], "rows": np.asarray(written)}


def check_weights(stage, cfg, study_dir, todo, dataset) -> None:
    """An absent or corrupt LPIPS backbone is a one-line error before any work."""
    for metric in dict.fromkeys(m for m, _, _ in todo if m.startswith("lpips-")):
        from .lpips_embed import load_backbone_state

        load_backbone_state(metric.split("-", 1)[1], cfg.knn.weights_dir)


def run_knn(stage, cfg, study_dir, todo) -> None:
    """Search every (metric, K, seed) in ``todo``, streamed shard by shard of eval samples
    (raytools.stream); one pass per metric, whose actors embed with that metric."""
    from .raytools import pool, stream

    for metric in dict.fromkeys(m for m, _, _ in todo):
        stream(stage, cfg, study_dir, [u for u in todo if u[0] == metric], "neighbors", (None,), KnnActor,
               {"cfg_dict": cfg.to_dict(), "metric_name": metric}, pool(cfg.knn.workers, cfg.knn.faiss_threads))
