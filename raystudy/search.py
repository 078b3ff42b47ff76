"""Exact top-k nearest neighbours over embeddings (FAISS IndexFlatL2), sharded.

A reference set larger than memory (e.g. a ``np.memmap``) is searched shard by shard:
only one shard is converted and indexed at a time, and the per-shard top lists are
merged, which stays exact. FAISS computes ||x||^2 + ||y||^2 - 2 x.y in float32, which
loses distances near zero -- exactly where memorization lives -- so a few extra
candidates are kept, their distances recomputed as differences in float64, and the
final top-k taken on those exact distances (near-duplicates FAISS cannot order are
then ordered correctly).
"""

from __future__ import annotations

import numpy as np

# Bytes of float64 scratch per step of the exact recomputation: small blocks stay in
# cache (much faster than one big temporary) and bound memory for VGG-sized d.
_EXACT_BUDGET = 8 << 20


def _rows_f32(x) -> np.ndarray:
    x = np.asarray(x)
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def exact_sq_dist(queries, refs, idx: np.ndarray) -> np.ndarray:
    """||q_i - r_idx[i,j]||^2 in float64, computed as a difference (no cancellation).

    Entries with idx < 0 get inf. ``refs`` may be a memmap: only the rows in idx are read.
    """
    idx = np.asarray(idx, dtype=np.int64)
    n, kk = idx.shape
    out = np.full((n, kk), np.inf, dtype=np.float64)
    if n == 0 or kk == 0:
        return out
    d = int(np.prod(np.shape(queries)[1:]))
    chunk = max(1, _EXACT_BUDGET // (8 * max(1, kk) * max(1, d)))
    for s in range(0, n, chunk):
        ii = idx[s:s + chunk]
        valid = ii >= 0
        if not valid.any():
            continue
        q = np.asarray(queries[s:s + chunk], dtype=np.float64).reshape(len(ii), 1, -1)
        rows = np.asarray(refs[np.where(valid, ii, ii[valid][0]).reshape(-1)], dtype=np.float64)
        diff = q - rows.reshape(len(ii), kk, -1)
        out[s:s + chunk] = np.where(valid, np.einsum("ijk,ijk->ij", diff, diff), np.inf)
    return out


def knn_search(queries, refs, k: int, shard_size: int | None = None, threads: int | None = None,
               exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest ``refs`` of each query under squared L2.

    Returns (sq_dist float64 (n, k), idx int64 (n, k)), sorted by exact distance; when
    ``exclude_self`` (queries and refs are the same set, row i is ref i) row i never
    returns i. Fewer than k references leave trailing idx -1 and distance inf.
    ``shard_size`` bounds how many references are indexed at once; ``threads`` sets
    FAISS's OpenMP threads for this call.
    """
    import faiss

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not hasattr(refs, "shape"):
        refs = np.asarray(refs)
    q = _rows_f32(queries)
    n, m = len(q), len(refs)
    d_ref = int(np.prod(np.shape(refs)[1:])) if m else q.shape[1]
    if q.shape[1] != d_ref:
        raise ValueError(f"queries have {q.shape[1]} dimensions but references have {d_ref}")
    # Extra candidates to re-rank exactly: FAISS's float32 ordering is unreliable among
    # near-duplicates; +1 for the self match that exclude_self removes.
    kk = 2 * k + (1 if exclude_self else 0)
    shard_size = int(shard_size or m or 1)

    old_threads = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(int(threads))
    try:
        best_d = np.empty((n, 0), dtype=np.float32)
        best_i = np.empty((n, 0), dtype=np.int64)
        for start in range(0, m, shard_size):
            shard = _rows_f32(refs[start:start + shard_size])
            index = faiss.IndexFlatL2(shard.shape[1])
            index.add(shard)
            dist, idx = index.search(q, min(kk, index.ntotal))
            del index, shard
            idx = np.where(idx >= 0, idx + start, -1)
            best_d = np.concatenate([best_d, dist], axis=1)
            best_i = np.concatenate([best_i, idx], axis=1)
            if best_d.shape[1] > kk:
                order = np.argsort(best_d, axis=1, kind="stable")[:, :kk]
                best_d = np.take_along_axis(best_d, order, 1)
                best_i = np.take_along_axis(best_i, order, 1)
    finally:
        faiss.omp_set_num_threads(old_threads)

    if exclude_self:
        best_i = np.where(best_i == np.arange(n)[:, None], -1, best_i)
    sq = exact_sq_dist(q, refs, best_i)
    order = np.argsort(sq, axis=1, kind="stable")[:, :k]
    sq, best_i = np.take_along_axis(sq, order, 1), np.take_along_axis(best_i, order, 1)
    best_i = np.where(np.isfinite(sq), best_i, -1)
    if best_i.shape[1] < k:
        pad = ((0, 0), (0, k - best_i.shape[1]))
        sq = np.pad(sq, pad, constant_values=np.inf)
        best_i = np.pad(best_i, pad, constant_values=-1)
    return sq, best_i
