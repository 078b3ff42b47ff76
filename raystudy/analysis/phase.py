"""The phase diagram: the transition over training time (snapshots), model size (variants) and
twin models, from the tables alone (numpy, scipy, pandas). Its figures are
:mod:`raystudy.analysis.plots.phase`.

Every function returns a DataFrame, so a notebook reads the same numbers the figures draw::

    from raystudy.analysis import load, phase
    st = load("studies/digits-phase")
    phase.phase_table(st.fractions, st.null_fractions, st.runs)   # fractions over K x time x variant
    phase.tau_mem(st.fractions)                                   # per K: when memorized first exceeds 1/2
    phase.tau_exponent(st.fractions)                              # tau_mem = c K^b: b and its interval
    phase.crossings_by_axis(st.fractions, st.runs)                # crossing K per snapshot and variant
    phase.reproducibility(st.twins, {"l2": 0.1})                  # twin agreement per K
    phase.phase_tables(st)                                        # all of them, as the report writes them

The axes are columns: ``variant`` (a model configuration; absent = one variant ``"base"``),
``images_seen`` (the snapshot; absent = one snapshot, 0 standing for the final model) and
``twin`` (the second model trained on a disjoint set; only ``twin == 0`` rows are the study's
transition). A table without them is a one-axis study: one variant, one snapshot, no twins.

Intervals (all reuse :mod:`raystudy.analysis.transition`):

* per cell (K, snapshot, variant): exact over samples, hierarchical bootstrap over seeds;
* **tau_mem(K)**: the images seen at which the memorized fraction crosses 1/2 *upwards*: the
  crossing fit of the K transition along ``images_seen`` (a binomial logistic in ln t, its
  profile-likelihood interval clipped to the model-free bracket of snapshots significantly below
  / above 1/2; :func:`raystudy.analysis.transition.fit_crossing_along`);
* **the exponent b** of tau_mem = c K^b: a joint binomial likelihood over every (K, snapshot)
  count, the memorized fraction at K a logistic in ln t centred at ln c + b ln K with its own
  width per K (free, down to a step). Each K's profile over its width is the one the per-K fit
  uses (``transition.profile_loglik``); the profile of b maximises their sum over c, and the
  interval is ``2 (l_max - l(b)) <= phi chi2_1``; with several seeds it is widened to hold the t
  interval of the per-seed fitted b (seed spread that differs per K is not in phi: measured,
  the pooled interval alone covered 0.67 of runs in such a world). A K whose memorized fraction never exceeds 1/2 by the
  last snapshot (or already does at the first) is *censored*; by default it stays in the
  likelihood as the bound it is (its profile is flat beyond the snapshots, so it only excludes
  lines that would put its tau inside the measured range); ``censored="exclude"`` drops it.
  ``tests/unit/analysis/test_phase.py`` checks the coverage on simulated worlds with a known b, with and
  without censored K.
* **reproducibility** at K: the fraction of twin pairs with ``d_twin < delta_m`` (mean over
  seeds of the per-seed fraction), exact / hierarchical-bootstrap interval like a label fraction.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy import stats as sps

from .. import onset
from .fractions import group_keys, interval_curves
from .load import LABELS, read_table, study_thresholds, with_axes
from .summaries import fractions_crossing, transition_summary
from .transition import fraction_intervals, lr_interval, overdispersion, profile_loglik

# The exponent's grids: b from B_MIN to B_MAX (an interval reaching an end is open: -inf / inf);
# each K's tau profile reaches T_PAD (in ln t) beyond the snapshots, where a step's likelihood
# is flat (a censored K's bound), and is held constant past that.
B_MIN, B_MAX, N_B_COARSE, N_B = -4.0, 6.0, 121, 101
T_PAD = 3.0
N_T = 301


# -- the axes ---------------------------------------------------------------------------------

def has_axes(fractions: pd.DataFrame | None, twins: pd.DataFrame | None = None) -> bool:
    """Whether a study has more than one snapshot or variant, or a twins table: the report's
    phase-diagram section is drawn only then."""
    fr = with_axes(fractions)
    many = len(fr) > 0 and (fr["images_seen"].nunique() > 1 or fr["variant"].nunique() > 1)
    return bool(many or (twins is not None and len(twins) > 0))


def params_of(runs: pd.DataFrame | None) -> pd.DataFrame:
    """Per (study,) variant: its parameter count from the ``runs`` table (NaN where unknown)."""
    runs = with_axes(runs)
    keys = [c for c in ("study",) if c in runs] + ["variant"]
    if runs.empty:
        return pd.DataFrame(columns=[*keys, "params"])
    if "params" not in runs:
        runs["params"] = np.nan
    return runs.groupby(keys, as_index=False)["params"].max()


def final_snapshots(fr: pd.DataFrame) -> pd.DataFrame:
    """The rows of each variant's last snapshot (its trained model)."""
    keys = [c for c in ("study",) if c in fr] + ["variant"]
    last = fr.groupby(keys)["images_seen"].transform("max")
    return fr[fr["images_seen"] == last]


# -- 1. the phase diagram ---------------------------------------------------------------------

def phase_table(fractions: pd.DataFrame, null_fractions: pd.DataFrame | None = None,
                runs: pd.DataFrame | None = None, level: float = 0.95, n_boot: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """Per (study, metric, variant, images_seen, K): each fraction (mean over seeds) with its
    ``level`` interval (:func:`raystudy.analysis.fractions.interval_curves`), the null's fractions
    (``null_<label>``, NaN where not computed) and the variant's ``params``."""
    fr = with_axes(fractions)
    if fr.empty:
        return pd.DataFrame()
    rows = []
    for (variant, t), g in fr.groupby(["variant", "images_seen"], sort=True):
        ic = interval_curves(g.drop(columns=["variant", "images_seen"]), level, n_boot, seed)
        ic.insert(0, "variant", variant)
        ic.insert(1, "images_seen", int(t))
        rows.append(ic)
    out = pd.concat(rows, ignore_index=True)
    keys = group_keys(out)
    nf = with_axes(null_fractions)
    if len(nf):
        nf = nf[nf["n"] > 0]
        nm = nf.groupby([*keys, "variant", "images_seen", "K"], as_index=False)[list(LABELS)].mean()
        out = out.merge(nm.rename(columns={lab: f"null_{lab}" for lab in LABELS}),
                        on=[*keys, "variant", "images_seen", "K"], how="left")
    for lab in LABELS:
        if f"null_{lab}" not in out:
            out[f"null_{lab}"] = np.nan
    pp = params_of(runs)
    out = out.merge(pp, on=[c for c in ("study", "variant") if c in pp and c in out], how="left") \
        if len(pp) else out.assign(params=np.nan)
    lead = [*keys, "variant", "params", "images_seen", "K"]
    return out[lead + [c for c in out.columns if c not in lead]] \
        .sort_values(lead[:1] + ["metric", "variant", "images_seen", "K"] if "study" in out else
                     ["metric", "variant", "images_seen", "K"]).reset_index(drop=True)


# -- 2. tau_mem(K) ----------------------------------------------------------------------------

def _censoring(g: pd.DataFrame, q: float) -> str:
    """'' (crossed inside the snapshots), 'before' (memorized > q already at the first
    snapshot), 'after' (never above q at any snapshot): pooled over seeds."""
    t, at = np.unique(g["images_seen"].to_numpy(), return_inverse=True)
    n = g["n"].to_numpy(float)
    pooled = np.bincount(at, n * g["memorized"].to_numpy(float)) / np.bincount(at, n)
    if not (pooled > q).any():
        return "after"
    if pooled[0] > q:
        return "before"
    return ""


def tau_mem(fractions: pd.DataFrame, q: float = 0.5, level: float = 0.95, n_boot: int = 1000,
            seed: int = 0) -> pd.DataFrame:
    """Per (study, metric, variant, K): ``tau`` (images seen at which the memorized fraction
    first exceeds ``q``), ``tau_lo`` / ``tau_hi`` (its interval: profile likelihood of the
    logistic in ln t clipped to the bracket), ``tau_bracket_lo`` / ``_hi`` (the snapshots
    significantly below / above q; 0 / inf when open), ``tau_resolved`` (a snapshot inside the
    bracket), ``tau_width`` (in ln t), ``censored`` ('before' / 'after' / '') and the snapshot
    range ``t_min`` / ``t_max``. Only K measured at two or more snapshots."""
    fr = with_axes(fractions)
    keys = group_keys(fr)
    rows = []
    for gkey, g in fr.groupby([*keys, "variant", "K"], sort=True):
        if g["images_seen"].nunique() < 2:
            continue
        c = fractions_crossing(g, "memorized", q, level, n_boot, seed, axis="images_seen", increasing=True)
        row = dict(zip([*keys, "variant", "K"], gkey))
        row.update(c.columns("tau"))
        row.update(t_min=int(g["images_seen"].min()), t_max=int(g["images_seen"].max()),
                   n_snapshots=int(g["images_seen"].nunique()), n_seeds=int(g["seed"].nunique()),
                   censored=_censoring(g, q))
        rows.append(row)
    return pd.DataFrame(rows)


def _tau_cells(g: pd.DataFrame) -> tuple[np.ndarray, list, tuple]:
    """Per K of one (metric, variant): (ks, per K (x, m, n) pooled over seeds with x = -ln t,
    per-cell per-seed counts and sizes for the overdispersion). The fraction rises with t: the
    decreasing logistic of transition.py in -ln t, with x_q = -ln tau."""
    ks, cells, counts, ns = [], [], [], []
    g = g.assign(_m=np.rint(g["n"].to_numpy(float) * g["memorized"].to_numpy(float)), _n=g["n"].astype(float))
    for k, h in g.groupby("K", sort=True):
        cell = h.groupby("images_seen", sort=True)[["_m", "_n"]].sum()
        ks.append(float(k))
        cells.append((-np.log(cell.index.to_numpy(float)), cell["_m"].to_numpy(), cell["_n"].to_numpy()))
        for _, c in h.groupby("images_seen", sort=True):
            counts.append(c["_m"].to_numpy())
            ns.append(c["_n"].to_numpy())
    return np.array(ks), cells, (counts, ns)


def exponent_fit(ks, cells, lnt, level: float = 0.95, phi: float = 1.0, q: float = 0.5) -> dict:
    """The exponent b of ln tau_K = a + b (ln K - mean ln K), from each K's counts ``cells``
    ((x = -ln t, m, n) per K) and a grid ``lnt`` of ln tau: ``b``, ``b_lo`` / ``b_hi`` (-inf / inf
    where the interval reaches B_MIN / B_MAX), ``c`` (tau at K = 1) and the profile of b.

    The joint log-likelihood at (a, b) is the sum over K of that K's profile over its own width
    at ln tau_K = a + b d_K (``transition.profile_loglik``). Its maximum over a is found on ``lnt`` with
    the profiles interpolated, then refined by a parabola through the exact profiles
    (a linear interpolation between grid points loses ~0.02 per K at n = 200 x 6 snapshots, which
    adds up over K to a visible error in the likelihood ratio)."""
    lk = np.log(np.asarray(ks, float))
    d = lk - lk.mean()
    profiles = [profile_loglik(-lnt, x, m, n, q)[0] for x, m, n in cells]
    # a (ln tau at the mean ln K) on the profiles' grid: a line whose middle K has its tau beyond
    # T_PAD outside the snapshots is one the data cannot tell from a step anyway
    a_grid = lnt
    step = lnt[1] - lnt[0]
    thr = phi * sps.chi2.ppf(level, 1)

    def on_grid(b):  # the profile over a at each b, from the interpolated profiles
        out = np.zeros((len(b), len(a_grid)))
        for di, p in zip(d, profiles):
            out += np.interp(a_grid[None, :] + b[:, None] * di, lnt, p)
        return out.max(1), a_grid[out.argmax(1)]

    def exact(a, b):
        return sum(profile_loglik(-(a + b * di), x, m, n, q)[0] for di, (x, m, n) in zip(d, cells))

    def refined(b):  # a parabola through the exact profile at the grid's best a and its neighbours
        _, a0 = on_grid(b)
        lm, l0, lp = exact(a0 - step, b), exact(a0, b), exact(a0 + step, b)
        curv = lm - 2 * l0 + lp
        shift = np.where(curv < 0, 0.5 * step * (lm - lp) / np.where(curv < 0, curv, -1.0), 0.0)
        a = a0 + np.clip(shift, -step, step)
        ll = exact(a, b)
        better = ll >= l0
        return np.where(better, ll, l0), np.where(better, a, a0)

    # a coarse grid of b finds the accepted region, a fine one its edges
    coarse = np.linspace(B_MIN, B_MAX, N_B_COARSE)
    pc, _ = on_grid(coarse)
    ok = np.flatnonzero(2 * (pc.max() - pc) <= thr + 1.0)  # + 1: room for the interpolation's error
    bs = np.linspace(coarse[max(ok[0] - 1, 0)], coarse[min(ok[-1] + 1, N_B_COARSE - 1)], N_B)
    pb, ab = refined(bs)
    b_lo, b_hi, i0, i1 = lr_interval(bs, 2 * (pb.max() - pb), thr)
    if i0 == 0 and bs[0] <= B_MIN:  # accepted at the whole range's end: open
        b_lo = -np.inf
    if i1 == N_B - 1 and bs[-1] >= B_MAX:
        b_hi = np.inf
    # on a flat ridge (sharp, unresolved transitions) every b of the ridge is a maximum: take its middle
    best = np.flatnonzero(pb >= pb.max() - 1e-3)
    ib = int(best[len(best) // 2])
    b = float(bs[ib])
    return {"b": b, "b_lo": b_lo, "b_hi": b_hi, "c": float(np.exp(ab[ib] - b * lk.mean())),
            "phi": float(phi), "profile_b": bs, "profile_ll": pb}


def tau_exponent(fractions: pd.DataFrame, q: float = 0.5, level: float = 0.95,
                 censored: str = "bounds") -> pd.DataFrame:
    """Per (study, metric, variant): the fitted ``b`` of tau_mem = c K^b with its ``level``
    interval ``b_lo`` / ``b_hi`` (see the module docstring; with several seeds it also holds
    the t interval of the per-seed fitted b), ``b_fit_lo`` / ``_hi`` (the pooled profile
    interval alone), ``c``, ``phi`` (the seeds' overdispersion over every cell), ``n_K`` (K in
    the fit), ``n_seeds`` and ``censored_K`` (K whose
    memorized fraction never exceeds ``q`` in the snapshots, or already does at the first).
    ``censored="bounds"``: those K stay in the likelihood as the one-sided bounds they are;
    ``"exclude"``: they are left out. Rows only where two or more K (with two or more
    snapshots each) remain."""
    if censored not in ("bounds", "exclude"):
        raise ValueError(f"censored must be 'bounds' or 'exclude', not {censored!r}")
    fr = with_axes(fractions)
    keys = group_keys(fr)
    rows = []
    for gkey, g in fr.groupby([*keys, "variant"], sort=True):
        nt = g.groupby("K")["images_seen"].nunique()
        g = g[g["K"].isin(nt.index[nt >= 2])]
        cens = {k: _censoring(h, q) for k, h in g.groupby("K")}
        cens_k = [int(k) for k, v in cens.items() if v]
        if censored == "exclude":
            g = g[~g["K"].isin(cens_k)]
        if g["K"].nunique() < 2:
            continue
        t = g["images_seen"].to_numpy(float)
        lnt = np.linspace(np.log(t.min()) - T_PAD, np.log(t.max()) + T_PAD, N_T)
        ks, cells, (counts, ns) = _tau_cells(g)
        fit = exponent_fit(ks, cells, lnt, level, overdispersion(counts, ns), q)
        b_lo, b_hi = fit["b_lo"], fit["b_hi"]
        seeds = sorted(g["seed"].unique())
        if len(seeds) > 1:
            # as for the K crossing: a seed is one draw of the training run, and seed-to-seed
            # spread that differs per K moves b beyond what the pooled counts' phi says, so the
            # interval also holds the t interval (S - 1 df) of the per-seed fitted b
            per_seed = np.array([exponent_fit(*_tau_cells(g[g["seed"] == s])[:2], lnt, level, 1.0, q)["b"]
                                 for s in seeds])
            half = sps.t.ppf((1 + level) / 2, len(seeds) - 1) * per_seed.std(ddof=1) / np.sqrt(len(seeds))
            b_lo, b_hi = min(b_lo, per_seed.mean() - half), max(b_hi, per_seed.mean() + half)
        row = dict(zip([*keys, "variant"], gkey if isinstance(gkey, tuple) else (gkey,)))
        row.update({k: v for k, v in fit.items() if not k.startswith("profile")})
        row.update(b_lo=float(b_lo), b_hi=float(b_hi), b_fit_lo=fit["b_lo"], b_fit_hi=fit["b_hi"], n_K=len(ks),
                   n_seeds=len(seeds), censored_K=",".join(map(str, cens_k)), censoring=censored)
        rows.append(row)
    return pd.DataFrame(rows)


# -- 3. the crossing K per snapshot and per variant -------------------------------------------

def crossings_by_axis(fractions: pd.DataFrame, runs: pd.DataFrame | None = None, level: float = 0.95,
                      n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """:func:`raystudy.analysis.summaries.transition_summary` (the crossing K with its interval and
    bracket, EMM, the spurious peak) per (variant, images_seen), with the variant's ``params``
    and ``final`` (the variant's last snapshot)."""
    fr = with_axes(fractions)
    if fr.empty:
        return pd.DataFrame()
    rows = []
    for (variant, t), g in fr.groupby(["variant", "images_seen"], sort=True):
        sm = transition_summary(fractions=g.drop(columns=["variant", "images_seen"]), n_boot=n_boot, level=level,
                                seed=seed)
        sm.insert(0, "variant", variant)
        sm.insert(1, "images_seen", int(t))
        rows.append(sm)
    out = pd.concat(rows, ignore_index=True)
    pp = params_of(runs)
    out = out.merge(pp, on=[c for c in ("study", "variant") if c in pp and c in out], how="left") \
        if len(pp) else out.assign(params=np.nan)
    last = out.groupby([c for c in ("study", "variant") if c in out])["images_seen"].transform("max")
    out["final"] = out["images_seen"] == last
    return out


# -- 4. the onset from the losses -------------------------------------------------------------

def tau_gap(loss_curves: pd.DataFrame | None, level: float = 0.95) -> pd.DataFrame:
    """Per run (study, variant, K, seed; twin 0) of a ``loss_curves`` table: ``tau_gap`` (images
    seen at which the held-out gap opened, :func:`raystudy.onset.gap_onset`; NaN when censored),
    ``tau_gap_lo`` / ``tau_gap_hi`` (:func:`raystudy.onset.onset_bracket`: from the evaluation
    after the last one whose relative gap is significantly below 1/2 to the first whose gap is
    significantly above it; inf where none is), ``censored``, ``open_at_start`` (open at
    the first two evaluations already: tau_gap is an upper bound), ``gap_timestep`` (the noise
    level whose z led at the onset), the evaluations' range ``t_min`` / ``t_max``, ``n_evals`` and
    the final ``gap`` (held-out minus training loss, mean over levels, at the last evaluation)."""
    lc = with_axes(loss_curves)
    cols = ["variant", "K", "seed", "tau_gap", "tau_gap_lo", "tau_gap_hi", "censored", "open_at_start", "gap_timestep",
            "t_min", "t_max", "n_evals", "gap"]
    if lc.empty:
        return pd.DataFrame(columns=cols)
    keys = [c for c in ("study",) if c in lc] + ["variant", "K", "seed"]
    rows = []
    for gkey, g in lc.groupby(keys, sort=True):
        g = g.sort_values(["images_seen", "level"])
        t = np.unique(g["images_seen"].to_numpy())
        n_lev = g["level"].nunique()
        if len(t) < 3 or len(g) != len(t) * n_lev:
            continue
        tr = np.stack(g["train_losses"].map(np.asarray).to_list()).reshape(len(t), n_lev, -1)
        ho = np.stack(g["held_out_losses"].map(np.asarray).to_list()).reshape(len(t), n_lev, -1)
        o = onset.gap_onset(t, tr, ho)
        lo, hi = onset.onset_bracket(t, tr, ho, level, tau=o["tau_gap"])
        ts = g["timestep"].to_numpy().reshape(len(t), n_lev)[0]
        last = g[g["images_seen"] == t[-1]]
        rows.append({**dict(zip(keys, gkey)), "tau_gap": o["tau_gap"], "tau_gap_lo": lo, "tau_gap_hi": hi,
                     "censored": o["censored"], "open_at_start": o["open_at_start"],
                     "gap_timestep": int(ts[o["level"]]) if not o["censored"] else -1,
                     "t_min": int(t[0]), "t_max": int(t[-1]), "n_evals": len(t),
                     "gap": float((last["held_out_loss"] - last["train_loss"]).mean())})
    return pd.DataFrame(rows, columns=[c for c in ("study",) if c in lc] + cols)


def onset_relation(gaps: pd.DataFrame, taus: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """tau_gap beside tau_mem: per (study, metric, variant), over the K where both are measured
    (``gaps``: :func:`tau_gap`, its ln averaged over seeds; ``taus``: :func:`tau_mem`):
    ``ratio`` = tau_mem / tau_gap as the geometric mean over the K where neither is censored, with
    ``ratio_lo`` / ``ratio_hi`` a t interval of ln(ratio) over those K (the spread across K; each
    tau's own interval is not carried into it; NaN below 2 K), ``n_k`` those K, and
    ``gap_first`` / ``n_ordered``: of the K where the order is known (a censored tau is a bound),
    how many had the gap open first."""
    out_cols = ["metric", "variant", "ratio", "ratio_lo", "ratio_hi", "n_k", "gap_first", "n_ordered"]
    if gaps is None or taus is None or len(gaps) == 0 or len(taus) == 0:
        return pd.DataFrame(columns=out_cols)
    study = [c for c in ("study",) if c in gaps and c in taus]
    g = gaps.assign(ln_gap=np.log(gaps["tau_gap"].astype(float)))
    g = g.groupby([*study, "variant", "K"], as_index=False).agg(
        ln_gap=("ln_gap", "mean"), gap_censored=("censored", "any"), gap_before=("open_at_start", "any"),
        t_max_gap=("t_max", "max"), t_min_gap=("t_min", "min"))
    m = taus.merge(g, on=[*study, "variant", "K"], how="inner")
    rows = []
    for gkey, h in m.groupby([*study, "metric", "variant"], sort=True):
        both = h[(h["censored"] == "") & ~h["gap_censored"] & ~h["gap_before"]]
        lr = np.log(both["tau"].to_numpy(float)) - both["ln_gap"].to_numpy(float)
        lr = lr[np.isfinite(lr)]
        if len(lr) >= 2:
            se = lr.std(ddof=1) / np.sqrt(len(lr))
            q = sps.t.ppf((1 + level) / 2, len(lr) - 1)
            ratio, lo, hi = np.exp(lr.mean()), np.exp(lr.mean() - q * se), np.exp(lr.mean() + q * se)
        else:
            ratio, lo, hi = (float(np.exp(lr[0])) if len(lr) else np.nan), np.nan, np.nan
        first = ordered = 0
        for r in h.itertuples():
            # Each tau as the range it is known to lie in: a censored one is a bound.
            gap = ((r.t_max_gap, np.inf) if r.gap_censored else (0.0, r.t_min_gap) if r.gap_before
                   else (np.exp(r.ln_gap),) * 2)
            mem = {"before": (0.0, r.t_min), "after": (r.t_max, np.inf)}.get(r.censored, (r.tau, r.tau))
            first += gap[1] < mem[0]
            ordered += gap[1] < mem[0] or mem[1] < gap[0] or (gap[0] == gap[1] == mem[0] == mem[1])
        rows.append({**dict(zip([*study, "metric", "variant"], gkey)), "ratio": float(ratio), "ratio_lo": float(lo),
                     "ratio_hi": float(hi), "n_k": int(len(lr)), "gap_first": int(first), "n_ordered": int(ordered)})
    return pd.DataFrame(rows, columns=[*study, *out_cols])


def images_at(v: float, t_max: float) -> str:
    """An end of tau_gap's bracket in words: its images seen, or "beyond" the last evaluation."""
    return f"beyond {t_max:,.0f}" if not np.isfinite(v) else f"{v:,.0f}"


def onset_words(run) -> str:
    """One run's onset (a row of :func:`tau_gap`) in words: "the held-out gap opened at 2,048
    images (640-2,560)" (its bracket, :func:`tau_gap`; an end beyond the last evaluation is
    "beyond" it) or "the held-out gap did not open by 3,840 images"."""
    if run.censored:
        return f"the held-out gap did not open by {run.t_max:,.0f} images"
    if getattr(run, "open_at_start", False):
        return f"the held-out gap was already open at the first evaluation ({run.t_min:,.0f} images)"
    return (f"{onset.message(run.tau_gap)} ({images_at(run.tau_gap_lo, run.t_max)}-"
            f"{images_at(run.tau_gap_hi, run.t_max)})")


def onset_lines(source, level: float = 0.95) -> list[str]:
    """What ``raystudy show`` says of the loss curves: one line per run of :func:`tau_gap`
    ("K=8 narrow seed 0: the held-out gap opened at ..."; the variant named where there are
    several), after a line saying what the bracket is; [] without loss curves. ``source``: a
    study folder or a ``loss_curves`` frame."""
    lc = read_table(source, "loss_curves") if isinstance(source, (str, os.PathLike)) else source
    gaps = tau_gap(lc, level)
    if gaps.empty:
        return []
    many = {c: c in gaps and gaps[c].nunique() > 1 for c in ("study", "variant")}
    lines = [f"(held-out gap per run, raystudy.onset: in brackets its {level:.0%} bracket: from the "
             "evaluation after the last whose relative gap is significantly below 1/2 to the first significantly above)"]
    for r in gaps.itertuples():
        who = " ".join([*([str(r.study)] if many["study"] else []), f"K={r.K}",
                        *([str(r.variant)] if many["variant"] else []), f"seed {r.seed}"])
        lines.append(f"{who}: {onset_words(r)}")
    return lines


# -- 5. twins ---------------------------------------------------------------------------------

def reproducibility(twins: pd.DataFrame, delta_m: dict | None = None, level: float = 0.95,
                    n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per (study, metric, variant, images_seen, K): ``reproducible`` (mean over seeds of the
    fraction of twin pairs with ``d_twin < delta_m[metric]``) with its ``level`` interval
    (exact with one seed, hierarchical bootstrap with several), ``n`` pairs, ``median_d_twin``
    and the medians of each twin's distance to its own training set (``median_d_own``) and to
    the other's (``median_d_other``), pooled over both twins. ``delta_m``: per metric (default
    :data:`raystudy.compute.classify.DELTA_M`)."""
    dm, _ = study_thresholds({"classify": {"delta_m": delta_m}})
    tw = with_axes(twins)
    if tw.empty:
        return pd.DataFrame()
    missing = sorted(set(tw["metric"]) - set(dm))
    if missing:
        raise ValueError(f"no delta_m for metric(s) {missing}")
    tw["close"] = tw["d_twin"].to_numpy(float) < tw["metric"].map(dm).to_numpy(float)
    keys = group_keys(tw)
    rows = []
    for gkey, g in tw.groupby([*keys, "variant", "images_seen", "K"], sort=True):
        per_seed = g.groupby("seed")["close"].agg(["sum", "size"])
        lo, hi = fraction_intervals([per_seed["sum"].to_numpy(float)], [per_seed["size"].to_numpy(float)],
                                    level, n_boot, seed)
        row = dict(zip([*keys, "variant", "images_seen", "K"], gkey))
        row.update(n=int(len(g)), n_seeds=int(len(per_seed)),
                   reproducible=float((per_seed["sum"] / per_seed["size"]).mean()),
                   reproducible_lo=float(lo[0]), reproducible_hi=float(hi[0]),
                   median_d_twin=float(g["d_twin"].median()),
                   median_d_own=float(np.median(np.concatenate([g["d_own_a"], g["d_own_b"]]))),
                   median_d_other=float(np.median(np.concatenate([g["d_other_a"], g["d_other_b"]]))))
        rows.append(row)
    return pd.DataFrame(rows)


# -- every table of the phase diagram ---------------------------------------------------------

def phase_tables(st, level: float = 0.95, n_boot: int = 1000) -> dict[str, pd.DataFrame]:
    """The phase diagram of loaded studies (:func:`raystudy.analysis.load`, every checkpoint), by
    name: ``phase`` (:func:`phase_table`), ``tau_mem``, ``tau_exponent``, ``crossings_by_axis``
    and ``reproducibility`` (each study's own ``classify.delta_m``; empty without twins). {} when
    no study has more than one snapshot or variant, nor a twins table (:func:`has_axes`)."""
    twins = st.frames.get("twins")
    fr = st.frames.get("fractions")
    if not has_axes(fr, twins):
        return {}
    fr = with_axes(fr)
    runs = st.frames.get("runs")
    rep = pd.DataFrame()
    if twins is not None and len(twins):
        parts = [reproducibility(g, study_thresholds(st.configs.get(s))[0], level, n_boot).assign(study=s)
                 if "study" in g else
                 reproducibility(g, None, level, n_boot) for s, g in
                 (twins.groupby("study") if "study" in twins else [(None, twins)])]
        rep = pd.concat(parts, ignore_index=True)
        rep = rep[["study", *[c for c in rep.columns if c != "study"]]] if "study" in rep else rep
    taus = tau_mem(fr, level=level, n_boot=n_boot)
    gaps = tau_gap(st.frames.get("loss_curves"), level)
    return {"phase": phase_table(fr, st.frames.get("null_fractions"), runs, level, n_boot),
            "tau_mem": taus, "tau_gap": gaps, "onset_relation": onset_relation(gaps, taus, level),
            "tau_exponent": tau_exponent(fr, level=level),
            "crossings_by_axis": crossings_by_axis(fr, runs, level, n_boot),
            "reproducibility": rep}


__all__ = ["has_axes", "params_of", "final_snapshots", "phase_table", "tau_mem", "tau_gap", "onset_relation", "images_at",
           "onset_words", "onset_lines", "tau_exponent", "exponent_fit", "crossings_by_axis", "reproducibility", "phase_tables"]
