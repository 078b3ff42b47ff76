"""The known-manifold dataset: deterministic, lazy, and its projection separates on- from off-manifold."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from raystudy.datasets.manifold import (
    COLOUR,
    fit_latents,
    latents,
    manifold_dataset,
    manifold_error,
    manifold_scores,
    render,
)


def _cfg(**kw):
    return SimpleNamespace(**{"name": "manifold", "image_size": 32, "size": 100_000, **kw})


def test_get_is_deterministic_and_independent_of_the_batch():
    ds = manifold_dataset(_cfg(), seed=3)
    a = ds.get([7, 123, 99_999])
    b = ds.get([99_999])
    c = manifold_dataset(_cfg(), seed=3).get([123, 0])
    assert a.shape == (3, 3, 32, 32) and a.dtype == np.float32
    assert np.array_equal(a[2], b[0]) and np.array_equal(a[1], c[0])
    assert -1 <= a.min() and a.max() <= 1
    assert not np.array_equal(manifold_dataset(_cfg(), seed=4).get([7]), a[:1])


def test_huge_dataset_constructs_instantly_and_renders_on_demand():
    # CPU time of this process, which another job on the machine does not inflate: rendering
    # 10**7 images up front would take minutes of it
    t = time.process_time()
    ds = manifold_dataset(_cfg(size=10**7, image_size=16))
    assert time.process_time() - t < 0.1
    assert len(ds) == 10**7 and ds.shape == (3, 16, 16)
    assert ds.get([10**7 - 1]).shape == (1, 3, 16, 16)


def test_load_dataset_routes_to_manifold():
    from raystudy.config import DataSection
    from raystudy.datasets import load_dataset

    ds = load_dataset(DataSection(name="manifold", image_size=16, size=1000))
    assert ds.shape == (3, 16, 16) and len(ds) == 1000


def test_held_out_images_fit_and_noise_does_not():
    ds = manifold_dataset(_cfg(size=10**6))
    idx = np.arange(500_000, 500_064)  # far from any small training set
    z, err = fit_latents(ds.get(idx))
    assert np.percentile(err, 100) < 0.01
    assert np.abs(z[:, :3] - latents(idx)[:, :3]).max() < 0.01
    noise = np.clip(np.random.default_rng(0).normal(0, 0.5, (64, 3, 32, 32)), -1, 1).astype(np.float32)
    err_noise = manifold_error(noise)
    assert err_noise.min() > 0.3
    assert err_noise.min() > 20 * err.max()


def _worlds(size, n=256, seed=0):
    """Clean held-out renders, the same with sigma = 0.05 pixel noise, 50/50 blends of two
    training discs, and off-range discs (n/4 each: radius 0.3-0.45, radius 0.03-0.07,
    centre 0.1-0.25 or 0.75-0.9 in one coordinate, one colour channel at +-(1.2-1.5) clipped)."""
    rng = np.random.default_rng(seed)
    clean = render(latents(np.arange(500_000, 500_000 + n)), size)
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), -1, 1).astype(np.float32)
    train = render(latents(np.arange(2 * n)), size)
    blend = 0.5 * (train[:n] + train[n:])
    z = latents(np.arange(600_000, 600_000 + n)).astype(np.float64)
    kind = np.arange(n) * 4 // n
    u = rng.uniform(size=n)
    rows = np.arange(n)
    z[kind == 0, 2] = 0.3 + 0.15 * u[kind == 0]
    z[kind == 1, 2] = 0.03 + 0.04 * u[kind == 1]
    edge = np.where(rng.integers(0, 2, n) == 0, 0.1 + 0.15 * u, 0.75 + 0.15 * u)
    coord = rng.integers(0, 2, n)
    z[rows[kind == 2], coord[kind == 2]] = edge[kind == 2]
    chan = 3 + rng.integers(0, 3, n)
    z[rows[kind == 3], chan[kind == 3]] = rng.choice([-1, 1], n)[kind == 3] * (1.2 + 0.3 * u[kind == 3])
    off = np.clip(render(z.astype(np.float32), size), *COLOUR)
    return clean, noisy, blend, off, kind


@pytest.mark.parametrize("size", [16, 32])
def test_blends_and_off_range_discs_are_off_the_manifold_and_noisy_discs_on_it(size):
    from sklearn.metrics import roc_auc_score

    def auc(on, offm):
        return roc_auc_score(np.r_[np.zeros(len(on)), np.ones(len(offm))], np.r_[on, offm])

    clean, noisy, blend, off, kind = _worlds(size)
    e_clean, e_noisy, e_blend, e_off = (manifold_error(x) for x in (clean, noisy, blend, off))
    assert np.percentile(e_clean, 99) < 0.005
    assert np.median(e_noisy) < 0.015  # the noise is forgiven, not the structure
    assert auc(e_noisy, e_blend) >= 0.95
    assert auc(e_noisy, e_off) >= 0.95
    for k in range(4):  # each kind of off-range disc on its own
        assert auc(e_noisy, e_off[kind == k]) >= 0.9, k
    assert auc(e_clean, e_blend) == 1.0 and auc(e_clean, e_off) >= 0.99
    # The fit stays in the data's box, so an off-range disc is not fitted exactly.
    z, rms = fit_latents(off)
    assert (z[:, 2] >= 0.1).all() and (z[:, 2] <= 0.25).all() and (np.abs(z[:, 3:]) <= 1).all()
    assert np.median(rms[kind != 3]) > 5 * np.median(fit_latents(clean)[1])


def test_manifold_error_is_fast_and_noise_beyond_the_tolerance_counts():
    x = render(latents(np.arange(200)), 16)
    t = time.process_time()  # CPU seconds: other jobs on a shared 2-core machine do not count
    manifold_error(x)
    assert time.process_time() - t < 5
    rng = np.random.default_rng(1)
    s = manifold_scores(np.clip(x[:64] + rng.normal(0, 0.3, x[:64].shape), -1, 1).astype(np.float32))
    assert np.median(s["noise"]) == pytest.approx(0.3, rel=0.15)
    assert (s["manifold_error"] > 0.2).all()
