"""Basins of attraction: the critical time of an item (the paper's `run_critical_times.py`).

An item x (a generated sample, a training image, a held-out image) is noised to
step t with the *training* scheduler, x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps
(``DDPMScheduler.add_noise``), then denoised back to a clean image with DDIM
(eta = 0). The trial is *recovered* when ``metric_fn(denoised, x) <= delta``.
The deeper and wider the basin around x, the larger the t it survives.

Conventions (the same as the paper's code):

* t is a 0-based index into the scheduler's ``alphas_cumprod`` (t = 0 is the
  first, least noisy training step; ``add_noise(x, eps, t)`` uses
  ``alphas_cumprod[t]``). The scan visits t = 1, 1 + stride, 1 + 2 stride, ...
  up to ``num_train_timesteps - 1`` (the paper's ``range(1, T, stride)``).
* Denoising from t evaluates the model at ``ddim_steps`` timesteps
  tau = round(t k / ddim_steps), k = ddim_steps .. 1 (duplicates dropped, so t < ddim_steps
  evaluates every step t, t-1, ..., 1): the first model call is at timestep t
  itself (the noise level x_t was made at), the last DDIM step goes from the
  smallest tau to a clean image (abar = 1), i.e. the result is the model's
  clean-image prediction at that tau, clamped to [-1, 1]. Intermediate x0 predictions are
  *not* clipped (``clip_sample=False`` in the view), as in the paper's sampler, which clamps
  only its final output; clipping every step (diffusers' default) changes the recovered image
  from t of about 500 on.
  The paper steps with a stride ceil(t / steps) instead (fewer calls for
  small t); both end on the x0 prediction of the last positive timestep.
* radius: the plain L2 norm ||x_t - x|| over all pixels (not per-pixel), as the
  paper's ``torch.norm(x_0 - x_t, dim=-1)`` on flattened images; it is the norm of the
  noise actually used in that trial, sqrt(1 - abar_t) * ||eps - (1 - sqrt(abar_t)) / sqrt(1 - abar_t) x||.

diffusers' ``DDIMScheduler.step`` takes its previous timestep as
``timestep - num_train_timesteps // num_inference_steps`` and has no custom
timesteps, so it cannot start at an arbitrary t with uneven gaps. We therefore run it on a
*view* of the training schedule: a ``DDIMScheduler`` whose own steps 0..n-1 are
the chosen timesteps tau_0 < ... < tau_{n-1} = t (its ``alphas_cumprod`` is
``train.alphas_cumprod[tau]``, its step ratio 1, ``set_alpha_to_one``), while the
model is called with the real training timestep tau_i. The DDIM update only
depends on (abar_tau_i, abar_tau_{i-1}), so this is exactly DDIM on that grid.

Randomness: item i owns a CPU ``torch.Generator`` seeded with ``item_seeds[i]``;
at every scanned t it draws the (trials, C, H, W) noise of that t, in order. An
item stops being scanned by its own rule (below), never its batch's, so its
result does not depend on which items share its batch.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import torch

MetricFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | np.ndarray"]


# --------------------------------------------------------------------------- DDIM from t


def ddim_grid(t: int, ddim_steps: int) -> np.ndarray:
    """Ascending model timesteps for denoising from step t: round(t k / steps), k = 1..steps, unique, >= 1.

    The last entry is t itself. t = 0 gives [0] (one clean-image prediction at step 0).
    """
    t = int(t)
    if t <= 0:
        return np.zeros(1, dtype=np.int64)
    tau = np.unique(np.round(np.linspace(0, t, int(ddim_steps) + 1)[1:]).astype(np.int64))
    tau = tau[tau >= 1]
    assert tau[-1] == t
    return tau


def ddim_view(train_scheduler, tau: np.ndarray):
    """A diffusers ``DDIMScheduler`` whose steps 0..n-1 are the training timesteps ``tau`` (ascending)."""
    from diffusers import DDIMScheduler

    ac = torch.as_tensor(train_scheduler.alphas_cumprod)
    a = ac[torch.as_tensor(tau)]
    prev = torch.cat([a.new_ones(1), a[:-1]])
    cfg = train_scheduler.config
    view = DDIMScheduler(
        num_train_timesteps=len(tau), trained_betas=(1 - a / prev).double().numpy(),
        clip_sample=False, thresholding=False,
        prediction_type=cfg.get("prediction_type", "epsilon"),
        set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading",
    )
    # The exact training values (the cumprod of the ratios above would differ in the last bit).
    view.alphas_cumprod = a.clone()
    view.set_timesteps(len(tau))  # n-1, ..., 0 with step ratio 1: previous of step i is i - 1
    return view


@torch.no_grad()
def ddim_denoise(model, train_scheduler, x_t: torch.Tensor, t: int, ddim_steps: int) -> torch.Tensor:
    """DDIM (eta = 0) from x_t made at training step t down to a clean image (the last x0
    prediction, clamped to [-1, 1]; the steps before it are not clipped)."""
    tau = ddim_grid(t, ddim_steps)
    view = ddim_view(train_scheduler, tau)
    x = x_t
    for i in range(len(tau) - 1, -1, -1):
        ts = torch.full((x.shape[0],), int(tau[i]), dtype=torch.long, device=x.device)
        eps = model(x, ts).sample.to(x.dtype)
        x = view.step(eps, i, x, eta=0.0).prev_sample
    return x.clamp(-1.0, 1.0)


# --------------------------------------------------------------------------- how an item is noised and recovered


class DDIMRecovery:
    """The image studies: noise with the training scheduler, denoise with DDIM (module docstring)."""

    def __init__(self, model, train_scheduler, ddim_steps: int):
        self.model, self.train_scheduler, self.ddim_steps = model, train_scheduler, int(ddim_steps)

    def times(self, stride: int, t_max: int | None) -> np.ndarray:
        return scan_times(int(self.train_scheduler.config.num_train_timesteps), stride, t_max)

    def draw(self, gen: torch.Generator, trials: int, shape: tuple, t: int) -> torch.Tensor:
        return torch.randn((trials, *shape), generator=gen, dtype=torch.float32)

    def recover(self, x: torch.Tensor, noise: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        ts = torch.full((len(x),), int(t), dtype=torch.long, device=x.device)
        x_t = self.train_scheduler.add_noise(x, noise, ts)
        return x_t, ddim_denoise(self.model, self.train_scheduler, x_t, int(t), self.ddim_steps)


class VERecovery:
    """The 2-D circle (the paper's ``toy_example.py``, VE SDE with g = sigma_max): x_t = x + sigma_max
    sqrt(t) z, then the reverse SDE by Euler-Maruyama from t down to ``eps`` = 1e-3 in round(1000 t)
    equally spaced times, returning the last step's mean, as the paper's ``reverse_diffusion_sample``.
    The reverse process is stochastic, so with the exact score it draws x_0 from p(x_0 | x_t).

    t is an integer in thousandths of the VE time (t = 1000 is t = 1), so the tables keep integer t;
    the scan visits 10, 10 + stride, ... <= 1000, the paper's t from 1e-2 to 1. ``score(x, t)`` is the
    circle's score model (``models.circle_mlp.ScoreMLP`` or ``empirical_score``)."""

    UNIT = 1000

    def __init__(self, score, sigma_max: float = 1.0, eps: float = 1e-3):
        self.score, self.sigma_max, self.eps = score, float(sigma_max), float(eps)

    def times(self, stride: int, t_max: int | None) -> np.ndarray:
        hi = self.UNIT if t_max is None else min(int(t_max), self.UNIT)
        return np.arange(10, hi + 1, int(stride), dtype=np.int64)

    def draw(self, gen: torch.Generator, trials: int, shape: tuple, t: int) -> torch.Tensor:
        # Row 0 noises the item; rows 1.. are the Euler-Maruyama increments.
        return torch.randn((trials, 1 + int(t), *shape), generator=gen, dtype=torch.float32)

    def recover(self, x: torch.Tensor, noise: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        tt = int(t) / self.UNIT
        g = self.sigma_max
        x_t = x + g * math.sqrt(tt) * noise[:, 0]
        grid = np.linspace(tt, self.eps, int(t))
        dt = float(grid[0] - grid[1])
        y, mean = x_t, x_t
        for i, s in enumerate(grid):
            mean = y + g ** 2 * self.score(y, torch.full((len(y),), float(s), device=y.device)) * dt
            y = mean + g * math.sqrt(dt) * noise[:, 1 + i]
        return x_t, mean


def log_ball_volume(radius, dim: int):
    """log of the volume of a d-ball of ``radius``: the basin volume the paper's toy example derives
    from a recovery radius (pi r^2 in the plane)."""
    r = np.asarray(radius, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return dim / 2 * np.log(np.pi) + dim * np.log(r) - math.lgamma(dim / 2 + 1)


# --------------------------------------------------------------------------- critical times


def scan_times(num_train_timesteps: int, stride: int, t_max: int | None = None) -> np.ndarray:
    """t = 1, 1 + stride, ... <= t_max (default: the last training step, num_train_timesteps - 1)."""
    t_max = num_train_timesteps - 1 if t_max is None else min(int(t_max), num_train_timesteps - 1)
    return np.arange(1, t_max + 1, int(stride), dtype=np.int64)


def _distances(metric_fn: MetricFn, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    d = metric_fn(a, b)
    d = d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d)
    return d.reshape(-1).astype(np.float64)


@torch.no_grad()
def critical_times(model, train_scheduler, items, item_seeds, *, metric_fn: MetricFn, delta: float,
                   trials: int, p: float, stride: int, ddim_steps: int, batch_size: int,
                   t_max: int | None = None, device="cpu", recovery=None) -> dict:
    """Critical times of ``items`` (n, C, H, W) in [-1, 1] under ``model`` (eps prediction).

    Per item i and scanned t (0-based scheduler index, see the module docstring),
    ``trials`` fresh noisings from item i's generator are denoised with DDIM (or, with
    ``recovery``, e.g. ``VERecovery`` for the circle, noised and recovered its way; ``model``
    and ``train_scheduler`` are then unused) and compared with ``metric_fn(denoised, x) <= delta`` (metric_fn returns one
    distance per row). Returns numpy arrays / lists:

    * ``t_crit`` (n,): first passage: the last scanned t before the rate first drops below p
      (0 if it is below p at t = 1). A later t where the rate happens to reach p again (with
      10 trials a lucky draw, not a wider basin) does not move it; the whole curve is in ``rate``.
    * ``radius`` (n,): mean over the trials at t_crit of ||x_t - x||, the L2 norm over
      all pixels (0 where t_crit = 0).
    * ``t_survive`` (n, trials): per trial, the last scanned t before that trial's first
      failure (0 if it failed at t = 1; the last scanned t if it never failed). Uncensored: the
      paper's per-trial Tc (``find_opt_time``) is the same survival time but starts at 1 and is cut
      where every item of its *batch* has rate < p, so it is smaller and depends on the batch.
    * ``radius_survive`` (n, trials): ||x_t - x|| of that trial at t_survive (0 where t_survive = 0).
    * ``rate_t``, ``rate`` (lists of n arrays): every scanned t of the item and its recovery rate.
    * ``times`` (array): the t grid that was available to scan.

    Stop rule (per item): the item's scan ends after the first t at which its rate is < p
    *and* every one of its trials has failed at least once (so every trial's t_survive is known).
    A batch (``batch_size`` items, ``batch_size * trials`` rows per model call) ends when all its
    items have stopped. Items are scanned only while active, so an item's result does not depend on
    its batch companions.
    """
    items = torch.as_tensor(np.asarray(items) if not isinstance(items, torch.Tensor) else items)
    items = items.to(torch.float32)
    seeds = np.asarray(item_seeds).reshape(-1)
    n = items.shape[0]
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} item seeds for {n} items")
    recovery = recovery or DDIMRecovery(model, train_scheduler, ddim_steps)
    times = recovery.times(stride, t_max)
    shape = tuple(items.shape[1:])
    out_t_crit = np.zeros(n, dtype=np.int64)
    out_radius = np.zeros(n, dtype=np.float64)
    out_t_surv = np.zeros((n, trials), dtype=np.int64)
    out_r_last = np.zeros((n, trials), dtype=np.float64)
    rate_t: list[list[int]] = [[] for _ in range(n)]
    rate: list[list[float]] = [[] for _ in range(n)]
    dev = torch.device(device)

    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        gens = {i: torch.Generator("cpu").manual_seed(int(seeds[i])) for i in idx}
        failed = {i: np.zeros(trials, dtype=bool) for i in idx}
        passed = {i: True for i in idx}  # the rate has been >= p at every scanned t so far
        active = list(idx)
        for t in times:
            if not active:
                break
            x = items[active].to(dev)
            x_rep = x.repeat_interleave(trials, 0)
            noise = torch.cat([recovery.draw(gens[i], trials, shape, int(t)) for i in active]).to(dev)
            x_t, x0 = recovery.recover(x_rep, noise, int(t))
            rad = (x_t.double() - x_rep.double()).flatten(1).norm(dim=1).cpu().numpy().reshape(len(active), trials)
            ok = (_distances(metric_fn, x0, x_rep) <= delta).reshape(len(active), trials)
            still = []
            for j, i in enumerate(active):
                r = float(ok[j].mean())
                rate_t[i].append(int(t))
                rate[i].append(r)
                passed[i] = passed[i] and r >= p
                if passed[i]:
                    out_t_crit[i], out_radius[i] = int(t), float(rad[j].mean())
                alive = ~failed[i]
                surv = alive & ok[j]
                out_t_surv[i, surv], out_r_last[i, surv] = int(t), rad[j, surv]
                failed[i] |= alive & ~ok[j]
                if not (r < p and failed[i].all()):
                    still.append(i)
            active = still
    return {"t_crit": out_t_crit, "radius": out_radius, "t_survive": out_t_surv, "radius_survive": out_r_last,
            "rate_t": [np.asarray(v, dtype=np.int64) for v in rate_t],
            "rate": [np.asarray(v, dtype=np.float64) for v in rate], "times": times}


# --------------------------------------------------------------------------- metrics


def l2_metric(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Plain L2 over all pixels, per row (the norm of ``radius``)."""
    return (a.double() - b.double()).flatten(1).norm(dim=1)


def rms_metric(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel RMS, ||a - b|| / sqrt(D): the study's ``l2`` metric (raystudy.metrics.PixelL2)."""
    return l2_metric(a, b) / float(np.sqrt(a[0].numel()))


def metric_fn_from_embedding(metric) -> MetricFn:
    """A study metric (raystudy.metrics: ``embed`` + ``from_sq``) as a per-row ``metric_fn``."""
    def fn(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        ea = np.asarray(metric.embed(a.detach().float().cpu().numpy()), dtype=np.float64)
        eb = np.asarray(metric.embed(b.detach().float().cpu().numpy()), dtype=np.float64)
        return np.asarray(metric.from_sq(((ea - eb) ** 2).sum(1)), dtype=np.float64)
    return fn


# --------------------------------------------------------------------------- which items


# The paper's ranking (its run_classify.py): memorized samples by d_train ascending, spurious
# ones by d_synth ascending, generalized ones by d_synth descending; "top" is the head of that
# ranking, "bottom" its tail, and the two are measured and stored apart.
PAPER_RANK = {"memorized": ("d_train", True), "spurious": ("d_synth", True), "generalized": ("d_synth", False)}


def select_items(labels_df, per_label: int, *, rank: str = "paper",
                 labels=("memorized", "spurious", "generalized"), id_col: str = "sample_id",
                 label_col: str = "label"):
    """Per label, the ceil(per_label / 2) first ("top") and floor(per_label / 2) last ("bottom")
    samples of the label's ranking; they never overlap (a label with fewer than ``per_label``
    samples gives all of them, the extra one to "top").

    ``rank="paper"``: ``PAPER_RANK`` (needs a ``d_synth`` column); ``rank="d_train"``: every label
    by d_train ascending, one ranking for all three. Ties break by ``id_col``. Returns the chosen
    rows of ``labels_df`` (all its columns) plus ``pick`` ("top" / "bottom"), ordered by label,
    then pick, then rank. Pass one (K, seed, metric)'s labels: it does not group by those columns.
    """
    import pandas as pd

    if rank not in ("paper", "d_train"):
        raise ValueError(f"rank must be 'paper' or 'd_train', got {rank!r}")
    parts = []
    for lab in labels:
        col, ascending = PAPER_RANK[lab] if rank == "paper" else ("d_train", True)
        g = labels_df[labels_df[label_col] == lab]
        if per_label <= 0 or g.empty:
            continue
        g = g.sort_values([col, id_col], ascending=[ascending, True], kind="mergesort")
        n_top = ((len(g) if len(g) <= per_label else per_label) + 1) // 2
        n_bottom = min(per_label, len(g)) - n_top
        parts += [g.iloc[:n_top].assign(pick="top"), g.iloc[len(g) - n_bottom:].assign(pick="bottom")]
    if not parts:
        return labels_df.iloc[:0].assign(pick=pd.Series(dtype=str))
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- one (K, seed) group


def basins_group(model, train_scheduler, cfg_basins, items: Mapping, metric_fn: MetricFn, device="cpu", *,
                 K: int | None = None, seed: int | None = None, metric: str | None = None,
                 t_max: int | None = None, recovery=None) -> dict[str, dict]:
    """Critical times of one (K, seed)'s items, as column dicts of tables ``basins``, ``basin_trials``, ``basin_rates``.

    ``items``: ``kind`` (n,) str, ``item_id`` (n,) int, ``label`` (n,) str or None, ``d_train`` (n,) float
    (NaN where not applicable), optionally ``d_synth`` (n,) float and ``pick`` (n,) "top" / "bottom" / None,
    ``images`` (n, C, H, W), ``seeds`` (n,) int (derive them with
    numpy SeedSequence from (study seed, K, seed, kind, index) so they are stable across re-runs).
    ``cfg_basins``: a ``BasinsSection`` (trials, p, delta, stride, ddim_steps, batch_size).

    The columns K, seed (all three tables) and metric (``basins``) are included only when
    ``K``, ``seed``, ``metric`` are passed; otherwise the caller adds them. Rows follow ``items``;
    ``basin_trials`` is item-major (trial 0..trials-1); ``basin_rates`` lists each item's scanned t.
    """
    c = cfg_basins
    res = critical_times(model, train_scheduler, items["images"], items["seeds"], metric_fn=metric_fn,
                         delta=c.delta, trials=c.trials, p=c.p, stride=c.stride, ddim_steps=c.ddim_steps,
                         batch_size=c.batch_size, t_max=t_max, device=device, recovery=recovery)
    n, trials = res["t_survive"].shape
    kind = np.asarray(items["kind"], dtype=object)
    item_id = np.asarray(items["item_id"], dtype=np.int64)
    label = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)
             for v in (items.get("label") if items.get("label") is not None else [None] * n)]
    d_train = np.asarray(items.get("d_train", np.full(n, np.nan)), dtype=np.float64)
    d_synth = np.asarray(items.get("d_synth", np.full(n, np.nan)), dtype=np.float64)
    pick = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in (items.get("pick") if items.get("pick") is not None else [None] * n)]
    basins = {"kind": kind, "item_id": item_id, "label": label, "pick": pick, "d_train": d_train,
              "d_synth": d_synth, "t_crit": res["t_crit"], "radius": res["radius"]}
    trials_cols = {"kind": np.repeat(kind, trials), "item_id": np.repeat(item_id, trials),
                   "trial": np.tile(np.arange(trials, dtype=np.int32), n),
                   "t_survive": res["t_survive"].reshape(-1), "radius": res["radius_survive"].reshape(-1)}
    counts = np.array([len(v) for v in res["rate_t"]], dtype=np.int64)
    rates = {"kind": np.repeat(kind, counts), "item_id": np.repeat(item_id, counts),
             "t": np.concatenate(res["rate_t"]) if n else np.zeros(0, np.int64),
             "rate": np.concatenate(res["rate"]) if n else np.zeros(0),
             "n_trials": np.full(int(counts.sum()), trials, dtype=np.int32)}
    out = {"basins": basins, "basin_trials": trials_cols, "basin_rates": rates}
    if K is not None and seed is not None:
        for cols in out.values():
            m = len(next(iter(cols.values())))
            cols["K"] = np.full(m, K, dtype=np.int32)
            cols["seed"] = np.full(m, seed, dtype=np.int32)
    if metric is not None:
        basins["metric"] = np.full(n, metric, dtype=object)
    return out
