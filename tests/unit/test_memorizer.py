"""The closed-form denoisers: the exact memorizer reproduces its training set (the K -> small end
of the transition); the Gaussian denoiser is the Wiener filter of its K-set's mean and covariance."""

import numpy as np
import pytest
import torch

from raystudy.models.gaussian import GaussianEpsilon
from raystudy.models.memorizer import EmpiricalEpsilon, posterior_mean, ve_log_density, ve_score


def _digits():
    from sklearn.datasets import load_digits

    return torch.from_numpy((load_digits().images.astype(np.float32) / 8.0 - 1.0)[:, None])


def _ddim_sample(model, n, seed, steps=50):
    from diffusers import DDIMScheduler, DDPMScheduler

    sched = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=1000).config)
    sched.set_timesteps(steps)
    c, s = model.config.in_channels, model.config.sample_size
    x = torch.randn(n, c, s, s, generator=torch.Generator().manual_seed(seed), dtype=model.dtype)
    for t in sched.timesteps:
        eps = model(x, t).sample
        x = sched.step(eps, t, x).prev_sample
    return x


@pytest.mark.parametrize("K", [2, 16, 128, 1797])
def test_memorizer_samples_are_training_digits(K):
    from diffusers import DDPMScheduler

    train = _digits()[torch.from_numpy(np.random.default_rng(0).permutation(1797)[:K])]
    model = EmpiricalEpsilon(train, DDPMScheduler(num_train_timesteps=1000).alphas_cumprod, chunk=500)
    x = _ddim_sample(model, 48, seed=K)
    rms = (torch.cdist(x.reshape(len(x), -1).double(), train.reshape(K, -1).double()).min(1).values
           / np.sqrt(64))
    assert (rms <= 0.1).float().mean() >= 0.99, rms.max()


def test_timestep_forms_and_batch_independence():
    from diffusers import DDPMScheduler

    ac = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    train = _digits()[:50]
    model = EmpiricalEpsilon(train, ac, chunk=7)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = model(x, 500).sample
    for t in (torch.tensor(500), torch.tensor([500]), torch.full((4,), 500)):
        assert torch.allclose(model(x, t).sample, a, atol=1e-6)
    assert torch.allclose(model(x[:1], 500).sample, a[:1], atol=1e-6)
    # Chunking changes nothing.
    big = EmpiricalEpsilon(train, ac, chunk=10_000)
    assert torch.allclose(big(x, 500).sample, a, atol=1e-6)
    assert model(x, 500, return_dict=False)[0].shape == x.shape
    assert model.config.sample_size == 8 and model.config.in_channels == 1


def test_ve_score_is_gradient_of_log_density():
    train = torch.randn(9, 2, dtype=torch.float64)
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    logp = ve_log_density(x, 0.3, train).sum()
    (g,) = torch.autograd.grad(logp, x)
    assert torch.allclose(ve_score(x.detach(), 0.3, train, chunk=4), g, atol=1e-8)
    # Far below the training spacing the posterior mean is the nearest training point.
    nearest = train[torch.cdist(x.detach(), train).argmin(1)]
    assert torch.allclose(posterior_mean(x.detach(), train, 1.0, 1e-8), nearest)


def _linear_alpha_bar():
    """DDPM's default schedule, built here without diffusers: betas linear in [1e-4, 0.02]."""
    return np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))


def _eps_closed_form(x, train, ab):
    """eps of the Gaussian-mixture posterior, float64 numpy with logsumexp, independent of raystudy."""
    from scipy.special import logsumexp

    x, train = x.reshape(len(x), -1), train.reshape(len(train), -1)
    a, v = np.sqrt(ab), 1.0 - ab
    logits = -((x[:, None, :] - a * train[None]) ** 2).sum(-1) / (2 * v)
    w = np.exp(logits - logsumexp(logits, 1, keepdims=True))
    return (x - a * (w @ train)) / np.sqrt(v)


@pytest.mark.parametrize("t", [0, 1, 50, 300, 999])
def test_epsilon_matches_the_mixture_posterior_in_closed_form(t):
    from diffusers import DDPMScheduler

    ab_np = _linear_alpha_bar()
    ac = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    np.testing.assert_allclose(ac.double().numpy(), ab_np, rtol=1e-6)  # the schedule we mean
    train = _digits()[:12]
    tr = train.double().numpy().reshape(12, -1)
    ab = float(ac[t])  # diffusers keeps the schedule in float32: 1 - ab at t = 0 differs from ab_np's by 1e-4
    a, v = np.sqrt(ab), 1 - ab
    rng = np.random.default_rng(t)
    # Random noisings of training images, and points between two images placed so that the
    # posterior weights are neither one-hot nor uniform at this t (a logit gap of +-1), where
    # the posterior's variance and the timestep's alpha_bar both show.
    xs = [a * tr[i] + np.sqrt(v) * rng.standard_normal(tr.shape[1]) for i in range(4)]
    for i, j in ((0, 1), (2, 5), (3, 7)):
        d2 = ((tr[i] - tr[j]) ** 2).sum()
        for gap in (-1.0, 1.0):
            lam = 0.5 + gap * v / (a ** 2 * d2)  # logit_i - logit_j = a^2 d2 (2 lam - 1) / (2 v) = gap
            xs.append(a * (lam * tr[i] + (1 - lam) * tr[j]))
    x = np.stack(xs)
    expect = _eps_closed_form(x, tr, ab)
    model = EmpiricalEpsilon(train, ac, chunk=5)
    got = model(torch.from_numpy(x).reshape(-1, 1, 8, 8), t).sample.reshape(len(x), -1).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-7, atol=1e-7)
    # float32 inputs, as a sampler passes them: the float64 logits keep them to float32 rounding.
    got32 = model(torch.from_numpy(x).float().reshape(-1, 1, 8, 8), t).sample.reshape(len(x), -1).double().numpy()
    expect32 = _eps_closed_form(x.astype(np.float32).astype(np.float64), tr, ab)
    np.testing.assert_allclose(got32, expect32, rtol=1e-4, atol=1e-4 / np.sqrt(v))


@pytest.mark.parametrize("denoiser", [EmpiricalEpsilon, GaussianEpsilon])
def test_out_of_range_timesteps_raise(denoiser):
    from diffusers import DDPMScheduler

    model = denoiser(_digits()[:3], DDPMScheduler(num_train_timesteps=1000).alphas_cumprod)
    x = torch.zeros(2, 1, 8, 8)
    # A negative index would wrap to the end of the schedule and a clamp would shift the noise
    # level: both denoisers refuse, in the same one line.
    for bad, got in ((1000, "1000..1000"), (-1, "-1..-1"), (torch.tensor([5, 1000]), "5..1000")):
        with pytest.raises(ValueError) as err:
            model(x, bad)
        assert str(err.value) == f"timesteps must lie in [0, 999], got {got}"
    assert model(x, torch.tensor([0, 999])).sample.shape == x.shape


def _gaussian_eps(x, train, ab):
    """eps of the Gaussian posterior, float64 numpy with a linear solve, independent of raystudy:
    E[x_0 | x] = mu + a S (a^2 S + s^2 I)^{-1} (x - a mu) with mu, S the set's mean and covariance."""
    x, train = x.reshape(len(x), -1), train.reshape(len(train), -1)
    a, v = np.sqrt(ab), 1.0 - ab
    mu, S = train.mean(0), np.cov(train.T, bias=True)
    x0 = mu + a * np.linalg.solve(ab * S + v * np.eye(len(S)), (x - a * mu).T).T @ S
    return (x - a * x0) / np.sqrt(v)


@pytest.mark.parametrize("t", [0, 50, 500, 999])
def test_gaussian_epsilon_is_the_wiener_filter_in_closed_form(t):
    from diffusers import DDPMScheduler

    ac = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    train = _digits()[:300]
    tr = train.double().numpy().reshape(300, -1)
    ab = float(ac[t])
    rng = np.random.default_rng(t)
    x = np.sqrt(ab) * tr[:6] + np.sqrt(1 - ab) * rng.standard_normal((6, 64))
    model = GaussianEpsilon(train, ac)
    got = model(torch.from_numpy(x).reshape(-1, 1, 8, 8), torch.full((6,), t)).sample.reshape(6, -1).numpy()
    # S of 300 digits is rank deficient (constant border pixels): S @ solve(...) keeps it exact.
    np.testing.assert_allclose(got, _gaussian_eps(x, tr, ab), rtol=1e-7, atol=1e-7)
    assert torch.equal(model(torch.from_numpy(x).reshape(-1, 1, 8, 8), t).sample.reshape(6, -1),
                       torch.from_numpy(got))
    assert model.dtype == torch.float32 and model.config.sample_size == 8 and model.config.num_images == 300
