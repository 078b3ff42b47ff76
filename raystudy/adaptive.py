"""The adaptive K sweep: which K to train next, decided from the tables alone.

A study with ``sweep.enabled`` names a K range and a budget instead of a list. Round 0 trains
``initial`` K log-spaced over [k_min, k_max]; after each round :func:`propose` reads the
summary (:func:`raystudy.analysis.summaries.transition_summary`) and places ``per_round`` new K:

* inside the crossing's interval, evenly in log K (the fitted interval, which lies inside the
  bracket of grid K significantly above / below 1/2), because that is what narrows it;
* with two or more per round, the last one inside EMM's interval when that is still wider
  than the target, else beside the spurious peak on the side where its bracket is widest.

It stops when the crossing's width is below ``target_ratio`` or the rounds are spent. The
width is honest about the grid (:func:`width`): while no grid K lies inside the bracket it
is the bracket's hi / lo, not the fit's, so a sweep never stops on the logistic's word alone.

The loop (:func:`run_sweep`) is an outer loop over the stage runner (:func:`raystudy.study.run`):
each round adds its K to the config and runs the stages, which compute only the new units
(the stage rule), so a resumed sweep recomputes nothing and, the proposals being a
deterministic function of the tables, proposes the same K. Why not a Ray Tune searcher:
a round here is not one trial but a batch of whole K-evaluations (train, generate, knn,
classify; several stages, several Ray pools), and Tune's searcher would own the loop while
the stage rule already gives resume, staleness and per-stage parallelism; the outer loop is
30 lines and keeps every stage as it is. ``sweep.json`` keeps each round's K, the reason for
each new K and the interval after the round; the report shows it.

No Ray, no torch here (the stage runner is imported when the loop runs).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np


def initial_ks(k_min: int, k_max: int, n: int) -> list[int]:
    """``n`` distinct integers log-spaced from k_min to k_max (both included); where rounding
    merges small K, the next free integers above them."""
    ks: list[int] = []
    for v in np.geomspace(k_min, k_max, n):
        k = max(int(round(v)), ks[-1] + 1 if ks else k_min)
        ks.append(min(k, k_max))
    return sorted(set(ks))


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and 0 < v < math.inf


def width(row, prefix: str = "k_cross") -> float:
    """hi / lo of a crossing, honest about the grid: the bracket's while no grid K lies inside
    it, else the reported interval's; inf when either end is open."""
    if bool(row[f"{prefix}_resolved"]):
        lo, hi = row[f"{prefix}_lo"], row[f"{prefix}_hi"]
    else:
        lo, hi = row[f"{prefix}_bracket_lo"], row[f"{prefix}_bracket_hi"]
    return float(hi / lo) if _finite(lo) and _finite(hi) else math.inf


def _fmt(k) -> str:
    return "below the smallest K" if k == 0 else ("beyond the largest K" if not math.isfinite(k) else f"{k:.3g}")


def _inside(lo: float, hi: float, m: int, taken: set, k_min: int, k_max: int) -> list[int]:
    """Up to ``m`` new integer K evenly spaced in log K strictly inside (lo, hi) clipped to
    [k_min, k_max]; a rounded K already taken moves to the nearest free integer inside."""
    a = max(lo, k_min - 0.5) if lo > 0 else k_min - 0.5
    b = min(hi, k_max + 0.5) if math.isfinite(hi) else k_max + 0.5
    free = [k for k in range(int(math.floor(a)) + 1, int(math.ceil(b))) if a < k < b and k not in taken]
    out: list[int] = []
    for v in np.exp(np.linspace(np.log(a), np.log(b), m + 2)[1:-1]):
        pool = [k for k in free if k not in out]
        if not pool:
            break
        out.append(min(pool, key=lambda k: (abs(math.log(k) - math.log(v)), k)))
    return out


def propose(row, taken, k_min: int, k_max: int, per_round: int,
            target_ratio: float) -> tuple[list[dict], str | None]:
    """The next round's K (a list of {"K", "reason"}) from one summary row, or [] and why the
    sweep stops. Deterministic: the same row and K give the same proposal."""
    taken = set(int(k) for k in taken)
    w = width(row)
    if w <= target_ratio:
        return [], f"crossing's width x{w:.3g} <= target x{target_ratio:g}"
    lo, hi = row["k_cross_lo"], row["k_cross_hi"]
    b_lo, b_hi = row["k_cross_bracket_lo"], row["k_cross_bracket_hi"]
    why = (f"crossing: inside its interval {_fmt(lo)} to {_fmt(hi)}" +
           ("" if row["k_cross_resolved"] else f" (no grid K between {_fmt(b_lo)} and {_fmt(b_hi)})"))
    n_side = 1 if per_round >= 2 else 0
    out = [{"K": k, "reason": why} for k in _inside(lo, hi, per_round - n_side, taken, k_min, k_max)]
    taken |= {p["K"] for p in out}
    if n_side:
        side = []
        if width(row, "emm") > target_ratio:
            side = [{"K": k, "reason": f"EMM: inside its interval {_fmt(row['emm_lo'])} to {_fmt(row['emm_hi'])}"}
                    for k in _inside(row["emm_lo"], row["emm_hi"], 1, taken, k_min, k_max)]
        if not side:
            pk, p_lo, p_hi = row["spurious_peak_k"], row["spurious_peak_k_lo"], row["spurious_peak_k_hi"]
            lo_side = math.log(pk / max(p_lo, k_min)) if p_lo > 0 else math.log(pk / k_min)
            hi_side = math.log(min(p_hi, k_max) / pk)
            a, b = (max(p_lo, k_min - 0.5), pk) if lo_side > hi_side else (pk, p_hi)
            side = [{"K": k, "reason": f"spurious peak: between {_fmt(a)} and {_fmt(b)} (highest grid K {pk})"}
                    for k in _inside(a, b, 1, taken, k_min, k_max)]
        if not side:
            side = [{"K": k, "reason": why} for k in _inside(lo, hi, per_round, taken, k_min, k_max)[:1]]
        out += side
    if not out:
        return [], "no integer K left inside the crossing's interval"
    return sorted(out, key=lambda p: p["K"]), None


_ROW_KEYS = ("k_cross", "k_cross_lo", "k_cross_hi", "k_cross_bracket_lo", "k_cross_bracket_hi", "k_cross_resolved",
             "emm", "emm_lo", "emm_hi", "emm_bracket_lo", "emm_bracket_hi", "spurious_peak_k", "spurious_peak",
             "spurious_peak_k_lo", "spurious_peak_k_hi")


def _json(v):
    """JSON has no inf: an open end is null."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = float(v)
    return None if math.isinf(v) or math.isnan(v) else v


def summarize(fractions, metric: str):
    """The summary row the sweep decides on: ``metric``'s, from the fractions table (without the
    bump fit: the sweep reads the spurious peak's grid bracket only)."""
    from .analysis.summaries import transition_summary

    fr = fractions[fractions["metric"] == metric]
    return transition_summary(fractions=fr, peak_fit=False).iloc[0]


def run_sweep(cfg, study_dir, dry_run: bool = False, echo=None, only: str | None = None,
              run_stages=None) -> Path:
    """Run an adaptive sweep (``cfg.sweep``): per round, the stages on the K so far, then the
    proposal; ``sweep.json`` after every round. ``run_stages(cfg, study_dir, ...)``: the stage
    runner (default :func:`raystudy.study.run`)."""
    from . import tables
    from .axes import main_rows
    from .errors import ConfigError

    if run_stages is None:
        from .study import run as run_stages
    say = echo or logging.getLogger("raystudy").info
    sw = cfg.sweep
    if not sw.enabled:
        raise ConfigError("config: sweep.enabled is false: this study has a fixed K list (use raystudy run)")
    study_dir = Path(study_dir).resolve()
    ks = initial_ks(sw.k_min, sw.k_max, sw.initial)
    rounds: list[dict] = []
    for r in range(sw.rounds + 1):
        t0 = time.time()
        cfg_r = cfg.model_copy(update={"ks": tuple(ks)})
        say(f"[sweep] round {r}: K = {', '.join(map(str, ks))}")
        run_stages(cfg_r, study_dir, dry_run=dry_run, echo=echo, only=only)
        if dry_run:
            return study_dir
        # The sweep places K on the main model's curve (its first variant's final checkpoint).
        fr = main_rows(tables.read_pandas(study_dir, "fractions"), cfg.to_dict())
        row = summarize(fr[fr["K"].isin(ks)], sw.metric)
        new, stop = (propose(row, ks, sw.k_min, sw.k_max, sw.per_round, sw.target_ratio) if r < sw.rounds
                     else ([], f"the budget of {sw.rounds} rounds is spent"))
        rounds.append({"round": r, "ks": list(ks), "trainings": len(ks) * len(cfg.seeds),
                       "width": _json(width(row)), **{k: _json(row[k]) for k in _ROW_KEYS},
                       "next": new, "stop": stop, "wall_s": round(time.time() - t0, 2)})
        tables.write_text(study_dir / tables.SWEEP_JSON, json.dumps(
            {"sweep": sw.model_dump(mode="json"), "metric": sw.metric, "rounds": rounds}, indent=1))
        for p in new:
            say(f"[sweep] next: K = {p['K']} ({p['reason']})")
        if stop:
            say(f"[sweep] stops after round {r}: {stop}")
            break
        ks = sorted(set(ks) | {p["K"] for p in new})
    return study_dir
