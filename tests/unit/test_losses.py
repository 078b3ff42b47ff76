"""The loss probe (raystudy.compute.losses) on denoisers whose losses are known: the exact
memorizer against its ideal-denoiser loss written in numpy, its held-out gap where its images are
apart, the Gaussian denoiser that generalizes (no gap) or overfits its own covariance (a gap), and
the fixed noise that makes two evaluations differ only by the weights."""

import numpy as np
import pytest
import torch

from raystudy.compute.losses import LossProbe
from raystudy.models.gaussian import GaussianEpsilon
from raystudy.models.memorizer import EmpiricalEpsilon

HELD = np.arange(1700, 1797)


@pytest.fixture(scope="module")
def ac():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000).alphas_cumprod


def _ideal_losses(kset, x_t, noise, ab):
    """Per-item loss of the ideal denoiser of ``kset`` (K, D) on the probe's inputs (L, n, D),
    float64 numpy: E[x0 | x_t] by a softmax over the K images, then eps_hat."""
    out = np.empty(x_t.shape[:2])
    for lv, a in enumerate(ab):
        x = x_t[lv]
        logits = -((x[:, None, :] - np.sqrt(a) * kset[None]) ** 2).sum(-1) / (2 * (1 - a))
        w = np.exp(logits - logits.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        eps_hat = (x - np.sqrt(a) * (w @ kset)) / np.sqrt(1 - a)
        out[lv] = ((eps_hat - noise[lv]) ** 2).mean(1)
    return out


def _flat(t):
    return t.double().numpy().reshape(*t.shape[:2], -1)


def test_memorizer_losses_equal_the_ideal_denoiser_and_its_gap(digits, ac):
    kset, held = digits.get(np.arange(8)), digits.get(HELD)
    probe = LossProbe(kset, held, ac, n_images=32, n_levels=6, seed=0)
    tr, ho = probe(EmpiricalEpsilon(torch.from_numpy(kset), ac))
    assert tr.shape == (6, 32) and ho.shape == (6, 32) and tr.dtype == np.float64
    ab = ac.double().numpy()[probe.timesteps]
    k64 = kset.reshape(8, -1).astype(np.float64)
    (xt_tr, n_tr), (xt_ho, n_ho) = probe.batches
    np.testing.assert_allclose(tr, _ideal_losses(k64, _flat(xt_tr), _flat(n_tr), ab), rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(ho, _ideal_losses(k64, _flat(xt_ho), _flat(n_ho), ab), rtol=1e-5, atol=1e-10)
    # The training items are the K-set's, each of the 8 four times (with noise of its own).
    assert sorted(probe.train_index) == sorted(list(range(8)) * 4)
    x0 = k64[probe.train_index]
    np.testing.assert_allclose(_flat(xt_tr), np.sqrt(ab)[:, None, None] * x0 + np.sqrt(1 - ab)[:, None, None]
                               * _flat(n_tr), atol=1e-6)
    # Where the K-set's images stay apart, the memorizer recalls its own and misses the held-out
    # ones. Two images at L2 distance d, seen through noise of std sigma = sqrt(1 - ab) / sqrt(ab)
    # (in image units), have posterior log odds d^2 / (2 sigma^2) +- d / sigma: apart while sigma
    # is below half the smallest distance between two of the K images (log odds 2 +- 2 there).
    d = np.sqrt(((k64[:, None] - k64[None]) ** 2).sum(-1))
    apart = np.sqrt((1 - ab) / ab) < d[~np.eye(8, dtype=bool)].min() / 2
    assert apart.sum() >= 2 and not apart.all()
    assert np.all(ho.mean(1)[apart] > tr.mean(1)[apart])
    assert np.all(ho.mean(1)[apart] > 10 * tr.mean(1)[apart])  # by far, not by noise


def _gap_in_se(tr, ho):
    gap = ho.mean(1) - tr.mean(1)
    return gap / np.sqrt(ho.var(1, ddof=1) / ho.shape[1] + tr.var(1, ddof=1) / tr.shape[1])


def test_gaussian_denoiser_has_no_gap_when_its_covariance_is_the_data_s(digits, ac):
    """Fitted to 1,500 digits the Gaussian is the data's, not the K-set's: training and held-out
    losses agree within 3 standard errors at every level. Fitted to 20 its covariance has rank 19
    of 64 and keeps only the directions of its own images, which the held-out images leave."""
    perm = np.random.default_rng(0).permutation(digits.n)
    for k in (1500, 20):
        kset, held = digits.get(perm[:k]), digits.get(perm[k:])
        probe = LossProbe(kset, held, ac, n_images=32, n_levels=6, seed=1)
        z = _gap_in_se(*probe(GaussianEpsilon(torch.from_numpy(kset), ac)))
        if k == 1500:
            assert np.all(np.abs(z) < 3), z
        else:
            assert z.max() > 6, z


def test_fixed_noise(digits, ac):
    from raystudy.config import from_dict
    from raystudy.models.unet import build

    kset, held = digits.get(np.arange(8)), digits.get(HELD)
    torch.manual_seed(0)
    net = build(from_dict({"model": {"block_out_channels": [8, 16]}}).model, (1, 8, 8)).eval()
    probe = LossProbe(kset, held, ac, n_images=8, n_levels=2, seed=0)
    a = probe(net)
    b = probe(net)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] += 0.1
    c = probe(net)
    assert all(np.mean(x != y) > 0.9 for x, y in zip(a, c))
    # Same seed, same batches (items, noise) and losses; another seed, others.
    same, other = (LossProbe(kset, held, ac, n_images=8, n_levels=2, seed=s) for s in (0, 1))
    for (x, n), (y, m) in zip(probe.batches, same.batches):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
        torch.testing.assert_close(n, m, rtol=0, atol=0)
    for x, y in zip(c, same(net)):
        np.testing.assert_array_equal(x, y)
    for (x, n), (y, m) in zip(probe.batches, other.batches):
        assert not torch.equal(n, m) and not torch.equal(x, y)
    assert not np.array_equal(probe.held_index, other.held_index)
