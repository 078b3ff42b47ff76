"""The 2-D circle: data, VE SDE, score MLP, sampler, and energy by the probability-flow ODE.

Data are points on the unit circle, so the generalizing answer (the whole circle)
and the memorizing answer (the K training points) are both known. The process is
the variance-exploding SDE dx = g dW with sigma(t) = sigma_max sqrt(t), i.e.
g^2 = d sigma^2 / dt = sigma_max^2, as in Song et al.'s score-SDE tutorial.
Score functions here have the signature ``score(x (B, 2), t (B,)) -> (B, 2)``:
the trained MLP and the exact memorizer (raystudy.empirical) are interchangeable.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..data import Dataset

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Angles are drawn for a fixed pool; the size-K set is the first K of one seeded
# permutation of it (raystudy.data.subset_indices), so the sets are nested.
POOL = 100_000
SETS = {"eval": 0, "ref": 1}


def circle_dataset(seed: int = 0, n: int = POOL) -> Dataset:
    theta = np.random.default_rng(np.random.SeedSequence([seed, 0xC1C])).uniform(0, 2 * np.pi, n)
    pts = np.stack([np.cos(theta), np.sin(theta)], 1).astype(np.float32)[:, None, None, :]
    return Dataset("circle", (1, 1, 2), n, lambda idx: pts[idx])


def sigma(t, sigma_max: float = 1.0):
    return sigma_max * (t ** 0.5 if isinstance(t, torch.Tensor) else np.sqrt(t))


class ScoreMLP(nn.Module):
    """s(x, t) = MLP([x, fourier(log sigma)]) / sigma(t).

    The Fourier frequencies are random and frozen (Tancik et al.; Song's
    GaussianFourierProjection). They act on log sigma rather than t because the
    memorizing regime lives at t in [1e-5, 1e-2], which t itself would squeeze
    into 1% of the input range. Dividing by sigma makes the target of the
    network, -z, of order one at every noise level.
    """

    def __init__(self, width: int = 128, depth: int = 3, n_freq: int = 16, freq_scale: float = 2.0,
                 sigma_max: float = 1.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freq", torch.randn(n_freq, generator=g) * freq_scale)
        self.sigma_max = sigma_max
        layers, d = [], 2 + 2 * n_freq
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.SiLU()]
            d = width
        layers.append(nn.Linear(d, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = sigma(t, self.sigma_max)
        phase = 2 * math.pi * torch.log(s)[:, None] * self.freq[None, :]
        h = torch.cat([x, torch.sin(phase), torch.cos(phase)], 1)
        return self.net(h) / s[:, None]


def empirical_score(train: torch.Tensor, sigma_max: float = 1.0) -> ScoreFn:
    """The exact memorizer of ``train`` (K, 2) as a score function of (x, t)."""
    from ..empirical import ve_score

    train = torch.as_tensor(train, dtype=torch.float32).reshape(-1, 2)
    return lambda x, t: ve_score(x, sigma(t, sigma_max), train)


def sample_t(n: int, t_min: float, gen: torch.Generator) -> torch.Tensor:
    """Half uniform in t (the tutorial's choice), half log-uniform: without the
    second half, t < 1e-2 -- where memorization is decided -- is seen 1% of the time."""
    u = torch.rand(n, generator=gen)
    lin = t_min + (1 - t_min) * u
    log = t_min ** (1 - u)
    return torch.where(torch.arange(n) % 2 == 0, lin, log)


def train_score(points, steps: int = 3000, batch: int = 512, lr: float = 2e-3, ema: float = 0.999,
                width: int = 128, depth: int = 3, t_min: float = 1e-5, sigma_max: float = 1.0,
                seed: int = 0, log_every: int = 0) -> tuple[ScoreMLP, float, float]:
    """Denoising score matching on the K points; returns (EMA model, final loss, wall seconds).

    Loss: E ||sigma s(x0 + sigma z, t) + z||^2 (the sigma^2-weighted DSM loss).
    The final loss is the mean over the last 5% of steps, so it is not one noisy batch.
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    x0_all = torch.as_tensor(np.asarray(points, np.float32)).reshape(-1, 2)
    model = ScoreMLP(width, depth, sigma_max=sigma_max, seed=seed)
    ema_model = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    gen = torch.Generator().manual_seed(seed + 1)
    tail, tail_n = 0.0, 0
    for step in range(steps):
        x0 = x0_all[torch.randint(len(x0_all), (batch,), generator=gen)]
        t = sample_t(batch, t_min, gen)
        z = torch.randn(batch, 2, generator=gen)
        s = sigma(t, sigma_max)[:, None]
        loss = ((model(x0 + s * z, t) * s + z) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for pe, pm in zip(ema_model.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - ema)
        if step >= steps - max(1, steps // 20):
            tail += loss.item(); tail_n += 1
        if log_every and step % log_every == 0:
            print(f"  step {step:5d} loss {loss.item():.4f}")
    return ema_model.eval(), tail / max(tail_n, 1), time.perf_counter() - t0


def time_grid(n_steps: int, t_min: float) -> np.ndarray:
    """Geometric times 1 -> t_min. Uniform steps in t would take dt >> t at the end,
    where the memorizing score is ~ (x_k - x) / t, and Euler would overshoot."""
    return np.geomspace(1.0, t_min, n_steps + 1)


def sample_seeds(seed: int, K: int, set_name: str, n: int) -> np.ndarray:
    """One int63 seed per sample, from (seed, K, set, index): a sample never depends on batching."""
    return np.array([np.random.SeedSequence([seed, K, seed, SETS[set_name], i]).generate_state(1, np.uint64)[0]
                     >> np.uint64(1) for i in range(n)], dtype=np.int64)


def sample_noise(seeds: np.ndarray, n_steps: int) -> np.ndarray:
    """Per-sample noise (n, n_steps + 1, 2): row 0 is x_T / sigma_max, rows 1.. the EM increments."""
    return np.stack([np.random.default_rng(int(s)).standard_normal((n_steps + 1, 2)) for s in seeds])


@torch.no_grad()
def em_sample(score: ScoreFn, noise: np.ndarray, t_min: float = 1e-5, sigma_max: float = 1.0,
              batch: int = 4096) -> np.ndarray:
    """Euler-Maruyama for the reverse VE SDE from x_T ~ N(0, sigma_max^2 I) to t_min.

    x <- x + g^2 s(x, t) dt + g sqrt(dt) z with g = sigma_max; the last step returns
    the mean (no noise), as is usual. Returns (n, 2) float64.
    """
    n_steps = noise.shape[1] - 1
    ts = time_grid(n_steps, t_min)
    out = np.empty((len(noise), 2))
    for s in range(0, len(noise), batch):
        z = torch.as_tensor(noise[s:s + batch], dtype=torch.float32)
        x = sigma_max * z[:, 0]
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
                    rtol: float = 1e-5, atol: float = 1e-6,
                    log_prior: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """-log p_{t0}(x) of the model, by the probability-flow ODE with the exact divergence.

    dx/dt = f = -g^2/2 s(x, t); log p_{t0}(x) = log p_1(x(1)) + int_{t0}^{1} div f dt,
    with p_1 taken as the sampler's prior N(0, sigma_max^2 I) (so values are exact up
    to that prior's mismatch: use them as relative energies), or ``log_prior(x1)`` where
    the true p_1 is known (the exact memorizer's). Integrated in log t,
    where the 1/t growth of the score near t0 becomes smooth for the adaptive solver.
    """
    from scipy.integrate import solve_ivp

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
    if log_prior is None:
        lp = -0.5 * (x1 ** 2).sum(1) / sigma_max ** 2 - math.log(2 * math.pi * sigma_max ** 2)
    else:
        lp = np.asarray(log_prior(x1), np.float64)
    return -(lp + int_div)


@torch.no_grad()
def score_at(score: ScoreFn, x, t: float) -> np.ndarray:
    xs = torch.as_tensor(np.asarray(x, np.float32).reshape(-1, 2))
    return score(xs, torch.full((len(xs),), t)).double().numpy()
