"""Relative energy: closed-form checks against the exact memorizer's Gaussian mixture.

The exact memorizer (raystudy.models.memorizer.EmpiricalEpsilon) of K points x_k has, at step t,
p_t(y) = (1/K) sum_k N(y; sqrt(abar_t) x_k, (1 - abar_t) I), so E(r) - E(x) = -log p_t(r) + log p_t(x)
is known in closed form (logsumexp below, written independently of the package), and so is
the reference code's drift potential beta_t (E(r) - E(x) - (||r||^2 - ||x||^2) / 4).
"""

import math

import numpy as np
import pytest
import torch

from raystudy.compute.energy import ScoreFunction, energy_group, gauss_legendre, relative_energy
from raystudy.models.memorizer import EmpiricalEpsilon
from tests.conftest import digits_tensor


def mixture_log_density(y, train, abar):
    """log p_t(y) of the noised training set, by logsumexp (the (2 pi s^2)^(-D/2) / K constant kept)."""
    y = torch.as_tensor(y).reshape(len(y), -1).double()
    tr = torch.as_tensor(train).reshape(len(train), -1).double()
    a = float(abar)
    d2 = ((y[:, None, :] - math.sqrt(a) * tr[None, :, :]) ** 2).sum(-1)
    D = y.shape[1]
    return (torch.logsumexp(-d2 / (2 * (1 - a)), 1) - math.log(len(tr))
            - 0.5 * D * math.log(2 * math.pi * (1 - a))).numpy()


def _exact(train, x, r, t, sched):
    ac = sched.alphas_cumprod.double()[t]
    e = -mixture_log_density(r, train, ac) + mixture_log_density(x, train, ac)
    sq = lambda z: (torch.as_tensor(z).double().flatten(1) ** 2).sum(1).numpy()  # noqa: E731
    return e, float(sched.betas.double()[t]) * (e - (sq(r) - sq(x)) / 4)


def _pairs(train, other, g):
    """Paths train->random, random->train, random->random, train->train."""
    rnd = lambda n: torch.rand(n, *train.shape[1:], generator=g) * 2 - 1  # noqa: E731
    x = torch.cat([train[:2], rnd(2), rnd(2), train[[0]], other[:1]])
    r = torch.cat([rnd(2), train[[3, 4]], rnd(2), train[[1]], other[1:2]])
    return x, r


def _assert_exact_within_quad_error(res, train, x, r, t, sched):
    """Energy and drift potential equal the mixture's closed form within the reported quadrature error."""
    e, d = _exact(train, x, r, t, sched)
    tol = 1e-9 * (1 + np.abs(e))
    assert np.all(np.abs(res["energy"] - e) <= res["quad_error"] + tol), (res["energy"] - e, res["quad_error"])
    beta = float(sched.betas[t])
    assert np.all(np.abs(res["drift_potential"] - d) <= beta * (res["quad_error"] + tol) + 1e-12)


@pytest.mark.parametrize("t", [50, 100, 200, 300])
def test_energy_equals_mixture_log_density_random_points(sched, t):
    g = torch.Generator().manual_seed(t)
    train = torch.rand(5, 1, 4, 4, generator=g) * 2 - 1
    x, r = _pairs(train, torch.rand(2, 1, 4, 4, generator=g) * 2 - 1, g)
    model = EmpiricalEpsilon(train, sched.alphas_cumprod)
    res = relative_energy(model, x, r, t, sched.alphas_cumprod, sched.betas, points=32, dtype=torch.float64)
    _assert_exact_within_quad_error(res, train, x, r, t, sched)
    # The check is not vacuous: the reported error is small where the path is smooth enough
    # (energies here are O(1-100); the worst path runs between two training points, across a valley).
    assert np.max(res["quad_error"]) < {50: 5.0, 100: 0.5, 200: 1e-3, 300: 1e-9}[t], res["quad_error"]


@pytest.mark.parametrize("t", [150, 200, 300])
def test_energy_equals_mixture_log_density_digits(sched, t):
    dig = digits_tensor()
    train = dig[:5]
    model = EmpiricalEpsilon(train, sched.alphas_cumprod)
    x = torch.cat([train[:3], dig[10:13]])
    r = torch.cat([dig[20:23], train[[3, 4, 0]]])
    res = relative_energy(model, x, r, t, sched.alphas_cumprod, sched.betas, points=32, dtype=torch.float64)
    _assert_exact_within_quad_error(res, train, x, r, t, sched)
    assert np.max(res["quad_error"]) < {150: 0.2, 200: 0.2, 300: 1e-3}[t], res["quad_error"]


def test_float32_model_within_float_tolerance(sched):
    """A float32 model (what a UNet is) adds only rounding on top of the quadrature error."""
    g = torch.Generator().manual_seed(7)
    train = torch.rand(5, 1, 4, 4, generator=g) * 2 - 1
    x, r = _pairs(train, torch.rand(2, 1, 4, 4, generator=g) * 2 - 1, g)
    model = EmpiricalEpsilon(train, sched.alphas_cumprod)
    res = relative_energy(model, x, r, 200, sched.alphas_cumprod, sched.betas, points=32)
    e, _ = _exact(train, x, r, 200, sched)
    assert np.all(np.abs(res["energy"] - e) <= res["quad_error"] + 1e-6 * (1 + np.abs(e)))


def test_quad_error_grows_honestly_toward_t0(sched):
    """The sharper the mixture (small t), the larger the reported error, and it flags non-convergence."""
    g = torch.Generator().manual_seed(3)
    train = torch.rand(5, 1, 4, 4, generator=g) * 2 - 1
    x, r = _pairs(train, torch.rand(2, 1, 4, 4, generator=g) * 2 - 1, g)
    model = EmpiricalEpsilon(train, sched.alphas_cumprod)
    rel = []
    for t in (10, 25, 50, 100, 200, 300):
        res = relative_energy(model, x, r, t, sched.alphas_cumprod, sched.betas, points=32, dtype=torch.float64)
        e, _ = _exact(train, x, r, t, sched)
        rel.append(np.max(res["quad_error"] / (1 + np.abs(e))))
        true_rel = np.max(np.abs(res["energy"] - e) / (1 + np.abs(e)))
        # Whenever the estimate says "converged to 1e-4", the value is within it.
        if rel[-1] < 1e-4:
            assert true_rel <= rel[-1] + 1e-12
    assert all(a > b for a, b in zip(rel, rel[1:])), rel
    assert rel[0] > 1e-2 and rel[-1] < 1e-9, rel


def test_reference_scale_reproduces_reference_code(sched):
    """sqrt(1 - cumprod(betas)) is ~1 at every t; the energy scales by sqrt(1 - abar_t) / that."""
    ref = torch.sqrt(1 - torch.cumprod(sched.betas.double(), 0))
    assert ref.min() > 0.9999
    g = torch.Generator().manual_seed(1)
    train = torch.rand(3, 1, 2, 2, generator=g) * 2 - 1
    x, r = torch.rand(2, 1, 2, 2, generator=g) * 2 - 1, train[:2]
    model = EmpiricalEpsilon(train, sched.alphas_cumprod)
    ours = relative_energy(model, x, r, 0, sched.alphas_cumprod, sched.betas, points=8, dtype=torch.float64)
    theirs = relative_energy(model, x, r, 0, sched.alphas_cumprod, sched.betas, points=8, dtype=torch.float64,
                             reference_scale=True)
    factor = math.sqrt(1 - float(sched.alphas_cumprod.double()[0])) / float(ref[0])
    assert abs(factor - 0.01) < 1e-4  # at t = 0 the right scale is sqrt(beta_0) = 0.01
    assert np.allclose(theirs["energy"], ours["energy"] * factor, rtol=1e-10)


def test_score_function_adapter_ve(sched):
    """A plain VE score (the circle's) through the adapter: energy = -log p + log p, drift = g^2 energy."""
    from raystudy.datasets.toy.circle import empirical_score, sigma
    from raystudy.models.memorizer import ve_log_density

    g = torch.Generator().manual_seed(5)
    ang = torch.rand(6, generator=g) * 2 * math.pi
    train = torch.stack([ang.cos(), ang.sin()], 1)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    r = torch.randn(5, 2, generator=g, dtype=torch.float64)
    t = 0.2
    fn = ScoreFunction(empirical_score(train), drift_beta=1.0, drift_x=0.0)
    res = relative_energy(fn, x, r, t, points=32, dtype=torch.float64)
    s = float(sigma(t))
    e = (-ve_log_density(r, s, train.double()) + ve_log_density(x, s, train.double())).numpy()
    assert np.all(np.abs(res["energy"] - e) <= res["quad_error"] + 1e-6 * (1 + np.abs(e)))
    assert np.allclose(res["drift_potential"], res["energy"])
    assert np.isnan(relative_energy(ScoreFunction(empirical_score(train)), x, r, t, points=4)["drift_potential"]).all()


def test_gauss_legendre_interval():
    a, w = gauss_legendre(8)
    assert np.isclose(w.sum(), math.pi / 2) and a.min() > 0 and a.max() < math.pi / 2
    assert np.isclose((w * np.cos(a)).sum(), 1.0)


def test_energy_group_writes_the_energy_table(sched):
    from raystudy import tables
    from raystudy.config import EnergySection

    dig = digits_tensor()
    train = dig[:4]
    model = EmpiricalEpsilon(train, sched.alphas_cumprod)
    cfg = EnergySection(t=200, points=8)
    xs = {"kind": ["sample", "sample", "train"], "item_id": [3, 7, 1], "label": ["memorized", "spurious", None],
          "images": dig[30:33].numpy()}
    refs = {"kind": ["train", "held-out"], "item_id": [0, 900], "images": np.stack([train[0].numpy(), dig[900].numpy()])}
    cols = energy_group(model, sched.alphas_cumprod, sched.betas, cfg, xs, refs, K=4, seed=0)
    table = tables.to_table("energy", cols)
    assert table.num_rows == 6
    df = table.to_pandas()
    assert df.item_id.tolist() == [3, 3, 7, 7, 1, 1] and df.reference_id.tolist() == [0, 900] * 3
    assert df.label.isna().tolist() == [False] * 4 + [True] * 2
    one = relative_energy(model, dig[31:32], dig[900:901], 200, sched.alphas_cumprod, sched.betas, points=8)
    assert np.isclose(df.energy[3], one["energy"][0], rtol=1e-6)


def _paper_potential(model, target, reference, betas, t):
    """The reference code's relative potential (stats_utils.batch_potential), written out again:
    20 angles linspace(0, pi/2), each term <drift, velocity> times their spacing, summed."""
    alpha = torch.linspace(0, 0.5 * math.pi, 20, dtype=torch.float64)
    d_a = float(alpha[1] - alpha[0])
    betas = betas.double()
    std = (1 - torch.cumprod(betas, 0)) ** 0.5
    out = torch.zeros(len(target), dtype=torch.float64)
    for a in alpha:
        x = torch.cos(a) * target + torch.sin(a) * reference
        v = (-torch.sin(a) * target + torch.cos(a) * reference) * d_a
        score = -model(x, torch.full((len(x),), t, dtype=torch.long)).sample.double() / std[t]
        grad_u = -betas[t] * score - 0.5 * betas[t] * x
        out += (grad_u.flatten(1) * v.flatten(1)).sum(1)
    return out.numpy()


@pytest.mark.parametrize("t", [0, 300])
def test_paper_rule_equals_a_transcription_of_the_reference_code(sched, t):
    from tests.conftest import digits_tensor

    dig = digits_tensor().double()
    train = dig[:5]
    model = EmpiricalEpsilon(train, sched.alphas_cumprod)
    x, r = dig[[0, 1, 100, 200]], dig[[2, 300, 3, 400]]
    res = relative_energy(model, x, r, t, sched.alphas_cumprod, sched.betas, rule="paper", dtype=torch.float64)
    want = _paper_potential(model, x, r, sched.betas, t)
    assert np.allclose(res["drift_potential"], want, rtol=1e-10, atol=1e-12), (res["drift_potential"], want)
    assert np.isnan(res["quad_error"]).all()
    # The paper's sum is not the converged integral: on a constant integrand it is 20/19 of it.
    from raystudy.compute.energy import paper_nodes

    a, w = paper_nodes()
    assert w.sum() == pytest.approx(math.pi / 2 * 20 / 19, rel=1e-12)
    ours = relative_energy(model, x, r, t, sched.alphas_cumprod, sched.betas, points=32, reference_scale=True,
                           dtype=torch.float64)
    assert np.max(np.abs(ours["drift_potential"] / want - 1)) > 0.01
