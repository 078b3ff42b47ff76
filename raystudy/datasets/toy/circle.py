"""The 2-D circle: VE SDE, sampler, and energy by the probability-flow ODE.

Data (``data.name: circle``) are points on the unit circle, so the generalizing answer (the whole circle)
and the memorizing answer (the K training points) are both known. The process is
the variance-exploding SDE dx = g dW with sigma(t) = sigma_max sqrt(t), i.e.
g^2 = d sigma^2 / dt = sigma_max^2, as in Song et al.'s score-SDE tutorial.
Score functions here have the signature ``score(x (B, 2), t (B,)) -> (B, 2)``:
the trained MLP and the exact memorizer (raystudy.models.memorizer) are interchangeable.
At t = 1 the process is the K training points blurred by N(0, sigma_max^2), known
exactly: the sampler starts there (``marginal_start``) and the energy's ODE ends
there (``ve_log_prior``); N(0, sigma_max^2) is assumed nowhere.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

# The circle's score models and its noise scale sigma(t) live in raystudy.models.circle_mlp;
# attractors.py and the circle's callers reach sigma and the exact memorizer's score here too.
from ...models.circle_mlp import ScoreFn, empirical_score, sigma  # noqa: F401
from ...splits import CIRCLE_START_SALT


def time_grid(n_steps: int, t_min: float) -> np.ndarray:
    """Geometric times 1 -> t_min. Uniform steps in t would take dt >> t at the end,
    where the memorizing score is ~ (x_k - x) / t, and Euler would overshoot."""
    return np.geomspace(1.0, t_min, n_steps + 1)


def sample_noise(seeds: np.ndarray, n_steps: int) -> np.ndarray:
    """Per-sample noise (n, n_steps + 1, 2): row 0 is x_T / sigma_max, rows 1.. the EM increments."""
    return np.stack([np.random.default_rng(int(s)).standard_normal((n_steps + 1, 2)) for s in seeds])


def ve_log_prior(train_points, sigma_max: float = 1.0, chunk: int = 1 << 22) -> Callable[[np.ndarray], np.ndarray]:
    """log p_1 of the VE process started at the training set: x -> log (1/K) sum_k N(x; x_k, sigma_max^2 I).

    This is the true t = 1 marginal of the data a model was trained on (the K points
    blurred by N(0, sigma_max^2)), exact for a finite K (logsumexp in float64, rows in
    chunks of at most ``chunk`` distances). It is *not* N(0, sigma_max^2): at
    sigma_max = 1 the unit circle blurred by N(0, 1) is not N(0, 1), and ending the
    ODE at N(0, 1) moves -log p_{t0} by a position-dependent amount (-0.5 at R = 0.5,
    +3.8 at R = 1.5 for the 1000-point circle), which does not cancel in differences.
    ``neg_log_density`` ends its ODE here and
    ``marginal_start`` draws the sampler's x_T from the same density.
    """
    from ...models.memorizer import ve_log_density

    train = torch.as_tensor(np.asarray(train_points, np.float64).reshape(-1, 2))
    if len(train) == 0:
        raise ValueError("ve_log_prior needs at least one training point")
    rows = max(1, chunk // len(train))

    def log_p1(x: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(x, np.float64).reshape(-1, 2))
        out = [ve_log_density(x[i:i + rows], float(sigma_max), train) for i in range(0, len(x), rows)]
        return torch.cat(out).numpy() if out else np.zeros(0)

    return log_p1


def marginal_start(train_points, seeds, z, sigma_max: float = 1.0) -> np.ndarray:
    """x_T = x_k + sigma_max z: draws from the true t = 1 marginal (see ``ve_log_prior``).

    train_points (K, 2); z (n, 2) standard normal (``sample_noise(...)[:, 0]``); k comes from
    one uniform of each sample's own generator (SeedSequence([seed, CIRCLE_START_SALT]), apart from its
    noise stream), so a sample never depends on the batch it is drawn in. Returns (n, 2) float64.
    """
    train = np.asarray(train_points, np.float64).reshape(-1, 2)
    z = np.asarray(z, np.float64).reshape(-1, 2)
    if len(seeds) != len(z) or len(train) == 0:
        raise ValueError(f"marginal_start: {len(seeds)} seeds for {len(z)} noise rows and {len(train)} points")
    u = np.array([np.random.default_rng(np.random.SeedSequence([int(s), CIRCLE_START_SALT])).random() for s in seeds])
    return train[np.minimum((u * len(train)).astype(np.int64), len(train) - 1)] + sigma_max * z


@torch.no_grad()
def em_sample(score: ScoreFn, noise: np.ndarray, t_min: float = 1e-5, sigma_max: float = 1.0,
              batch: int = 4096, *, start: np.ndarray) -> np.ndarray:
    """Euler-Maruyama for the reverse VE SDE from x_T = ``start`` (n, 2) at t = 1 to t_min.

    ``start`` is required: the process at t = 1 is the training set blurred by
    N(0, sigma_max^2), so pass ``marginal_start(train, seeds, noise[:, 0], sigma_max)``;
    N(0, sigma_max^2) (``sigma_max * noise[:, 0]``) is only right when sigma_max is much
    larger than the data. noise (n, n_steps + 1, 2) per sample: row 0 is not used here
    (it is the z of ``marginal_start``), rows 1.. the EM increments.
    x <- x + g^2 s(x, t) dt + g sqrt(dt) z with g = sigma_max; the last step returns
    the mean (no noise), as is usual. Rows are independent. Returns (n, 2) float64.
    """
    n_steps = noise.shape[1] - 1
    start = np.asarray(start, np.float64).reshape(-1, 2)
    if len(start) != len(noise):
        raise ValueError(f"start has {len(start)} rows for {len(noise)} noise rows")
    ts = time_grid(n_steps, t_min)
    out = np.empty((len(noise), 2))
    for s in range(0, len(noise), batch):
        z = torch.as_tensor(noise[s:s + batch], dtype=torch.float32)
        x = torch.as_tensor(start[s:s + batch], dtype=torch.float32)
        for i in range(n_steps):
            t, dt = float(ts[i]), float(ts[i] - ts[i + 1])
            x = x + sigma_max ** 2 * score(x, torch.full((len(x),), t)) * dt
            if i < n_steps - 1:
                x = x + sigma_max * math.sqrt(dt) * z[:, i + 1]
        out[s:s + batch] = x.double().numpy()
    return out


def _score_and_div(score: ScoreFn, x: torch.Tensor, t: torch.Tensor):
    """s(x, t) and its exact divergence (trace of the 2x2 Jacobian, one backward per
    coordinate); rows are independent, so the batched gradient is per-sample."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = score(x, t)
        d0 = torch.autograd.grad(s[:, 0].sum(), x, retain_graph=True)[0][:, 0]
        d1 = torch.autograd.grad(s[:, 1].sum(), x)[0][:, 1]
    return s.detach(), (d0 + d1).detach()


def neg_log_density(score: ScoreFn, x, t0: float = 1e-2, sigma_max: float = 1.0,
                    rtol: float = 1e-6, atol: float = 1e-7, *, train_points) -> np.ndarray:
    """-log p_{t0}(x) of the model, by the probability-flow ODE with the exact divergence.

    dx/dt = f = -g^2/2 s(x, t); log p_{t0}(x) = log p_1(x(1)) + int_{t0}^{1} div f dt.
    p_1 must be the true t = 1 marginal: the training set ``train_points`` (K, 2) blurred
    by N(0, sigma_max^2) (``ve_log_prior``, exact for finite K); it is required. (A plain
    N(0, sigma_max^2) end condition is off by a position-dependent amount, several
    nats at R = 1.5 for sigma_max = 1, so it is never assumed.) With the exact
    memorizer as ``score`` this returns -log of the K-point mixture at sigma(t0) to
    the solver's tolerance: 3e-5 at the default rtol (1.7e-6 at rtol 1e-7) for the
    1000-point circle along R = 0.5 ... 1.5. Integrated in log t, where the 1/t growth of the score
    near t0 becomes smooth for the adaptive solver.
    """
    from scipy.integrate import solve_ivp

    log_prior = ve_log_prior(train_points, sigma_max)
    x0 = np.asarray(x, np.float64).reshape(-1, 2)
    m = len(x0)
    if m == 0:
        return np.zeros(0)

    def rhs(u, y):
        t = math.exp(u)
        xs = torch.as_tensor(y[:2 * m].reshape(m, 2), dtype=torch.float32)
        s, div = _score_and_div(score, xs, torch.full((m,), t))
        f = -0.5 * sigma_max ** 2 * s.double().numpy()
        divf = -0.5 * sigma_max ** 2 * div.double().numpy()
        return np.concatenate([(t * f).ravel(), t * divf])

    y0 = np.concatenate([x0.ravel(), np.zeros(m)])
    sol = solve_ivp(rhs, (math.log(t0), 0.0), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"probability-flow ODE failed: {sol.message}")
    y1 = sol.y[:, -1]
    x1, int_div = y1[:2 * m].reshape(m, 2), y1[2 * m:]
    lp = np.asarray(log_prior(x1), np.float64).reshape(m)
    return -(lp + int_div)


@torch.no_grad()
def score_at(score: ScoreFn, x, t: float) -> np.ndarray:
    xs = torch.as_tensor(np.asarray(x, np.float32).reshape(-1, 2))
    return score(xs, torch.full((len(xs),), t)).double().numpy()
