"""Exact top-k nearest neighbours over embeddings (FAISS IndexFlatL2), sharded.

A reference set larger than memory (e.g. a ``np.memmap``) is searched shard by shard:
only one shard is converted and indexed at a time, and the per-shard top lists are
merged, which stays exact.

FAISS computes ||x||^2 + ||y||^2 - 2 x.y in float32, which loses distances near zero --
exactly where memorization lives -- and can swap neighbours whose distances differ by
less than its rounding error. So FAISS only proposes candidates; the answer is decided
in float64:

* error bound: each float32 distance is within ``E = c * (||x||^2 + max ||y||^2)`` of the
  true one, c = (2 lambda sqrt(d) + 4) u (u = 2^-24, lambda = 10): the probabilistic
  rounding-error bound of a d-term float32 dot product (Higham & Mary 2019), which holds
  except with probability ~d exp(-lambda^2 / 2) = 1e-18 per distance, whatever the
  summation order. Measured FAISS errors are about 100x smaller (<= 8 u (||x||^2 + ||y||^2)
  for LPIPS-AlexNet, d = 3,490).
* enough candidates: a reference outside the candidate list lies at float32 distance >= the
  last candidate's; if that is more than 2E beyond the k-th candidate's, it cannot be in the
  true top-k. Queries where this fails are searched again with 4x more candidates.
* exact ranking: only candidates within 2E of the k-th candidate's float32 distance can be
  in the top-k; for those (usually k or a few more per query) the distance is recomputed as
  a difference in float64, and the top-k taken on it, ties to the lower index (as a stable
  brute-force sort). Near-duplicates FAISS cannot order are then ordered correctly, and
  the distances returned are the float64 ones.
"""

from __future__ import annotations

import numpy as np

# Bytes of float64 scratch per step of the exact recomputation: small blocks stay in
# cache (much faster than one big temporary) and bound memory for VGG-sized d.
_EXACT_BUDGET = 1 << 20
_U32 = 2.0 ** -24  # float32 unit roundoff
_LAMBDA = 10.0


def _rows_f32(x) -> np.ndarray:
    x = np.asarray(x)
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def _rows(x):
    """(n, d) view of an (n, ...) array (or memmap) without copying."""
    return x if x.ndim == 2 else x.reshape(len(x), -1)


def float32_error_coeff(d: int) -> float:
    """c such that |FAISS float32 distance - true distance| <= c * (||x||^2 + ||y||^2)."""
    return (2.0 * _LAMBDA * np.sqrt(max(int(d), 1)) + 4.0) * _U32


def exact_pairs(queries, refs, qi: np.ndarray, rj: np.ndarray) -> np.ndarray:
    """||queries[qi[p]] - refs[rj[p]]||^2 in float64 for each pair p, as a difference
    (no cancellation). ``refs`` may be a memmap: only the rows in rj are read."""
    qi, rj = np.asarray(qi, dtype=np.int64), np.asarray(rj, dtype=np.int64)
    out = np.empty(len(qi), dtype=np.float64)
    if len(qi) == 0:
        return out
    q = _rows(queries if hasattr(queries, "shape") else np.asarray(queries))
    r = _rows(refs)
    chunk = max(1, _EXACT_BUDGET // (8 * max(1, q.shape[1])))
    for s in range(0, len(qi), chunk):
        diff = np.asarray(r[rj[s:s + chunk]], dtype=np.float64)
        diff -= q[qi[s:s + chunk]]  # float32 -> float64 is exact; so is the subtraction's input
        out[s:s + chunk] = np.einsum("ij,ij->i", diff, diff)
    return out


def exact_sq_dist(queries, refs, idx: np.ndarray) -> np.ndarray:
    """||q_i - r_idx[i,j]||^2 in float64, computed as a difference (no cancellation).

    Entries with idx < 0 get inf. ``refs`` may be a memmap: only the rows in idx are read.
    """
    idx = np.asarray(idx, dtype=np.int64)
    out = np.full(idx.shape, np.inf, dtype=np.float64)
    if idx.size == 0:
        return out
    rows, cols = np.nonzero(idx >= 0)
    out[rows, cols] = exact_pairs(queries, refs, rows, idx[rows, cols])
    return out


def _faiss_candidates(q: np.ndarray, refs, kk: int, shard_size: int):
    """FAISS's float32 top-kk over all shards: (dist float32 (n, kk), idx int64 (n, kk),
    max ||ref||^2). Missing entries: idx -1, dist inf."""
    import faiss

    n, m = len(q), len(refs)
    best_d = np.empty((n, 0), dtype=np.float32)
    best_i = np.empty((n, 0), dtype=np.int64)
    rmax = 0.0
    for start in range(0, m, shard_size):
        shard = _rows_f32(refs[start:start + shard_size])
        rmax = max(rmax, float(np.einsum("ij,ij->i", shard, shard).max()) if len(shard) else 0.0)
        index = faiss.IndexFlatL2(shard.shape[1])
        index.add(shard)
        dist, idx = index.search(q, min(kk, index.ntotal))
        del index, shard
        dist = np.where(idx >= 0, dist, np.float32(np.inf))
        idx = np.where(idx >= 0, idx + start, -1)
        best_d = np.concatenate([best_d, dist], axis=1)
        best_i = np.concatenate([best_i, idx], axis=1)
        if start > 0:  # merge: ascending float32 distance, the kk best
            order = np.argsort(best_d, axis=1, kind="stable")[:, :kk]
            best_d = np.take_along_axis(best_d, order, 1)
            best_i = np.take_along_axis(best_i, order, 1)
    # The float32 norm sum above may itself be low by a few ulps times d: pad it.
    return best_d, best_i, rmax * (1.0 + float32_error_coeff(q.shape[1]))


def _select(q, refs, d32, i32, k, kk, rows, qn, exclude_self, coeff, rmax):
    """Exact top-k of queries ``rows`` from their float32 candidates (kk were asked for),
    and per row whether the candidates were enough to be sure (see the module docstring)."""
    # The last candidate FAISS returned bounds every reference left out (its float32
    # distance is at most theirs); fewer than kk candidates: every reference is one.
    valid = i32 >= 0
    last = np.max(np.where(valid, d32, -np.inf), axis=1).astype(np.float64)
    exhausted = valid.sum(axis=1) < kk
    if exclude_self:
        self_hit = i32 == rows[:, None]
        d32 = np.where(self_hit, np.float32(np.inf), d32)
        i32 = np.where(self_hit, -1, i32)
        # Keep FAISS's (ascending) order among the rest; the self match goes last.
        order = np.argsort(d32, axis=1, kind="stable")
        d32, i32 = np.take_along_axis(d32, order, 1), np.take_along_axis(i32, order, 1)
    e = coeff * (qn + rmax)  # |float32 - true| <= e, per query
    d64 = d32.astype(np.float64)
    kth = d64[:, min(k, d64.shape[1]) - 1]
    band = (d64 <= (kth + 2 * e)[:, None]) & (i32 >= 0)  # can still be in the top-k
    ok = exhausted | (last > kth + 2 * e)
    pr, pc = np.nonzero(band)
    exact = np.full(d32.shape, np.inf)
    exact[pr, pc] = exact_pairs(q, refs, rows[pr], i32[pr, pc])
    # Sort by (exact distance, index): ties to the lower index, as a stable brute force.
    big = np.where(i32 >= 0, i32, np.iinfo(np.int64).max)
    order = np.lexsort((big, exact), axis=1)[:, :k]
    return np.take_along_axis(exact, order, 1), np.take_along_axis(i32, order, 1), ok, len(pr)


def knn_search(queries, refs, k: int, shard_size: int | None = None, threads: int | None = None,
               exclude_self: bool = False, stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest ``refs`` of each query under squared L2.

    Returns (sq_dist float64 (n, k), idx int64 (n, k)), sorted by exact distance, ties to
    the lower index; when ``exclude_self`` (queries and refs are the same set, row i is
    ref i) row i never returns i. Fewer than k references leave trailing idx -1 and
    distance inf. ``shard_size`` bounds how many references are indexed at once;
    ``threads`` sets FAISS's OpenMP threads for this call. ``stats``, if given, receives
    where the time went: ``faiss_s`` (float32 candidates), ``exact_s`` (float64 ranking),
    ``exact_pairs`` (distances recomputed) and ``searched_again`` (queries whose first
    candidates were not enough).
    """
    import time

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
    out_d = np.full((n, k), np.inf)
    out_i = np.full((n, k), -1, dtype=np.int64)
    if stats is not None:
        stats.update(faiss_s=0.0, exact_s=0.0, exact_pairs=0, searched_again=0)
    if n == 0 or m == 0:
        return out_d, out_i
    shard_size = int(shard_size or m)
    coeff = float32_error_coeff(q.shape[1])
    qn = np.einsum("ij,ij->i", q, q).astype(np.float64)
    # k + 8 candidates (+1 for the self match that exclude_self removes) are nearly always
    # enough; queries for which they are not are searched again with 4x as many.
    kk = min(m, k + max(8, k) + (1 if exclude_self else 0))

    old_threads = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(int(threads))
    try:
        todo = np.arange(n)
        t_faiss = t_exact = 0.0
        pairs = again = 0
        while len(todo):
            t0 = time.perf_counter()
            d32, i32, rmax = _faiss_candidates(q if len(todo) == n else q[todo], refs, kk, shard_size)
            t1 = time.perf_counter()
            d, i, ok, npairs = _select(q, refs, d32, i32, k, kk, todo, qn[todo], exclude_self, coeff, rmax)
            t_faiss, t_exact = t_faiss + t1 - t0, t_exact + time.perf_counter() - t1
            pairs += npairs
            again += int(len(todo) < n) * len(todo)
            if kk >= m:  # every reference was a candidate
                ok[:] = True
            kc = d.shape[1]
            out_d[todo[ok], :kc], out_i[todo[ok], :kc] = d[ok], i[ok]
            todo, kk = todo[~ok], min(m, 4 * kk)
    finally:
        faiss.omp_set_num_threads(old_threads)
    if stats is not None:
        stats.update(faiss_s=t_faiss, exact_s=t_exact, exact_pairs=pairs, searched_again=again)
    out_i = np.where(np.isfinite(out_d), out_i, -1)
    return out_d, out_i
