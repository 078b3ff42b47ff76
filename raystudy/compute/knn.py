"""Nearest neighbours of eval samples: to the K training images (``d_train``) and to the
independent ref set of the same model (``d_synth``), in one metric.

``References`` embeds a (K, seed)'s training set and ref set once and then answers query
batch after batch with ``metrics.search.knn_search``; plain code, no Ray and no table reads
(the knn stage, ``stages/knn.py``, reads both sets and holds one per unit in each actor).
"""

from __future__ import annotations

import os

import numpy as np

from ..metrics.search import knn_search


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
                 max_ram_bytes: float = 4e9, spill_dir=None, chunk: int = 1024, backend: str = "faiss",
                 device=None):
        self.metric, self.shard_size, self.threads = metric, shard_size, threads
        self.backend, self.device = backend, device
        # torch backend: each reference set's shards stay on the device between query batches.
        self._cache = {"train": {}, "ref": {}}
        self.train_emb = embed_all(metric, train_images, chunk, max_ram_bytes, spill_dir)
        self.ref_emb = embed_all(metric, ref_images, chunk, max_ram_bytes, spill_dir)
        self.train_idx, self.ref_ids = np.asarray(train_idx), np.asarray(ref_ids)

    def neighbors(self, query_images, k: int) -> dict[str, np.ndarray]:
        """Top-k training images (as dataset indices) and top-k ref samples, in the metric's units;
        fewer than k candidates (K < k) leave trailing -1 / inf."""
        q = self.metric.embed(query_images)
        kw = dict(backend=self.backend, device=self.device) if self.backend == "torch" else {}
        sq_t, it = knn_search(q, self.train_emb, k, self.shard_size, self.threads, cache=self._cache["train"], **kw)
        sq_s, is_ = knn_search(q, self.ref_emb, k, self.shard_size, self.threads, cache=self._cache["ref"], **kw)
        return {"train_idx": np.where(it >= 0, self.train_idx[it], -1), "train_dist": self.metric.from_sq(sq_t),
                "synth_idx": np.where(is_ >= 0, self.ref_ids[is_], -1), "synth_dist": self.metric.from_sq(sq_s)}


def search_device(knn_cfg) -> tuple[str, str]:
    """(backend, torch device) of a knn actor: its GPU when it was given one (Ray sets
    CUDA_VISIBLE_DEVICES to it), else the CPU; ``auto`` searches with torch on a GPU and
    with FAISS on the CPU."""
    import torch

    device = "cuda" if knn_cfg.gpus_per_worker > 0 and torch.cuda.is_available() else "cpu"
    backend = knn_cfg.backend if knn_cfg.backend != "auto" else ("torch" if device == "cuda" else "faiss")
    return backend, device
