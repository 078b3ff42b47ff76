"""When a model starts to copy, read from its losses: the onset of the generalization gap.

A training run evaluates its EMA model's denoising loss, at a few fixed noise levels, on a fixed
batch of its own K-set images and on a fixed batch of held-out images, with fixed noise
(``compute.losses.LossProbe``), so two evaluations differ only by the weights. The gap is the
held-out loss minus the training loss. A model that generalizes changes both losses alike (the two
batches are draws from one distribution); a model that starts fitting its own images lowers the
training loss alone.

**The rule** (``gap_onset``, the only one: the tables, the stopping rule and a plain training loop
call it). The gap at evaluation e and noise level l is open when two things hold:

* it has risen clearly since the first evaluation: ``d = mean_i(h_i(e) - h_i(0)) -
  mean_j(r_j(e) - r_j(0))`` over the held-out items i and the training items j, divided by its
  standard error over the items (independent sets, per-item differences: the items' own
  difficulty cancels), exceeds ``Phi^-1(1 - ALPHA / levels)`` (Bonferroni over the levels, since
  the level is chosen by the data);
* it is large: the training loss is below the held-out loss by at least ``RHO`` of the latter,
  ``1 - mean r(e) / mean h(e) >= RHO`` (1/2: half the loss on unseen images is gone on the
  model's own ones). Significance alone is not memorization: any finite K-set is fitted a little
  better than the population from the first hundreds of steps on (on the digits a gap of a few
  percent was significant at K = 64 after 2,000 images, long before any sample was a copy),
  and how early it is significant depends on the batch sizes, not on the model.

The onset ``tau_gap`` is the first evaluation where the gap is open at some level and is open
again at the next evaluation (a single crossing is not enough: with ~30 evaluations a one-off
would be expected now and then). The level that carries the signal is the data's choice, at each
evaluation; the one reported is the open level with the largest z. Never confirmed: censored.
A gap already large at the first two evaluations (relative gap significantly above RHO at both,
at the evaluation threshold) opened before them: tau_gap is the first evaluation, marked
``open_at_start`` (a bound, as tau_mem's 'before').

**The interval** (``onset_bracket``) is model-free, as tau_mem's bracket of snapshots: from the
evaluation after the last one at which every level's relative gap is significantly below RHO to
the first at which some level's is significantly above it. It holds the first evaluation whose
expected relative gap reaches RHO whenever that gap grows with training
(``benchmarks/onset_coverage.py`` measures how often in worlds where that evaluation is known).

numpy and scipy only: ``compute.train`` calls it while training, ``analysis`` on the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import stats as sps

# One-sided false-alarm rate of one evaluation's test, shared by the noise levels.
ALPHA = 0.01
# The relative gap 1 - train / held-out loss at which the gap counts as open.
RHO = 0.5
# Consecutive evaluations above the threshold that confirm an onset.
CONFIRM = 2


def threshold(levels: int, alpha: float = ALPHA) -> float:
    """The z an evaluation's largest per-level z must exceed (Bonferroni over ``levels``)."""
    return float(sps.norm.ppf(1 - alpha / max(1, levels)))


def gap_z(train_losses: np.ndarray, held_losses: np.ndarray) -> np.ndarray:
    """Per evaluation and noise level, the z of the gap's rise since the first evaluation.

    ``train_losses`` (E, L, n_train), ``held_losses`` (E, L, n_held): per-item losses of E
    evaluations at L noise levels. Returns (E, L), row 0 zeros."""
    tr = np.asarray(train_losses, float)
    ho = np.asarray(held_losses, float)
    dtr, dho = tr - tr[:1], ho - ho[:1]
    rise = dho.mean(-1) - dtr.mean(-1)
    var = dho.var(-1, ddof=1) / dho.shape[-1] + dtr.var(-1, ddof=1) / dtr.shape[-1]
    se = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, rise / np.where(se > 0, se, 1.0), np.sign(rise) * np.inf)
    return np.nan_to_num(z, nan=0.0)


def relative_gap(train_losses, held_losses) -> np.ndarray:
    """Per evaluation and level, ``1 - mean training loss / mean held-out loss`` (E, L): 0 where
    the model treats both alike, 1 where it denoises its own images perfectly."""
    tr = np.asarray(train_losses, float).mean(-1)
    ho = np.asarray(held_losses, float).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(1 - tr / ho, nan=0.0, neginf=0.0)


def relative_se(train_losses, held_losses) -> np.ndarray:
    """The standard error of ``relative_gap`` over the items (delta method, independent sets), (E, L)."""
    tr, ho = np.asarray(train_losses, float), np.asarray(held_losses, float)
    r, h = tr.mean(-1), ho.mean(-1)
    vr, vh = tr.var(-1, ddof=1) / tr.shape[-1], ho.var(-1, ddof=1) / ho.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        # |r/h| sqrt(vr/r^2 + vh/h^2), written so that a level fitted perfectly (r = 0) stays finite
        return np.nan_to_num(np.sqrt(vr / h ** 2 + r ** 2 * vh / h ** 4), nan=np.inf)


def gap_onset(images_seen, train_losses, held_losses, alpha: float = ALPHA, confirm: int = CONFIRM,
              rho: float = RHO) -> dict:
    """The onset of the generalization gap: ``tau_gap`` (images seen at the first confirmed
    evaluation, NaN when censored), ``censored`` (no confirmed onset), ``open_at_start`` (open
    before the first evaluation: tau_gap is then an upper bound), ``level`` (the index of the open
    noise level with the largest z there, -1 when censored), ``z`` (the largest z per
    evaluation), ``relative`` (the largest relative gap per evaluation), ``z_threshold`` and
    ``index`` (the onset's evaluation, -1 when censored)."""
    t = np.asarray(images_seen, float)
    z = gap_z(train_losses, held_losses)
    rel = relative_gap(train_losses, held_losses)
    thr = threshold(z.shape[1] if z.ndim == 2 else 1, alpha)
    is_open = (z > thr) & (rel >= rho)
    is_open[0] = False
    above = is_open.any(axis=1)
    out = {"tau_gap": float("nan"), "censored": True, "level": -1, "z": z.max(axis=1), "relative": rel.max(axis=1),
           "z_threshold": thr, "index": -1, "open_at_start": False}
    se = relative_se(train_losses, held_losses)
    if len(t) >= confirm and (rel[:confirm] - thr * se[:confirm] >= rho).any(axis=1).all():
        return {**out, "tau_gap": float(t[0]), "censored": False, "level": int(np.argmax(rel[0])), "index": 0,
                "open_at_start": True}
    for e in range(1, len(t) - confirm + 1):
        if above[e:e + confirm].all():
            return {**out, "tau_gap": float(t[e]), "censored": False,
                    "level": int(np.argmax(np.where(is_open[e], z[e], -np.inf))), "index": e}
    return out


def onset_bracket(images_seen, train_losses, held_losses, level: float = 0.95, rho: float = RHO,
                  tau: Optional[float] = None) -> tuple[float, float]:
    """Where the relative gap reaches ``rho``: the evaluation after the last one at which every
    level's relative gap is significantly below ``rho``, and the first at which some level's is
    significantly above it (inf where none is); each level's bound at ``level``, Bonferroni over
    the levels. Model-free, as tau_mem's bracket of snapshots: it holds the first evaluation whose
    expected relative gap reaches ``rho`` whenever that gap grows with training. ``tau`` (the
    rule's onset) is kept inside."""
    t = np.asarray(images_seen, float)
    rel, se = relative_gap(train_losses, held_losses), relative_se(train_losses, held_losses)
    zb = float(sps.norm.ppf(1 - (1 - level) / (2 * rel.shape[1])))
    above = np.flatnonzero((rel - zb * se > rho).any(axis=1))
    first_above = int(above[0]) if len(above) else len(t)
    below = np.flatnonzero((rel + zb * se < rho).all(axis=1)[:first_above])
    # A truth after the last evaluation (every one significantly below) is the bracket (inf, inf).
    lo_at = int(below[-1]) + 1 if len(below) else 0
    lo = float(t[lo_at]) if lo_at < len(t) else np.inf
    hi = float(t[first_above]) if first_above < len(t) else np.inf
    if tau is not None and np.isfinite(tau):
        lo, hi = min(lo, tau), max(hi, tau)
    return lo, hi


def message(tau_gap: float, ratio: Optional[float] = None) -> str:
    """The stopping rule's answer for a run: where the gap opened and, given the ratio
    tau_mem / tau_gap measured on a study (``analysis.phase.onset_relation``), from where memorized
    samples are to be expected."""
    said = f"the held-out gap opened at {tau_gap:,.0f} images"
    if ratio is None or not np.isfinite(ratio):
        return said
    return f"{said}: memorization is likely from about {tau_gap * ratio:,.0f} images on (x{ratio:.2g})"


@dataclass
class GapWatch:
    """The rule followed during a training loop: ``add`` each evaluation's per-item losses (L,
    n_train) and (L, n_held); ``onset`` is None until the gap has opened, then ``gap_onset``'s
    answer. Any loop can use it with ``compute.losses.LossProbe``; ``train.stop_on_gap`` does."""
    ratio: Optional[float] = None
    alpha: float = ALPHA
    rho: float = RHO

    def __post_init__(self):
        self.images_seen: list = []
        self.train: list = []
        self.held: list = []
        self.onset: Optional[dict] = None

    def add(self, images_seen: int, train_losses, held_losses) -> Optional[dict]:
        self.images_seen.append(int(images_seen))
        self.train.append(np.asarray(train_losses, float))
        self.held.append(np.asarray(held_losses, float))
        if self.onset is None and len(self.images_seen) >= CONFIRM:
            o = gap_onset(self.images_seen, np.stack(self.train), np.stack(self.held), self.alpha, rho=self.rho)
            if not o["censored"]:
                self.onset = o
        return self.onset

    def message(self) -> Optional[str]:
        return None if self.onset is None else message(self.onset["tau_gap"], self.ratio)

    def last_z(self) -> float:
        """The rule's statistic at the last evaluation: its largest z over the levels (0 before
        the second evaluation)."""
        if len(self.images_seen) < 2:
            return 0.0
        return float(gap_z(np.stack([self.train[0], self.train[-1]]), np.stack([self.held[0], self.held[-1]]))[1].max())

    def evals(self) -> list:
        """Every evaluation added, as plain lists: [images seen, training losses, held-out losses]."""
        return [[s, t.tolist(), h.tolist()] for s, t, h in zip(self.images_seen, self.train, self.held)]


__all__ = ["ALPHA", "RHO", "CONFIRM", "threshold", "gap_z", "relative_gap", "gap_onset", "relative_se",
           "onset_bracket", "message", "GapWatch"]
