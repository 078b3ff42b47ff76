"""The torch search (blockwise float32 products) against the FAISS path and brute force,
and crowds (memorizer-like copies) settled exactly by the centred float64 products."""

import numpy as np
import pytest
import torch

from raystudy.metrics.search import knn_search
from tests.unit.metrics.test_search import brute, near_pairs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def both(q, r, k, device="cpu", **kw):
    """FAISS's and torch's answers, after checking they are the same by index and value."""
    sf, st = {}, {}
    d_f, i_f = knn_search(q, r, k, stats=sf, **kw)
    d_t, i_t = knn_search(q, r, k, backend="torch", device=device, stats=st, **kw)
    np.testing.assert_array_equal(i_t, i_f)
    # Both rank on the same float64 differences: the distances are the same numbers.
    np.testing.assert_array_equal(d_t, d_f)
    return d_t, i_t, st


def check_brute(d, i, q, r, k, exclude_self=False):
    d_ref, i_ref = brute(q.reshape(len(q), -1), np.asarray(r).reshape(len(r), -1), k, exclude_self)
    kc = min(k, d_ref.shape[1])
    np.testing.assert_array_equal(i[:, :kc], i_ref)
    np.testing.assert_allclose(d[:, :kc], d_ref, rtol=1e-12, atol=0)


@pytest.fixture
def data():
    rng = np.random.default_rng(10)
    return rng.normal(size=(70, 40)).astype(np.float32), rng.normal(size=(301, 40)).astype(np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shard_size", [None, 1, 13, 300])
def test_random_data(data, device, shard_size):
    q, r = data
    d, i, _ = both(q, r, 5, device, shard_size=shard_size)
    check_brute(d, i, q, r, 5)


@pytest.mark.parametrize("device", DEVICES)
def test_near_duplicates_and_ties(device):
    base, refs = near_pairs(n=48, dim=2048, seed=11)
    for k in (1, 3):
        d, i, _ = both(base, refs, k, device)
        check_brute(d, i, base, refs, k)
        np.testing.assert_array_equal(i[:, 0], 48 + 50 + np.arange(48))
    # Exact ties: every reference twice; the lower index comes first.
    refs2 = np.concatenate([refs, refs[::-1]])
    d, i, _ = both(base, refs2, 4, device, shard_size=97)
    check_brute(d, i, base, refs2, 4)
    assert (d[:, 0] == d[:, 1]).all() and (i[:, 0] < len(refs)).all()


@pytest.mark.parametrize("device", DEVICES)
def test_fewer_refs_than_k_and_exclude_self(data, device):
    q, r = data
    d, i, _ = both(q, r[:3], 5, device, shard_size=2)
    check_brute(d, i, q, r[:3], 5)
    assert (i[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all()
    qq = np.concatenate([q, q[:1]])  # a duplicate of row 0 stays a neighbour
    d, i, _ = both(qq, qq, 4, device, shard_size=9, exclude_self=True)
    check_brute(d, i, qq, qq, 4, exclude_self=True)
    assert i[0, 0] == len(qq) - 1 and d[0, 0] == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_memmap_refs_in_shards(tmp_path, data, device, monkeypatch):
    """A memmap searched in shards smaller than it, the device budget forcing the shards."""
    import raystudy.metrics.search as search

    q, r = data
    mm = np.lib.format.open_memmap(tmp_path / "r.npy", mode="w+", dtype=np.float32, shape=(301, 5, 8))
    mm[:] = r.reshape(301, 5, 8)
    mm.flush()
    mm = np.load(tmp_path / "r.npy", mmap_mode="r")
    seen = []
    real = search._device_shard

    def spy(refs, start, size, device, cache):
        seen.append(size)
        return real(refs, start, size, device, cache)

    monkeypatch.setattr(search, "_device_shard", spy)
    monkeypatch.setattr(search, "_TORCH_SHARD_BYTES", 4 * 40 * 64)  # 64 rows per shard
    d, i, _ = both(q.reshape(70, 5, 8), mm, 3, device)
    check_brute(d, i, q, r, 3)
    assert set(seen) == {64} and len(seen) == 5


def crowd(n_base=2, per=150, n_q=40, dim=3072, seed=12):
    """Memorizer-like samples: copies of ``n_base`` images that differ only by float32
    rounding (relative 1e-7), far below the float32 error bound of the distances."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 1, size=(n_base, dim)) / np.sqrt(dim)

    def copies(n):
        b = base[rng.integers(0, n_base, n)]
        return (b * (1 + 1e-7 * rng.normal(size=b.shape))).astype(np.float32)
    return copies(n_q), copies(n_base * per)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shard_size", [None, 101])
def test_crowds_are_exact_without_every_difference(device, shard_size):
    q, r = crowd()
    d, i, st = both(q, r, 5, device, shard_size=shard_size)
    check_brute(d, i, q, r, 5)
    assert st["crowded"] == len(q)
    # The centred products leave about k float64 differences per query, not the ~150 of
    # its crowd (2 + 5 per query: the k-th bound, then the ranking).
    assert st["exact_pairs"] <= 3 * 5 * len(q), st


@pytest.mark.parametrize("device", DEVICES)
def test_crowd_with_exclude_self_and_exact_copies(device):
    q, r = crowd(per=60, n_q=1, seed=13)
    r = np.concatenate([r, r[:7]])  # bitwise copies: exact ties inside the crowd
    d, i, st = both(r, r, 4, device, shard_size=50, exclude_self=True)
    check_brute(d, i, r, r, 4, exclude_self=True)
    assert st["crowded"] > 0


@pytest.mark.parametrize("device", DEVICES)
def test_crowd_spread_around_its_leader(device):
    """One crowd (all within float32 error of each other) whose queries sit ~1e-3 from the
    leader, each with its own references ~1e-5 from it: the references that matter are
    farther from the leader than the k-th distance, yet every one is found."""
    rng = np.random.default_rng(14)
    dim, n, per = 3072, 10, 20
    base = rng.uniform(-1, 1, size=dim) / np.sqrt(dim)
    q = base + 1e-3 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    r = (q[:, None, :] + 1e-5 * rng.normal(size=(n, per, dim)) / np.sqrt(dim)).reshape(n * per, dim)
    q, r = q.astype(np.float32), r[rng.permutation(n * per)].astype(np.float32)
    d, i, st = both(q, r, 5, device)
    check_brute(d, i, q, r, 5)
    assert st["crowded"] == n


