"""The circle's math against closed forms that a wrong sign, factor or temperature fails:
the exact divergence, the probability-flow energy with the true t = 1 marginal, the
DenseAM energy differences, and the sampler's start at that marginal."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from raystudy.datasets.toy import circle, dense_am


def _ring(k, offset=0.3):
    th = np.linspace(0, 2 * np.pi, k, endpoint=False) + offset
    return np.stack([np.cos(th), np.sin(th)], 1)


def _mixture_nll(x, train, sigma):
    """-log (1/K) sum_k N(x; x_k, sigma^2 I) in float64 numpy, independent of raystudy."""
    d2 = ((np.asarray(x, np.float64)[:, None, :] - np.asarray(train, np.float64)[None]) ** 2).sum(-1)
    return -(logsumexp(-d2 / (2 * sigma ** 2), 1) - np.log(len(train)) - np.log(2 * np.pi * sigma ** 2))


def test_divergence_of_a_linear_field_is_its_trace():
    A = torch.tensor([[-3.0, 2.0], [0.5, -4.0]])  # trace -7, off-diagonals that must not enter
    score = lambda x, t: x @ A.T * (1.0 + 0.0 * t[:, None])
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)) * 3
    s, div = circle._score_and_div(score, x, torch.full((16,), 0.3))
    torch.testing.assert_close(s, x @ A.T)
    torch.testing.assert_close(div, torch.full((16,), -7.0), atol=1e-5, rtol=0)


def test_divergence_of_the_exact_memorizer_matches_its_closed_form():
    # s = (E_w[x_k] - x) / sigma^2, so div s = (tr Cov_w[x_k] - 2 sigma^2) / sigma^4:
    # the posterior covariance enters, large between two training points.
    train = _ring(5)
    sig = 0.3
    rng = np.random.default_rng(1)
    x = (train[[0, 1, 2, 3]] + train[[1, 2, 3, 4]]) / 2 + rng.normal(0, 0.05, (4, 2))
    x = np.concatenate([x, rng.normal(0, 1, (4, 2))])
    d2 = ((x[:, None] - train[None]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * sig ** 2) - logsumexp(-d2 / (2 * sig ** 2), 1, keepdims=True))
    mean = w @ train
    tr_cov = (w * (train ** 2).sum(1)[None]).sum(1) - (mean ** 2).sum(1)
    div_exact = (tr_cov - 2 * sig ** 2) / sig ** 4
    score = circle.empirical_score(train.astype(np.float32))
    t = torch.full((len(x),), sig ** 2)  # sigma(t) = sqrt(t) at sigma_max = 1
    s, div = circle._score_and_div(score, torch.tensor(x, dtype=torch.float32), t)
    np.testing.assert_allclose(s.numpy(), (mean - x) / sig ** 2, rtol=1e-4, atol=1e-4)
    assert np.abs(div_exact).max() > 10 and np.ptp(div_exact) > 10  # a test that 0 or -div fails
    np.testing.assert_allclose(div.numpy(), div_exact, rtol=1e-4, atol=1e-3)


def test_energy_needs_the_true_prior():
    score = circle.empirical_score(np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match="train_points"):
        circle.neg_log_density(score, np.zeros((1, 2)), 1e-2)


def test_ve_log_prior_is_the_blurred_training_set():
    train = _ring(7) * np.array([1.0, 0.5])
    x = np.random.default_rng(2).normal(0, 2, (50, 2))
    for smax in (1.0, 3.0):
        lp = circle.ve_log_prior(train, smax, chunk=20)(x)  # 2 rows per chunk
        np.testing.assert_allclose(lp, -_mixture_nll(x, train, smax), rtol=1e-12, atol=1e-12)


def test_energy_of_a_single_point_is_exact():
    score = circle.empirical_score(np.zeros((1, 2), np.float32))
    x = np.array([[0.0, 0.0], [0.05, -0.1], [0.2, 0.1], [0.4, -0.3]])
    t0 = 1e-2
    exact = (x ** 2).sum(1) / (2 * t0) + np.log(2 * np.pi * t0)
    np.testing.assert_allclose(circle.neg_log_density(score, x, t0, train_points=np.zeros((1, 2))), exact,
                               rtol=0, atol=1e-4)


@pytest.mark.parametrize("sigma_max", [1.0, 2.0])
def test_energy_of_the_memorizer_is_its_mixture_log_density(sigma_max):
    # p_t of nine points is known at every t; with the true p_1 the ODE's only error is the solver's.
    train = _ring(9)
    score = circle.empirical_score(train.astype(np.float32), sigma_max)
    x = np.array([[1.0, 0.3], [0.0, 0.0], [0.7, -0.8], [-1.2, 0.1], [0.95, 0.29], [1.5, 0.2]])
    t0 = 1e-2
    ode = circle.neg_log_density(score, x, t0, sigma_max, train_points=train)
    exact = _mixture_nll(x, train, float(circle.sigma(t0, sigma_max)))
    np.testing.assert_allclose(ode, exact, rtol=0, atol=1e-3)


def test_energy_differences_of_a_dense_ring_match_dense_am():
    # 128 evenly spaced points at sigma(t0) = 0.1 are the continuous circle to ~e^-80
    # (the mixture's angular Fourier modes alias at frequency 128), so the ODE energy
    # differences E(R) - E(1) must equal DenseAM's closed form at beta = 1 / (2 sigma^2):
    # they span 8 nats here, and beta off by 4x misses by tens.
    train = _ring(128, offset=0.0)
    score = circle.empirical_score(train.astype(np.float32))
    t0 = 1e-2
    radii = np.array([0.6, 0.8, 0.9, 1.0, 1.05, 1.2, 1.4])
    pts = np.stack([radii * np.cos(0.7), radii * np.sin(0.7)], 1)
    ode = circle.neg_log_density(score, pts, t0, train_points=train)
    sig = float(circle.sigma(t0))
    closed = dense_am.neg_log_density(pts, sig)
    i1 = list(radii).index(1.0)
    assert np.ptp(closed) > 5
    np.testing.assert_allclose(ode - ode[i1], closed - closed[i1], rtol=0, atol=1e-3)
    # And the values themselves, normaliser included.
    np.testing.assert_allclose(ode, closed, rtol=0, atol=1e-3)


def test_marginal_start_is_per_sample_and_draws_the_blurred_set():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    seeds = np.arange(3000, dtype=np.int64) * 7919 + 5
    z = np.random.default_rng(0).standard_normal((3000, 2))
    x = circle.marginal_start(train, seeds, z, 2.0)
    # Each row is one training point plus sigma_max z, and depends on its own seed alone.
    k = np.argmin((((x - 2.0 * z)[:, None] - train[None]) ** 2).sum(-1), 1)
    np.testing.assert_allclose(x - 2.0 * z, train[k], atol=1e-12)
    np.testing.assert_array_equal(circle.marginal_start(train, seeds[17:19], z[17:19], 2.0), x[17:19])
    counts = np.bincount(k, minlength=3) / len(k)
    np.testing.assert_allclose(counts, 1 / 3, atol=0.03)
    with pytest.raises(ValueError):
        circle.marginal_start(train, seeds[:2], z[:3])


def test_sampler_from_the_marginal_lands_on_the_training_points_batch_free():
    train = _ring(3)
    seeds = np.arange(40, dtype=np.int64) + 100
    noise = circle.sample_noise(seeds, 200)
    start = circle.marginal_start(train, seeds, noise[:, 0])
    score = circle.empirical_score(train.astype(np.float32))
    x = circle.em_sample(score, noise, 1e-5, start=start)
    d = np.sqrt(((x[:, None] - train[None]) ** 2).sum(-1)).min(1)
    assert (d < 0.02).mean() >= 0.95
    np.testing.assert_allclose(circle.em_sample(score, noise[5:9], 1e-5, batch=3, start=start[5:9]), x[5:9],
                               atol=1e-5)
    with pytest.raises(TypeError):
        circle.em_sample(score, noise)  # the start is required


def test_sampler_starts_at_start_and_reproduces_the_training_weights():
    # A zero score leaves x_T plus the EM noise; with one step there is no noise at all.
    seeds = np.arange(5, dtype=np.int64)
    start = np.random.default_rng(3).normal(0, 2, (5, 2))
    zero = lambda x, t: torch.zeros_like(x)
    np.testing.assert_allclose(circle.em_sample(zero, circle.sample_noise(seeds, 1), start=start), start, atol=1e-6)
    # The exact memorizer run from the exact t = 1 marginal returns the data distribution: each of
    # two training points half the time. From N(0, 1) the point nearer the origin wins ~4/5.
    train = np.array([[0.3, 0.0], [2.0, 0.5]])
    seeds = np.arange(600, dtype=np.int64) * 31 + 7
    noise = circle.sample_noise(seeds, 100)
    score = circle.empirical_score(train.astype(np.float32))
    x = circle.em_sample(score, noise, 1e-4, start=circle.marginal_start(train, seeds, noise[:, 0]))
    k = np.sqrt(((x[:, None] - train[None]) ** 2).sum(-1)).argmin(1)
    assert abs(k.mean() - 0.5) < 0.06, k.mean()
