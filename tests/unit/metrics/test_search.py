"""Exact sharded kNN (raystudy.metrics.search) against brute force in float64."""

import numpy as np
import pytest

from raystudy.metrics.search import exact_sq_dist, knn_search, nearest_two


def brute(q, r, k, exclude_self=False):
    q64, r64 = q.astype(np.float64), r.astype(np.float64)
    d = ((q64[:, None, :] - r64[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        d[np.arange(len(q)), np.arange(len(q))] = np.inf
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(60, 24)).astype(np.float32), rng.normal(size=(237, 24)).astype(np.float32)


@pytest.mark.parametrize("shard_size", [None, 1, 7, 50, 236, 1000])
def test_sharded_equals_unsharded_equals_bruteforce(data, shard_size):
    q, r = data
    d_ref, i_ref = brute(q, r, 5)
    d, i = knn_search(q, r, 5, shard_size=shard_size, threads=1)
    assert d.dtype == np.float64 and i.dtype == np.int64 and d.shape == i.shape == (60, 5)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12)


def test_near_duplicate_distance_is_exact():
    """Training images plus 1e-4 noise: with enough queries FAISS takes its BLAS path,
    whose x^2 + y^2 - 2xy form gives ~1e-4 garbage (often 0) at this scale; the
    returned distance must be the float64 direct one."""
    rng = np.random.default_rng(1)
    train = rng.uniform(-1, 1, size=(200, 3 * 32 * 32)).astype(np.float32)
    q = (train[:64] + 1e-4 * rng.normal(size=(64, train.shape[1]))).astype(np.float32)
    want = ((q.astype(np.float64) - train[:64].astype(np.float64)) ** 2).sum(1)
    for shard_size in (None, 64):
        d, i = knn_search(q, train, 3, shard_size=shard_size)
        np.testing.assert_array_equal(i[:, 0], np.arange(64))
        np.testing.assert_allclose(d[:, 0], want, rtol=1e-12)
        assert (d[:, 1] > 100 * d[:, 0]).all()


def near_pairs(n=64, dim=4096, seed=2):
    """n queries, each with two references within ~1e-4 of it (b nearer than a), closer
    together than FAISS's float32 BLAS error, among far-away references."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-10, 10, size=(n, dim)).astype(np.float32)
    sign = lambda: np.sign(rng.normal(size=base.shape)).astype(np.float32)  # noqa: E731
    a, b = base + np.float32(2e-4) * sign(), base + np.float32(1e-4) * sign()
    far = rng.uniform(-10, 10, size=(50, dim)).astype(np.float32)
    return base, np.concatenate([a, far, b])  # a_j at j, b_j at n + 50 + j


def test_near_duplicates_ordered_exactly():
    base, refs = near_pairs()
    n = len(base)
    for k in (1, 2):  # k=1: the nearer one must be selected, not just sorted first
        d, i = knn_search(base, refs, k)
        d_ref, i_ref = brute(base, refs, k)
        np.testing.assert_array_equal(i[:, 0], n + 50 + np.arange(n))
        np.testing.assert_array_equal(i, i_ref)
        np.testing.assert_allclose(d, d_ref, rtol=1e-12)


@pytest.mark.parametrize("shard_size", [None, 9])
def test_exclude_self(data, shard_size):
    q, _ = data
    q = np.concatenate([q, q[:1]])  # an exact duplicate of row 0: distance 0, kept
    d, i = knn_search(q, q, 4, shard_size=shard_size, exclude_self=True)
    d_ref, i_ref = brute(q, q, 4, exclude_self=True)
    assert not (i == np.arange(len(q))[:, None]).any()
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12)
    assert i[0, 0] == len(q) - 1 and d[0, 0] == 0.0


def test_fewer_refs_than_k(data):
    q, r = data
    d, i = knn_search(q, r[:3], 5, shard_size=2)
    d_ref, i_ref = brute(q, r[:3], 3)
    np.testing.assert_array_equal(i[:, :3], i_ref)
    np.testing.assert_allclose(d[:, :3], d_ref, rtol=1e-12)
    assert (i[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all()
    # Self excluded from a 3-element set leaves 2 neighbours.
    d, i = knn_search(r[:3], r[:3], 5, exclude_self=True)
    assert (i[:, 2:] == -1).all() and (i[:, :2] >= 0).all()
    # No references at all.
    d, i = knn_search(q, r[:0], 2)
    assert (i == -1).all() and np.isinf(d).all()


def test_memmap_refs_and_image_shapes(tmp_path, data):
    q, r = data
    mm = np.lib.format.open_memmap(tmp_path / "r.npy", mode="w+", dtype=np.float32, shape=(237, 2, 3, 4))
    mm[:] = r.reshape(237, 2, 3, 4)
    mm.flush()
    mm = np.load(tmp_path / "r.npy", mmap_mode="r")
    d, i = knn_search(q.reshape(60, 2, 3, 4), mm, 3, shard_size=40)
    d_ref, i_ref = brute(q, r, 3)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-12)


def test_exact_sq_dist_marks_missing():
    q = np.ones((2, 3), np.float32)
    r = np.zeros((4, 3), np.float32)
    out = exact_sq_dist(q, r, np.array([[0, -1], [-1, -1]]))
    assert out[0, 0] == 3.0 and np.isinf(out[0, 1]) and np.isinf(out[1]).all()


def test_dimension_mismatch():
    with pytest.raises(ValueError, match="dimensions"):
        knn_search(np.zeros((2, 3)), np.zeros((4, 5)), 1)


def test_many_candidates_within_float32_error_are_settled_as_a_crowd(monkeypatch):
    """30 references per query at nearly the same tiny distance (far below FAISS's float32
    error at these norms): the first k + 8 candidates cannot settle the top-k, so those
    queries are settled as a crowd (centred float64 products, no second search), and the
    answer is brute force's."""
    import raystudy.metrics.search as search

    rng = np.random.default_rng(3)
    n, per, dim = 32, 30, 1024
    base = rng.uniform(-10, 10, size=(n, dim)).astype(np.float32)
    signs = np.sign(rng.normal(size=(n, per, dim))).astype(np.float32)
    near = (base[:, None, :] + np.float32(1e-3) * signs).reshape(n * per, dim)
    far = rng.uniform(-10, 10, size=(40, dim)).astype(np.float32)
    refs = np.concatenate([far, near])[rng.permutation(40 + n * per)]
    calls = []
    real = search._faiss_candidates

    def counting(q, r, kk, shard_size):
        calls.append((len(q), kk))
        return real(q, r, kk, shard_size)

    monkeypatch.setattr(search, "_faiss_candidates", counting)
    for k in (1, 5):
        calls.clear()
        st = {}
        d, i = knn_search(base, refs, k, shard_size=300, stats=st)
        d_ref, i_ref = brute(base, refs, k)
        np.testing.assert_array_equal(i, i_ref)
        np.testing.assert_allclose(d, d_ref, rtol=1e-12)
        assert len(calls) == 1 and st["crowded"] == n, (calls, st)


def test_exact_ties_go_to_the_lower_index(data):
    """Duplicated references: equal distances, returned lower index first, as a stable
    brute-force sort."""
    q, r = data
    refs = np.concatenate([r, r[::-1]])
    for shard_size in (None, 100):
        d, i = knn_search(q, refs, 4, shard_size=shard_size)
        d_ref, i_ref = brute(q, refs, 4)
        np.testing.assert_array_equal(i, i_ref)
        np.testing.assert_allclose(d, d_ref, rtol=1e-12)
        assert (i[:, 0] < len(r)).all() and (d[:, 0] == d[:, 1]).all()


def test_float32_error_bound_covers_faiss():
    """The bound the candidates are cut with is far above what FAISS's float32 distances
    actually miss by (random data, BLAS path)."""
    import faiss

    from raystudy.metrics.search import float32_error_coeff

    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 2000)).astype(np.float32) + 3
    y = rng.normal(size=(500, 2000)).astype(np.float32) + 3
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(y)
    d32, idx = index.search(x, 50)
    exact = exact_sq_dist(x, y, idx)
    s = (x.astype(np.float64) ** 2).sum(1)[:, None] + (y.astype(np.float64) ** 2).sum(1)[idx]
    worst = (np.abs(d32 - exact) / s).max()
    assert 0 < worst < float32_error_coeff(x.shape[1]) / 10


def test_brute_force_nearest_two_equals_every_distance_sorted():
    """nearest_two (the chance level's and the twins' search) against all pairwise distances of
    the embedded images, sorted: references at scattered dataset indices, read in chunks smaller
    and larger than the set, and sets of fewer than two (inf where no neighbour is left)."""
    from raystudy.datasets import from_array
    from raystudy.metrics import PixelL2

    rng = np.random.default_rng(5)
    dataset = from_array("toy", rng.normal(size=(90, 1, 3, 4)))
    embed = PixelL2().embed
    # Queries: fresh images, and a copy of a reference (distance 0).
    q = embed(np.concatenate([rng.normal(size=(9, 1, 3, 4)), dataset.get([70])]))
    q64 = q.astype(np.float64)
    scattered = np.concatenate([[70], rng.permutation(np.setdiff1d(np.arange(90), [70]))])
    for n_refs in (0, 1, 2, 7, 40):
        idx = scattered[:n_refs]
        r64 = embed(dataset.get(idx)).astype(np.float64) if n_refs else np.zeros((0, q.shape[1]))
        want = np.sort(((q64[:, None, :] - r64[None]) ** 2).sum(-1), 1)[:, :2]
        want = np.concatenate([want, np.full((len(q), 2 - want.shape[1]), np.inf)], 1)
        for chunk in (1, 3, 4096):
            got = nearest_two(q, dataset, idx, embed, chunk)
            assert got.shape == (len(q), 2) and got.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
            assert (np.isinf(got).sum(1) == max(0, 2 - n_refs)).all()
