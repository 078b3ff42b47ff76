"""The known-manifold dataset: deterministic, lazy, and its projection separates on- from off-manifold."""

import time
from types import SimpleNamespace

import numpy as np

from raystudy.manifold import fit_latents, latents, manifold_dataset, manifold_error


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
    t = time.perf_counter()
    ds = manifold_dataset(_cfg(size=10**7, image_size=16))
    assert time.perf_counter() - t < 0.1
    assert len(ds) == 10**7 and ds.shape == (3, 16, 16)
    assert ds.get([10**7 - 1]).shape == (1, 3, 16, 16)


def test_load_dataset_routes_to_manifold():
    from raystudy.config import DataSection
    from raystudy.data import load_dataset

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
