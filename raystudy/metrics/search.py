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
  true top-k. Queries where this fails are a crowd (below).
* exact ranking: only candidates within 2E of the k-th candidate's float32 distance can be
  in the top-k; for those (usually k or a few more per query) the distance is recomputed as
  a difference in float64, and the top-k taken on it, ties to the lower index (as a stable
  brute-force sort). Near-duplicates FAISS cannot order are then ordered correctly, and
  the distances returned are the float64 ones.
* crowds: when more references than candidates lie within 2E (samples of a memorizer at
  small K: thousands of copies of one training image, ~1e-17 apart, where E is ~1e-4),
  growing the list would recompute thousands of float64 differences per query and re-run
  the whole search with ever larger k (25+ CPU-minutes per batch of queries at 50,000
  references). Those queries are grouped around a leader
  c (one of them); ||x - y||^2 = ||(x - c) - (y - c)||^2 is then formed in float64 from the
  centred vectors by one matrix product per group, whose error is proportional to
  ||x - c||^2 + ||y - c||^2 (tiny inside a crowd) instead of ||x||^2 + ||y||^2. References
  that cannot be within the query's k-th distance (triangle inequality through c, with a
  float32 lower bound of ||y - c||) are skipped. The few left within that product's own
  bound get the same float64 difference and the same (distance, index) order: still exact.

Two backends propose the float32 candidates: FAISS (CPU) and blockwise matrix products
in torch (``backend="torch"``, on ``device``: CPU or CUDA, TF32 off for the call). Both are
cut with the same bound and ranked by the same float64 code, so they return the same
indices and bitwise the same distances.

``nearest_two`` is the brute force beside it, for query sets small enough to meet every
reference (the chance level's held-out queries, the twins' samples): references read from
the dataset and embedded ``chunk`` at a time, never held whole, and distances by float64
matrix products, whose ||x||^2 + ||y||^2 - 2 x.y form loses about 1e-16 of the norms, far
below any threshold.
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


def float64_error_coeff(d: int) -> float:
    """The same bound for the float64 product of centred vectors x - c, y - c (crowds), with
    8 more units for rounding x - c and y - c themselves (a float32 difference need not be
    exact in float64 when the exponents are far apart): an error delta <= u s in the
    difference, s = ||x - c|| + ||y - c||, moves the distance by <= 2.1 u s^2
    <= 4.2 u (||x - c||^2 + ||y - c||^2)."""
    return (2.0 * _LAMBDA * np.sqrt(max(int(d), 1)) + 12.0) * 2.0 ** -53


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
        # faiss.knn searches the array where it lies: an IndexFlatL2 would copy the shard into the
        # index at every query batch (a second copy of every reference set), for the same
        # knn_L2sqr and so the same float32 distances and order.
        dist, idx = faiss.knn(q, shard, min(kk, len(shard)))
        del shard
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


def _select(q, refs, d32, i32, k, kk, rows, qn, exclude_self, coeff, rmax, complete=False):
    """Exact top-k of queries ``rows`` from their float32 candidates (kk were asked for),
    and per row whether the candidates were enough to be sure (see the module docstring);
    ``complete``: every reference was a candidate."""
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
    ok = exhausted | (last > kth + 2 * e) | complete
    # Rows not settled are searched again: their float64 distances would be thrown away.
    pr, pc = np.nonzero(band & ok[:, None])
    exact = np.full(d32.shape, np.inf)
    exact[pr, pc] = exact_pairs(q, refs, rows[pr], i32[pr, pc])
    # Sort by (exact distance, index): ties to the lower index, as a stable brute force.
    big = np.where(i32 >= 0, i32, np.iinfo(np.int64).max)
    order = np.lexsort((big, exact), axis=1)[:, :k]
    return np.take_along_axis(exact, order, 1), np.take_along_axis(i32, order, 1), ok, len(pr)


# -- torch: float32 candidates by blockwise matrix products ------------------------------------

# float32 elements of one (queries x references) distance block: 128 MB, whatever d is.
_TORCH_BLOCK = 1 << 25
# Bytes of one reference shard on the device (torch backend): a memmap larger than device
# memory is searched shard by shard at this size, whatever knn.shard_size says.
_TORCH_SHARD_BYTES = 1 << 30


class _IEEE:
    """Full float32 matmuls for the duration (no TF32 / bf16 reduced precision, which a
    training option may have switched on): the error bound assumes IEEE float32 products."""

    def __enter__(self):
        import torch

        self._old = [(b, b.fp32_precision) for b in (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)]
        for b, _ in self._old:
            b.fp32_precision = "ieee"

    def __exit__(self, *exc):
        for b, v in self._old:
            b.fp32_precision = v


def resolve_device(device=None):
    import torch

    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _device_shard(refs, start: int, size: int, device, cache: dict | None):
    """References [start, start + size) as a float32 tensor on ``device`` with their float32
    squared norms; kept in ``cache`` (if given) so repeated query batches copy them once."""
    import torch

    key = (start, size, str(device))
    if cache is not None and key in cache:
        return cache[key]
    a = _rows_f32(refs[start:start + size])
    r = torch.from_numpy(a if a.flags.writeable else a.copy()).to(device)
    out = (r, (r * r).sum(1))
    # Kept on an accelerator only (on the CPU the tensor is the array itself, or a copy of a
    # memmap's rows that must not pile up in RAM), and only while half its memory is free:
    # references larger than that are streamed shard by shard at every call.
    if cache is not None and device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        if free - r.numel() * 4 > total / 2:
            cache[key] = out
    return out


def _torch_candidates(q: np.ndarray, refs, kk: int, shard_size: int, device=None, cache: dict | None = None):
    """As ``_faiss_candidates`` (same return values), from ||x||^2 + ||y||^2 - 2 x.y in
    float32 matrix products on ``device``, blockwise, top-kk by ``torch.topk``."""
    import torch

    dev = resolve_device(device)
    n, m, d = len(q), len(refs), q.shape[1]
    shard_size = max(1, min(int(shard_size), _TORCH_SHARD_BYTES // (4 * max(1, d))))
    best_d = np.full((n, 0), np.inf, dtype=np.float32)
    best_i = np.full((n, 0), -1, dtype=np.int64)
    rmax = 0.0
    qt = torch.from_numpy(q)
    with _IEEE(), torch.no_grad():
        for start in range(0, m, shard_size):
            r, rn = _device_shard(refs, start, shard_size, dev, cache)
            rmax = max(rmax, float(rn.max()) if len(r) else 0.0)
            kq = min(kk, len(r))
            qb = max(1, _TORCH_BLOCK // max(1, len(r)))
            sd = np.empty((n, kq), dtype=np.float32)
            si = np.empty((n, kq), dtype=np.int64)
            for a in range(0, n, qb):
                x = qt[a:a + qb].to(dev)
                # ||x||^2 + ||y||^2 - 2 x.y, the form FAISS uses, so the same bound holds.
                dist = torch.addmm(rn[None, :], x, r.T, beta=1.0, alpha=-2.0).add_((x * x).sum(1, keepdim=True))
                v, j = torch.topk(dist, kq, dim=1, largest=False, sorted=True)
                sd[a:a + qb], si[a:a + qb] = v.cpu().numpy(), j.cpu().numpy() + start
            best_d = np.concatenate([best_d, sd], axis=1)
            best_i = np.concatenate([best_i, si], axis=1)
            if start > 0:
                order = np.argsort(best_d, axis=1, kind="stable")[:, :kk]
                best_d = np.take_along_axis(best_d, order, 1)
                best_i = np.take_along_axis(best_i, order, 1)
    return best_d, best_i, rmax * (1.0 + float32_error_coeff(d))


# -- crowds: centred float64 products ----------------------------------------------------------

# Reference rows per float64 product block of a crowd group.
_CROWD_BLOCK = 4096


def _crowded(q, refs, rows, qn, k, u_kth, exclude_self, shard_size, device=None, cache=None):
    """Exact top-k of queries ``rows`` whose float32 candidates were too crowded to settle
    (see the module docstring). ``u_kth``: an upper bound of each query's true k-th squared
    distance (the exact distances of k of its candidates). Returns (dist, idx, exact pairs)."""
    import torch

    dev = resolve_device(device)
    nf, d = len(rows), q.shape[1]
    c32, c64 = float32_error_coeff(d), float64_error_coeff(d)
    x64 = torch.from_numpy(q[rows]).to(dev, torch.float64)
    # Leaders: greedily, the first query not yet grouped takes every other one within its
    # float32 error radius (any grouping is exact; a tight one makes the products precise).
    group = torch.full((nf,), -1, dtype=torch.long, device=dev)
    radius = torch.from_numpy(c32 * (qn + qn.max())).to(dev)
    leaders = []
    while (free := torch.nonzero(group < 0).reshape(-1)).numel():
        lead = int(free[0])
        near = ((x64[free] - x64[lead]) ** 2).sum(1) <= radius[free]
        near[0] = True
        group[free[near]] = len(leaders)
        leaders.append(lead)
    centre = x64[leaders]  # (G, d), float32 values held exactly
    xc = x64 - centre[group]
    xcn = (xc * xc).sum(1)
    u = torch.from_numpy(np.asarray(u_kth, dtype=np.float64)).to(dev)
    # Per group: a reference y matters only if ||y - c|| <= max over the group of
    # sqrt(u_kth) + ||x - c|| (triangle inequality); 1e-6 of slack covers the roundings here.
    reach = torch.zeros(len(leaders), dtype=torch.float64, device=dev).scatter_reduce(
        0, group, (u.sqrt() + xcn.sqrt()) ** 2, "amax") * (1 + 1e-6)
    c_f32 = centre.float()
    cn32 = (c_f32 * c_f32).sum(1)
    best_up = torch.full((nf, k), float("inf"), dtype=torch.float64, device=dev)
    cand_r, cand_j, cand_lo = [], [], []  # kept pairs (query row, reference, lower bound)
    rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(dev)
    shard_size = max(1, min(int(shard_size), _TORCH_SHARD_BYTES // (4 * max(1, d))))
    with _IEEE(), torch.no_grad():
        for start in range(0, len(refs), shard_size):
            r, rn = _device_shard(refs, start, shard_size, dev, cache)
            gc = max(1, _TORCH_BLOCK // max(1, len(r)))  # leaders per block of lower bounds
            for g in range(len(leaders)):
                if g % gc == 0:
                    # float32 lower bound of ||y - c||^2 for these leaders and the shard's references.
                    cb = slice(g, g + gc)
                    dc = torch.addmm(rn[None, :], c_f32[cb], r.T, beta=1.0, alpha=-2.0).add_(cn32[cb, None])
                    lb = (dc.double() - c32 * (cn32[cb, None] + rn[None, :]).double()).clamp_(min=0)
                js = torch.nonzero(lb[g % gc] <= reach[g]).reshape(-1)
                if not js.numel():
                    continue
                mine = torch.nonzero(group == g).reshape(-1)
                xg, xgn = xc[mine], xcn[mine]
                for b in range(0, len(js), _CROWD_BLOCK):
                    jb = js[b:b + _CROWD_BLOCK]
                    yc = r[jb].double() - centre[g]
                    ycn = (yc * yc).sum(1)
                    dd = torch.addmm(ycn[None, :], xg, yc.T, beta=1.0, alpha=-2.0).add_(xgn[:, None])
                    e = c64 * (xgn[:, None] + ycn[None, :])
                    up, lo = dd + e, dd - e
                    if exclude_self:
                        self_hit = rows_t[mine][:, None] == (jb + start)[None, :]
                        up.masked_fill_(self_hit, float("inf"))
                        lo.masked_fill_(self_hit, float("inf"))
                    best_up[mine] = torch.cat([best_up[mine], up], 1).topk(k, 1, largest=False).values
                    keep = lo <= best_up[mine, k - 1:k]
                    pr, pc = torch.nonzero(keep, as_tuple=True)
                    cand_r.append(mine[pr].cpu())
                    cand_j.append((jb[pc] + start).cpu())
                    cand_lo.append(lo[pr, pc].cpu())
    kth = torch.minimum(best_up[:, k - 1], u).cpu().numpy()
    cr = torch.cat(cand_r).numpy() if cand_r else np.zeros(0, np.int64)
    cj = torch.cat(cand_j).numpy() if cand_j else np.zeros(0, np.int64)
    clo = torch.cat(cand_lo).numpy() if cand_lo else np.zeros(0)
    keep = clo <= kth[cr]  # pairs dropped here are provably outside the top-k
    cr, cj = cr[keep], cj[keep]
    exact = exact_pairs(q, refs, np.asarray(rows)[cr], cj)
    # (query row, exact distance, index): ties to the lower index, as everywhere.
    order = np.lexsort((cj, exact, cr))
    cr, cj, exact = cr[order], cj[order], exact[order]
    first = np.searchsorted(cr, np.arange(nf))
    rank = np.arange(len(cr)) - first[cr]
    top = rank < k
    out_d = np.full((nf, k), np.inf)
    out_i = np.full((nf, k), -1, dtype=np.int64)
    out_d[cr[top], rank[top]] = exact[top]
    out_i[cr[top], rank[top]] = cj[top]
    return out_d, out_i, len(cr)


def knn_search(queries, refs, k: int, shard_size: int | None = None, threads: int | None = None,
               exclude_self: bool = False, stats: dict | None = None, backend: str = "faiss",
               device=None, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest ``refs`` of each query under squared L2.

    Returns (sq_dist float64 (n, k), idx int64 (n, k)), sorted by exact distance, ties to
    the lower index; when ``exclude_self`` (queries and refs are the same set, row i is
    ref i) row i never returns i. Fewer than k references leave trailing idx -1 and
    distance inf. ``shard_size`` bounds how many references are indexed at once;
    ``threads`` sets FAISS's OpenMP threads for this call. ``backend``: ``faiss`` or
    ``torch`` (float32 candidates by matrix products on ``device``, CPU or CUDA; ``cache``,
    a dict the caller keeps, holds the references on the device between calls with the
    same ``refs``). ``stats``, if given, receives where the time went: ``faiss_s`` (float32
    candidates, either backend), ``exact_s`` (float64 ranking), ``crowd_s`` (crowded queries'
    centred products), ``exact_pairs`` (distances recomputed), ``searched_again`` (0: no
    query is searched a second time, the benchmarks report the count) and ``crowded`` (queries
    whose first candidates were not enough, settled as a crowd).
    """
    import time

    if backend not in ("faiss", "torch"):
        raise ValueError(f"backend must be 'faiss' or 'torch', got {backend!r}")
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
    st = dict(faiss_s=0.0, exact_s=0.0, crowd_s=0.0, exact_pairs=0, searched_again=0, crowded=0)
    if stats is not None:
        stats.update(st)
    if n == 0 or m == 0:
        return out_d, out_i
    shard_size = int(shard_size or m)
    coeff = float32_error_coeff(q.shape[1])
    qn = np.einsum("ij,ij->i", q, q).astype(np.float64)
    # k + 8 candidates (+1 for the self match that exclude_self removes) are nearly always
    # enough; queries for which they are not are a crowd (see the module docstring).
    kk = min(m, k + max(8, k) + (1 if exclude_self else 0))
    if backend == "torch":
        def candidates(qq, kk):
            return _torch_candidates(qq, refs, kk, shard_size, device, cache)
    else:
        import faiss

        def candidates(qq, kk):
            return _faiss_candidates(qq, refs, kk, shard_size)

        old_threads = faiss.omp_get_max_threads()
        if threads:
            faiss.omp_set_num_threads(int(threads))
    try:
        todo = np.arange(n)
        t0 = time.perf_counter()
        d32, i32, rmax = candidates(q, kk)
        t1 = time.perf_counter()
        d, i, ok, npairs = _select(q, refs, d32, i32, k, kk, todo, qn, exclude_self, coeff, rmax, complete=kk >= m)
        st["faiss_s"] += t1 - t0
        st["exact_s"] += time.perf_counter() - t1
        st["exact_pairs"] += npairs
        kc = d.shape[1]
        out_d[ok, :kc], out_i[ok, :kc] = d[ok], i[ok]
        todo = todo[~ok]
        if len(todo):  # more references within 2E than candidates: a crowd (module docstring)
            t0 = time.perf_counter()
            cand = i32[~ok]
            if exclude_self:
                cand = np.where(cand == todo[:, None], -1, cand)
            # Exact distances of k candidates: an upper bound of the k-th true one.
            first = np.argsort(cand < 0, axis=1, kind="stable")[:, :k]
            pick = np.take_along_axis(cand, first, 1)
            u = exact_sq_dist(q[todo], refs, pick).max(1)
            cd, ci, npairs = _crowded(q, refs, todo, qn[todo], k, u, exclude_self, shard_size,
                                      *((device, cache) if backend == "torch" else ("cpu", None)))
            out_d[todo], out_i[todo] = cd, ci
            st["crowd_s"] += time.perf_counter() - t0
            st["exact_pairs"] += npairs + pick.size
            st["crowded"] += len(todo)
    finally:
        if backend == "faiss":
            faiss.omp_set_num_threads(old_threads)
    if stats is not None:
        stats.update(st)
    out_i = np.where(np.isfinite(out_d), out_i, -1)
    return out_d, out_i


def nearest_two(queries: np.ndarray, dataset, idx: np.ndarray, embed, chunk: int = 1024) -> np.ndarray:
    """Squared distances (m, 2) from each embedded query to its two nearest of ``dataset[idx]``
    (inf where fewer than two), reading the references ``chunk`` at a time."""
    best = np.full((len(queries), 2), np.inf)
    q = queries.astype(np.float64)
    qq = (q ** 2).sum(1)[:, None]
    for s in range(0, len(idx), chunk):
        r = embed(dataset.get(idx[s:s + chunk])).astype(np.float64)
        d = np.maximum(qq - 2 * q @ r.T + (r ** 2).sum(1)[None], 0.0)
        best = np.sort(np.concatenate([best, d], 1), 1)[:, :2]
    return best
