"""The exact memorizer reproduces its training set: the K -> small end of the transition."""

import numpy as np
import pytest
import torch

from raystudy.empirical import EmpiricalEpsilon, posterior_mean, ve_log_density, ve_score


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
