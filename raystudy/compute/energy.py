"""Relative energy along a quarter circle (the paper's `run_energy.py`, after arXiv 2305.19693).

For an item x and a reference r, the path x(a) = cos(a) x + sin(a) r, a in [0, pi/2],
runs from x (a = 0) to r (a = pi/2) with velocity x'(a) = -sin(a) x + cos(a) r.
With the score s(y) = grad log p_t(y) at a fixed step t:

* ``energy`` = E(r) - E(x), E = -log p_t, computed as the line integral
  int_0^{pi/2} < -s(x(a)), x'(a) > da (gradient theorem). Positive: r is less likely than x.
* ``drift_potential``: the integral the paper's code computes, of the VP reverse-SDE drift
  b(y) = -beta_t s(y) - 1/2 beta_t y (forward-time drift f - g^2 s with f = -1/2 beta_t y, g^2 = beta_t):
  int < b(x(a)), x'(a) > da = V(r) - V(x) with V(y) = beta_t (-log p_t(y) - ||y||^2 / 4),
  since grad V = -beta_t s - beta_t y / 2 = b. (V is the potential in the physics sense for the
  reverse-time process: dy/dtau = -grad V with tau = T - t.) So, exactly,
  drift_potential = beta_t * (energy - (||r||^2 - ||x||^2) / 4).
  For a plain score function (``ScoreFunction``) the drift is -beta s - c beta y with the
  adapter's (beta, c): c = 1/2 for VP, c = 0 for VE (then V = beta (-log p)).

Quadrature: Gauss-Legendre on [0, pi/2] with ``points`` nodes and with 2 ``points`` nodes
(``numpy.polynomial.legendre.leggauss``); the reported values are the 2n-node integrals and
``quad_error`` = |I_n - I_2n| of the energy, a conservative error estimate of the 2n-node value
when the rule has converged (and an honest "this path is too sharp" flag when it has not).
The paper's code uses 20 equally spaced points a_i = i pi/38 (i = 0..19, both ends included)
and sums the integrand at all of them times the spacing pi/38 (``paper_nodes``): a trapezoid
plus half an end value at each end, +5.3% on a constant integrand.

``rule="paper"`` is the paper's whole rule, so its figures' numbers can be reproduced: its
noise scale (below), its 20 points and sum, and its drift; its value is ``drift_potential``
(the reference code's ``batch_potential``), ``energy`` is then the same sum of < -s, x' >, and
``quad_error`` is NaN (the rule has no error estimate). ``rule="ours"`` (the default) is the
Gauss-Legendre pair above with the scale sqrt(1 - abar_t).

Score from an epsilon model: s = -eps(y, t) / sqrt(1 - abar_t). With ``reference_scale=True``
the scale is sqrt(1 - cumprod(betas)[t]) instead, the reference code's value (a cumulative product
of the betas, not of 1 - betas, so it is ~1 at every t); this reproduces the paper's numbers
for comparison with its figures, and then ``energy`` is not -log p_t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from ..models.closed_form import alpha_bar


@dataclass
class ScoreFunction:
    """A plain score function ``fn(y (B, ...), t (B,)) -> grad log p_t(y)``, e.g. the 2-D circle's VE score MLP.

    ``t`` is passed through as given (a float tensor for continuous time). ``drift_beta`` (g(t)^2)
    and ``drift_x`` (c in f(y) = -c g^2 y; VP 0.5, VE 0) define ``drift_potential``; with the
    default ``drift_beta = nan`` it is NaN.
    """
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    drift_beta: float = float("nan")
    drift_x: float = 0.0


def gauss_legendre(n: int, lo: float = 0.0, hi: float = math.pi / 2) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [lo, hi]."""
    u, w = np.polynomial.legendre.leggauss(int(n))
    half = 0.5 * (hi - lo)
    return lo + half * (u + 1.0), half * w


def paper_nodes(points: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The reference code's nodes linspace(0, pi/2, points) and its weights, all the spacing."""
    a = np.linspace(0.0, math.pi / 2, int(points))
    return a, np.full(len(a), a[1] - a[0])


RULES = ("ours", "paper")


def _score_setup(model, t, alphas_cumprod, betas, reference_scale: bool):
    """(score(y) -> s, beta, c) for an eps model or a ScoreFunction at step t."""
    if isinstance(model, ScoreFunction):
        def score(y):
            tt = torch.full((y.shape[0],), t, dtype=y.dtype if isinstance(t, float) else torch.long,
                            device=y.device)
            return model.fn(y, tt)
        return score, float(model.drift_beta), float(model.drift_x)
    if alphas_cumprod is None or betas is None:
        raise ValueError("an epsilon model needs alphas_cumprod and betas")
    t = int(t)
    # Looked up first for its range check, which then holds for betas (the same schedule) too.
    ab = alpha_bar(torch.as_tensor(alphas_cumprod, dtype=torch.float64), t, 1)
    betas64 = torch.as_tensor(betas, dtype=torch.float64)
    if reference_scale:
        sigma = float(torch.sqrt(1.0 - torch.cumprod(betas64, 0))[t])
    else:
        sigma = float(torch.sqrt(1.0 - ab))

    def score(y):
        ts = torch.full((y.shape[0],), t, dtype=torch.long, device=y.device)
        return -model(y, ts).sample / sigma
    return score, float(betas64[t]), 0.5


@torch.no_grad()
def relative_energy(model, x, r, t, alphas_cumprod=None, betas=None, *, points: int = 32,
                    reference_scale: bool = False, rule: str = "ours", batch_size: int = 1024, device=None,
                    dtype: torch.dtype = torch.float32) -> dict:
    """Relative energy from x[i] to r[i] (both (n, ...)) along the quarter circle, at step t.

    ``model``: an epsilon model called as ``model(y, t_tensor).sample`` (UNet2DModel,
    raystudy.models.memorizer.EmpiricalEpsilon; t a 0-based scheduler index, with ``alphas_cumprod`` and
    ``betas`` the training scheduler's), or a ``ScoreFunction``. ``dtype``: what the model is
    fed (float32 for a UNet; the exact memorizer also runs in float64). ``batch_size``: rows per
    model call (nodes x pairs are flattened). ``rule="paper"``: the reference code's scale, 20
    points and sum (``points`` and ``reference_scale`` are then ignored; see the module docstring).

    Returns float64 arrays (n,): ``energy`` (E(r) - E(x), E = -log p_t), ``drift_potential``
    (V(r) - V(x), see the module docstring), ``quad_error`` (|I_n - I_2n| of the energy),
    and ``energy_n`` (the n-node value).
    """
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    r = torch.as_tensor(np.asarray(r) if not isinstance(r, torch.Tensor) else r)
    if x.shape != r.shape:
        raise ValueError(f"x {tuple(x.shape)} and r {tuple(r.shape)} must have the same shape")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    x, r = x.to(dev, torch.float64), r.to(dev, torch.float64)
    n = x.shape[0]
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    score, beta, c = _score_setup(model, t, alphas_cumprod, betas, reference_scale or rule == "paper")

    def integrals(a, w):
        e = torch.zeros(n, dtype=torch.float64, device=dev)
        q = torch.zeros(n, dtype=torch.float64, device=dev)
        # Rows are (node, pair); process whole nodes per call.
        nodes_per_call = max(1, batch_size // max(n, 1))
        for s in range(0, len(a), nodes_per_call):
            aa = torch.as_tensor(a[s:s + nodes_per_call], dtype=torch.float64, device=dev)
            ww = torch.as_tensor(w[s:s + nodes_per_call], dtype=torch.float64, device=dev)
            m = len(aa)
            shape = (m,) + (1,) * x.dim()
            ca, sa = torch.cos(aa).reshape(shape), torch.sin(aa).reshape(shape)
            y = (ca * x + sa * r).reshape(m * n, *x.shape[1:])
            v = (-sa * x + ca * r).reshape(m * n, -1)
            parts = []
            for b in range(0, m * n, max(batch_size, n)):
                parts.append(score(y[b:b + max(batch_size, n)].to(dtype)).to(torch.float64))
            sc = torch.cat(parts).reshape(m * n, -1)
            g_e = -(sc * v).sum(1).reshape(m, n)                              # < -s, x' >
            g_q = (y.reshape(m * n, -1) * v).sum(1).reshape(m, n)           # < y, x' >
            e += (ww[:, None] * g_e).sum(0)
            q += (ww[:, None] * g_q).sum(0)
        # drift: < -beta s - c beta y, x' > = beta < -s, x' > - c beta < y, x' >
        return e, beta * e - c * beta * q

    if rule == "paper":
        e, d = integrals(*paper_nodes())
        nan = torch.full_like(e, float("nan"))
        return {"energy": e.cpu().numpy(), "drift_potential": d.cpu().numpy(), "quad_error": nan.cpu().numpy(),
                "energy_n": e.cpu().numpy()}
    e_n, _ = integrals(*gauss_legendre(points))
    e_2n, d_2n = integrals(*gauss_legendre(2 * points))
    return {"energy": e_2n.cpu().numpy(), "drift_potential": d_2n.cpu().numpy(),
            "quad_error": (e_n - e_2n).abs().cpu().numpy(), "energy_n": e_n.cpu().numpy()}


def energy_group(model, alphas_cumprod, betas, cfg_energy, xs: Mapping, refs: Mapping, *,
                 K: int | None = None, seed: int | None = None, device=None,
                 batch_size: int = 1024, t: float | None = None) -> dict:
    """Relative energies of every item in ``xs`` against every reference in ``refs``: table ``energy``.

    ``xs``: ``kind``, ``item_id``, ``label`` and ``pick`` (None where not applicable), ``images`` (n, C, H, W);
    ``refs``: ``kind``, ``item_id``, ``images`` (m, C, H, W). ``cfg_energy``: an ``EnergySection``
    (t, points, rule); ``t`` overrides its t for the score (a ``ScoreFunction``'s continuous time; the
    table's t column keeps the config's). Rows are item-major (x0 r0, x0 r1, ..., x1 r0, ...). Columns
    K and seed are included only when both are passed.
    """
    xi = np.asarray(xs["images"], dtype=np.float32)
    ri = np.asarray(refs["images"], dtype=np.float32)
    n, m = len(xi), len(ri)
    X = np.repeat(xi, m, axis=0)
    R = np.tile(ri, (n,) + (1,) * (ri.ndim - 1))
    res = relative_energy(model, X, R, cfg_energy.t if t is None else t, alphas_cumprod, betas, points=cfg_energy.points,
                          rule=cfg_energy.rule, device=device, batch_size=batch_size)
    labels, picks = _strings(xs.get("label"), n), _strings(xs.get("pick"), n)
    cols = {
        "kind": np.repeat(np.asarray(xs["kind"], dtype=object), m),
        "item_id": np.repeat(np.asarray(xs["item_id"], dtype=np.int64), m),
        "label": [lab for lab in labels for _ in range(m)],
        "pick": [p for p in picks for _ in range(m)],
        "reference_kind": np.tile(np.asarray(refs["kind"], dtype=object), n),
        "reference_id": np.tile(np.asarray(refs["item_id"], dtype=np.int64), n),
        "t": np.full(n * m, int(cfg_energy.t), dtype=np.int64),
        "energy": res["energy"], "drift_potential": res["drift_potential"], "quad_error": res["quad_error"],
    }
    if K is not None and seed is not None:
        cols["K"] = np.full(n * m, K, dtype=np.int32)
        cols["seed"] = np.full(n * m, seed, dtype=np.int32)
    return cols


def _strings(values, n: int) -> list:
    """A column of optional strings (None, or NaN from pandas, where not applicable)."""
    if values is None:
        return [None] * n
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
