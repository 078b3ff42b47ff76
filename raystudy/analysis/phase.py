"""The phase diagram: the transition over training time (snapshots), model size (variants) and
twin models, from the tables alone (numpy, scipy, pandas; matplotlib only when drawing).

Every function returns a DataFrame, so a notebook reads the same numbers the report draws::

    from raystudy.analysis import load, phase
    st = load("studies/digits-phase")
    phase.phase_table(st.fractions, st.null_fractions, st.runs)   # fractions over K x time x variant
    phase.tau_mem(st.fractions)                                   # per K: when memorized first exceeds 1/2
    phase.tau_exponent(st.fractions)                              # tau_mem = c K^b: b and its interval
    phase.crossings_by_axis(st.fractions, st.runs)                # crossing K per snapshot and variant
    phase.reproducibility(st.twins, {"l2": 0.1})                  # twin agreement per K

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
  uses (``transition._profile``); the profile of b maximises their sum over c, and the interval
  is ``2 (l_max - l(b)) <= phi chi2_1``; with several seeds it is widened to hold the t
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

import html

import numpy as np
import pandas as pd
from scipy import stats as sps

from .figures import COLORS as LABEL_COLORS
from .figures import STUDY_COLORS as COLORS
from .load import LABELS, study_thresholds
from .stats import _crossing, format_k, interval_curves, k_range, transition_summary
from .transition import _profile, fraction_intervals, lr_interval, overdispersion

# The exponent's grids: b from B_MIN to B_MAX (an interval reaching an end is open: -inf / inf);
# each K's tau profile reaches T_PAD (in ln t) beyond the snapshots, where a step's likelihood
# is flat (a censored K's bound), and is held constant past that.
B_MIN, B_MAX, N_B_COARSE, N_B = -4.0, 6.0, 121, 101
T_PAD = 3.0
N_T = 301


# -- the axes ---------------------------------------------------------------------------------

def with_axes(df: pd.DataFrame | None) -> pd.DataFrame:
    """``df`` with ``variant`` and ``twin`` where absent or null taking the values of a row written
    without them (``raystudy.tables.pre_axis_values``: "base", 0), only the first model of twins
    kept (``twin == 0``), and ``images_seen``. A study's tables always have ``images_seen`` (a part
    written before snapshots reads as its study's train.images); a frame without the column
    records no train.images, so its one checkpoint per variant is keyed 0."""
    from ..tables import pre_axis_values

    if df is None:
        return pd.DataFrame()
    fill = pre_axis_values(None)
    df = df.copy()
    if "variant" not in df:
        df["variant"] = fill["variant"]
    df["variant"] = df["variant"].fillna(fill["variant"]).astype(str)
    if "images_seen" not in df:
        df["images_seen"] = 0
    if "twin" in df:
        df = df[df["twin"].fillna(fill["twin"]).astype(int) == 0].drop(columns="twin")
    return df


def _keys(df: pd.DataFrame) -> list[str]:
    return [c for c in ("study", "metric") if c in df.columns]


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


def main_view(st):
    """(the studies restricted to one model, ``Studies.main``: each study's first variant at its
    final snapshot, first model of twins (``raystudy.axes.main_checkpoint``); a sentence
    saying so, or '' when there was nothing to restrict). The report's transition figures and
    summary are of this view, so snapshots and variants are never pooled into one curve."""
    fr = st.frames.get("fractions")
    if fr is None or fr.empty:
        fr = st.frames.get("labels")
    if fr is None or fr.empty or not any(c in fr for c in ("variant", "images_seen", "twin")):
        return st, ""
    from ..axes import main_checkpoint

    # One rule for "the main model" (raystudy.axes.main_checkpoint, as Studies.main applies it):
    # this only adds the sentence that says which model the one-curve figures show.
    fr = with_axes(fr)
    said = []
    for s, g in fr.groupby("study", sort=False) if "study" in fr else [(None, fr)]:
        m = main_checkpoint(st.configs.get(s) if s is not None else None)
        if g["variant"].nunique() > 1 or g["images_seen"].nunique() > 1:
            said.append(f"{s + ': ' if s is not None else ''}variant {m['variant']} at its final snapshot "
                        f"({m['images_seen']} images seen)")
    note = ("The transition figures and summary show " + "; ".join(said) +
            "; every snapshot and variant is in the phase diagram section.") if said else ""
    return st.main(), note


# -- 1. the phase diagram ---------------------------------------------------------------------

def phase_table(fractions: pd.DataFrame, null_fractions: pd.DataFrame | None = None,
                runs: pd.DataFrame | None = None, level: float = 0.95, n_boot: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """Per (study, metric, variant, images_seen, K): each fraction (mean over seeds) with its
    ``level`` interval (:func:`raystudy.analysis.stats.interval_curves`), the null's fractions
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
    keys = _keys(out)
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
    keys = _keys(fr)
    rows = []
    for gkey, g in fr.groupby([*keys, "variant", "K"], sort=True):
        if g["images_seen"].nunique() < 2:
            continue
        c = _crossing(g, "memorized", q, level, n_boot, seed, axis="images_seen", increasing=True)
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
    at ln tau_K = a + b d_K (``transition._profile``). Its maximum over a is found on ``lnt`` with
    the profiles interpolated, then refined by a parabola through the exact profiles
    (a linear interpolation between grid points loses ~0.02 per K at n = 200 x 6 snapshots, which
    adds up over K to a visible error in the likelihood ratio)."""
    lk = np.log(np.asarray(ks, float))
    d = lk - lk.mean()
    profiles = [_profile(-lnt, x, m, n, q)[0] for x, m, n in cells]
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
        return sum(_profile(-(a + b * di), x, m, n, q)[0] for di, (x, m, n) in zip(d, cells))

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
    keys = _keys(fr)
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
    """:func:`raystudy.analysis.stats.transition_summary` (the crossing K with its interval and
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


# -- 4. twins ---------------------------------------------------------------------------------

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
    keys = _keys(tw)
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


# -- figures ----------------------------------------------------------------------------------

def _plt():
    import matplotlib.pyplot as plt

    return plt


def _grid(ax, piv: pd.DataFrame, title: str, ylabel: str, fmt_y=lambda v: f"{v:.3g}"):
    """One heatmap cell per (row value, K): the fraction, written in the cell; white: not measured."""
    z = piv.to_numpy(float)
    im = ax.imshow(z, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            if np.isfinite(z[i, j]):
                ax.text(j, i, f"{z[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="w" if z[i, j] < 0.6 else "k")
    ax.set_xticks(range(z.shape[1]), [str(int(k)) for k in piv.columns], fontsize=7)
    ax.set_yticks(range(z.shape[0]), [fmt_y(v) for v in piv.index], fontsize=7)
    ax.set_xlabel("training-set size K", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=8)
    return im


PANELS = (("memorized", "memorized"), ("spurious", "spurious"), ("generalized", "generalized"),
          ("null_memorized", "null: held-out memorized (chance)"))


def phase_figure(pt: pd.DataFrame, tau: pd.DataFrame | None = None):
    """Heatmaps of each fraction over K (columns) x images seen (rows), one row of panels per
    (study, metric, variant); on the memorized panel, tau_mem per K (cyan: the crossing placed
    between the snapshot rows in ln t; triangles: censored K at the edge they pass). None without
    two snapshots anywhere."""
    plt = _plt()
    if pt.empty or pt["images_seen"].nunique() < 2:
        return None
    keys = [*_keys(pt), "variant"]
    groups = list(pt.groupby(keys, sort=True))
    fig, axes = plt.subplots(len(groups), len(PANELS), figsize=(3.7 * len(PANELS), 3.0 * len(groups) + 0.6),
                             squeeze=False, layout="constrained")
    im = None
    for r, (gkey, g) in enumerate(groups):
        gk = gkey if isinstance(gkey, tuple) else (gkey,)
        name = " · ".join(map(str, gk))
        for c, (col, what) in enumerate(PANELS):
            piv = g.pivot_table(index="images_seen", columns="K", values=col, aggfunc="mean")
            if piv.isna().all().all():
                axes[r][c].text(0.5, 0.5, f"{what}: not computed", ha="center", va="center",
                                transform=axes[r][c].transAxes, fontsize=8)
                axes[r][c].set_axis_off()
                continue
            im = _grid(axes[r][c], piv, f"{name}: {what}", "images seen (snapshot)" if c == 0 else "")
            if c == 0 and tau is not None and len(tau):
                sel = np.ones(len(tau), bool)
                for k_, v in zip(keys, gk):
                    sel &= (tau[k_] == v).to_numpy()
                _tau_on_grid(axes[r][c], tau[sel], list(piv.columns), np.log(piv.index.to_numpy(float)))
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="fraction of samples")
    fig.suptitle("Phase diagram: fraction of samples over K x training time (per variant and metric); "
                 "cyan: tau_mem, where memorized first exceeds 1/2", fontsize=10)
    return fig


def _tau_on_grid(ax, tau: pd.DataFrame, ks: list, lnt: np.ndarray) -> None:
    rows = np.arange(len(lnt))
    xs, ys = [], []
    for t in tau.itertuples():
        if t.K not in ks:
            continue
        j = ks.index(t.K)
        if t.censored == "after":
            ax.plot([j], [rows[-1] + 0.4], marker="^", color="cyan", mec="k", ms=7, ls="none")
        elif t.censored == "before":
            ax.plot([j], [-0.4], marker="v", color="cyan", mec="k", ms=7, ls="none")
        elif np.isfinite(t.tau) and t.tau > 0:
            xs.append(j)
            ys.append(float(np.interp(np.log(t.tau), lnt, rows)))
    if xs:
        ax.plot(xs, ys, "o-", color="cyan", mec="k", ms=5, lw=1.2)


def _tau_text(t) -> str:
    if t.censored == "after":
        return f"> {t.t_max} (not memorized by the last snapshot)"
    if t.censored == "before":
        return f"< {t.t_min} (memorized at the first snapshot)"
    if not t.tau_resolved and t.tau_bracket_lo > 0 and np.isfinite(t.tau_bracket_hi):
        return f"between {t.tau_bracket_lo:.3g} and {t.tau_bracket_hi:.3g}"
    return f"{t.tau:.3g} [{t.tau_lo:.3g}, {t.tau_hi:.3g}]"


def size_figure(pt: pd.DataFrame):
    """Heatmaps of each fraction over K x model size (parameters) at each variant's final
    snapshot, one row of panels per (study, metric). None with one variant."""
    plt = _plt()
    if pt.empty or pt["variant"].nunique() < 2:
        return None
    fin = final_snapshots(pt).copy()
    fin["size"] = [f"{v} ({p / 1e3:.0f}k)" if np.isfinite(p) else str(v)
                   for v, p in zip(fin["variant"], fin["params"].astype(float))]
    fin["order"] = fin["params"].astype(float).fillna(0)
    keys = _keys(fin)
    groups = list(fin.groupby(keys, sort=True)) if keys else [((), fin)]
    fig, axes = plt.subplots(len(groups), len(PANELS), figsize=(3.7 * len(PANELS), 2.6 * len(groups) + 0.6),
                             squeeze=False, layout="constrained", sharey="row")
    im = None
    for r, (gkey, g) in enumerate(groups):
        name = " · ".join(map(str, gkey if isinstance(gkey, tuple) else (gkey,)))
        rank = g.groupby("size")["order"].first().sort_values()
        for c, (col, what) in enumerate(PANELS):
            piv = g.pivot_table(index="size", columns="K", values=col, aggfunc="mean").reindex(rank.index)
            if piv.isna().all().all():
                axes[r][c].set_axis_off()
                continue
            # The variants label the row once: repeated tick labels ran into the panel on their left.
            im = _grid(axes[r][c], piv, f"{name}: {what}", "variant (parameters)" if c == 0 else "", fmt_y=str)
            if c:
                axes[r][c].tick_params(labelleft=False)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="fraction of samples")
    fig.suptitle("Phase diagram: fraction of samples over K x model size (final snapshot)", fontsize=10)
    return fig


def tau_figure(tau: pd.DataFrame, expo: pd.DataFrame | None = None):
    """tau_mem vs K on log-log axes, one panel per (study, metric), one colour per variant:
    points and error bars (the interval), triangles for censored K (the bound: above the last
    snapshot / below the first), the fitted c K^b with b and its interval, and slope 1 (dotted,
    Bonnaire et al.). None without tau."""
    plt = _plt()
    if tau is None or tau.empty:
        return None
    keys = _keys(tau)
    groups = list(tau.groupby(keys, sort=True)) if keys else [((), tau)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    for j, (gkey, g) in enumerate(groups):
        ax = axes[0][j]
        gk = gkey if isinstance(gkey, tuple) else (gkey,)
        for i, (variant, h) in enumerate(g.groupby("variant", sort=True)):
            col = COLORS[i % len(COLORS)]
            ok = h[h["censored"] == ""]
            lo = np.clip(ok["tau_lo"].to_numpy(float), ok["t_min"].to_numpy(float) / 3, None)
            hi = np.clip(ok["tau_hi"].to_numpy(float), None, ok["t_max"].to_numpy(float) * 3)
            y = ok["tau"].to_numpy(float)
            ax.errorbar(ok["K"], y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="o", color=col,
                        capsize=3, ms=5, label=f"{variant}: tau_mem")
            for t in h[h["censored"] == "after"].itertuples():
                ax.plot([t.K], [t.t_max], marker="^", color=col, ms=8, ls="none")
            for t in h[h["censored"] == "before"].itertuples():
                ax.plot([t.K], [t.t_min], marker="v", color=col, ms=8, ls="none")
            if expo is not None and len(expo):
                sel = np.ones(len(expo), bool)
                for k_, v in zip([*keys, "variant"], [*gk, variant]):
                    sel &= (expo[k_] == v).to_numpy()
                for e in expo[sel].itertuples():
                    kk = np.geomspace(h["K"].min(), h["K"].max(), 50)
                    ax.plot(kk, e.c * kk ** e.b, "-", color=col, lw=1.2,
                            label=f"{variant}: fit b = {e.b:.2f} [{e.b_lo:.2f}, {e.b_hi:.2f}]")
        kk = np.geomspace(g["K"].min(), g["K"].max(), 50)
        ref = g.loc[g["censored"] == "", "tau"]
        if len(ref):
            k0 = g.loc[ref.index, "K"].astype(float)
            c1 = np.exp(np.mean(np.log(ref.to_numpy(float)) - np.log(k0.to_numpy())))
            ax.plot(kk, c1 * kk, ":", color="0.4", lw=1, label="slope 1 (Bonnaire et al.)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training-set size K")
        ax.set_ylabel("tau_mem: images seen when memorized > 1/2")
        ax.set_title(" · ".join(map(str, gk)) or "tau_mem", fontsize=9)
        ax.grid(alpha=0.3, which="both", lw=0.4)
        ax.legend(fontsize=7)
    fig.text(0.5, -0.02, "bars: 95% interval (logistic in ln t, profile likelihood clipped to the snapshots' bracket);"
             " ▲ not memorized by the last snapshot (tau above it), ▼ memorized at the first (tau below it)",
             ha="center", fontsize=7)
    fig.tight_layout()
    return fig


def crossing_figure(cb: pd.DataFrame):
    """The crossing K (memorized = 1/2) with its interval: vs images seen per variant (left) and
    vs parameter count at the final snapshot (right), one row per (study, metric)."""
    plt = _plt()
    if cb.empty or (cb["images_seen"].nunique() < 2 and cb["variant"].nunique() < 2):
        return None
    keys = _keys(cb)
    groups = list(cb.groupby(keys, sort=True)) if keys else [((), cb)]
    fig, axes = plt.subplots(len(groups), 2, figsize=(11, 3.8 * len(groups)), squeeze=False)
    for r, (gkey, g) in enumerate(groups):
        name = " · ".join(map(str, gkey if isinstance(gkey, tuple) else (gkey,)))
        kmin, kmax = g["K_min"].min(), g["K_max"].max()

        def draw(ax, x, h, col, label, kmin=kmin, kmax=kmax):
            y = np.clip(h["k_cross"].to_numpy(float), kmin / 2, kmax * 2)
            lo = np.clip(h["k_cross_lo"].to_numpy(float), kmin / 2, kmax * 2)
            hi = np.clip(h["k_cross_hi"].to_numpy(float), kmin / 2, kmax * 2)
            ax.errorbar(x, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="o-", color=col, capsize=3,
                        label=label)

        ax = axes[r][0]
        for i, (variant, h) in enumerate(g.groupby("variant", sort=True)):
            h = h.sort_values("images_seen")
            draw(ax, h["images_seen"].to_numpy(float), h, COLORS[i % len(COLORS)], str(variant))
        ax.set_xscale("log")
        ax.set_xlabel("images seen (snapshot)")
        ax.set_title(f"{name}: crossing K per snapshot", fontsize=9)
        ax = axes[r][1]
        fin = g[g["final"]].sort_values("params")
        if fin["params"].notna().sum() >= 2:
            draw(ax, fin["params"].to_numpy(float), fin, "tab:blue", "final snapshot")
            for t in fin.itertuples():
                ax.annotate(str(t.variant), (t.params, np.clip(t.k_cross, kmin / 2, kmax * 2)), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
            ax.set_xscale("log")
            ax.set_xlabel("parameters")
        else:
            ax.text(0.5, 0.5, "one variant (or no params in runs)", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{name}: crossing K per model size", fontsize=9)
        for ax in axes[r]:
            ax.set_yscale("log")
            ax.axhspan(kmin / 2, kmin, color="0.9", lw=0)
            ax.axhspan(kmax, kmax * 2, color="0.9", lw=0)
            ax.set_ylabel("K where memorized = 1/2")
            ax.grid(alpha=0.3, which="both", lw=0.4)
            ax.legend(fontsize=7)
    fig.text(0.5, -0.01, "bars: 95% interval (logistic in ln K clipped to the grid's bracket); grey bands: "
             "below the smallest / beyond the largest K", ha="center", fontsize=7)
    fig.tight_layout()
    return fig


def twins_figure(rep: pd.DataFrame, pt: pd.DataFrame | None = None):
    """Twin reproducibility vs K (with its interval) beside the memorized fraction, at each
    variant's final snapshot; the median twin distance on the right axis. One panel per
    (study, metric, variant)."""
    plt = _plt()
    if rep is None or rep.empty:
        return None
    rep = final_snapshots(rep)
    keys = [*_keys(rep), "variant"]
    groups = list(rep.groupby(keys, sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 3.9), squeeze=False)
    fin = final_snapshots(pt) if pt is not None and len(pt) else None
    for j, (gkey, g) in enumerate(groups):
        ax = axes[0][j]
        g = g.sort_values("K")
        ax.plot(g["K"], g["reproducible"], "o-", color="tab:blue", label="reproducible: d_twin < delta_m")
        ax.fill_between(g["K"], g["reproducible_lo"], g["reproducible_hi"], color="tab:blue", alpha=0.15, lw=0)
        if fin is not None:
            sel = np.ones(len(fin), bool)
            for k_, v in zip(keys, gkey):
                sel &= (fin[k_] == v).to_numpy()
            m = fin[sel].sort_values("K")
            if len(m):
                ax.plot(m["K"], m["memorized"], "s--", color=LABEL_COLORS["memorized"], label="memorized")
                ax.fill_between(m["K"], m["memorized_lo"], m["memorized_hi"], color=LABEL_COLORS["memorized"], alpha=0.12, lw=0)
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("training-set size K")
        ax.set_ylabel("fraction")
        ax2 = ax.twinx()
        ax2.plot(g["K"], g["median_d_twin"], "^:", color="0.35", label="median d_twin")
        ax2.set_yscale("log")
        ax2.set_ylabel("median twin distance", color="0.35")
        ax.set_title(" · ".join(map(str, gkey)), fontsize=9)
        ax.grid(alpha=0.3, lw=0.4)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="center left")
    fig.text(0.5, -0.02, "twins: two models trained on disjoint K-sets, sampled from the same noise; bands: 95% "
             "interval (exact over pairs; hierarchical bootstrap over seeds)", ha="center", fontsize=7)
    fig.tight_layout()
    return fig


# -- the report's section ---------------------------------------------------------------------

CAPTIONS = {
    "phase": "Phase diagram: the memorized, spurious, generalized and null (held-out images, chance) fractions "
             "over K (columns) x training time (rows: images seen at each snapshot), one row of panels per "
             "variant and metric; under it, tau_mem per K.",
    "phase_size": "Phase diagram over model size: each fraction over K x variant (rows ordered by parameter count) "
                  "at each variant's final snapshot.",
    "tau_mem": "tau_mem(K): the images seen at which the memorized fraction first exceeds 1/2, per K (log-log), "
               "with its 95% interval (a logistic in ln t, profile likelihood clipped to the bracket of snapshots "
               "significantly below / above 1/2); triangles: censored K (bounds). Line: tau = c K^b from a joint "
               "binomial likelihood over every (K, snapshot), b's 95% profile interval in the legend; dotted: "
               "slope 1, Bonnaire et al.'s prediction.",
    "crossing_axes": "The crossing K (memorized = 1/2) with its 95% interval per snapshot (left) and per model "
                     "size at the final snapshot (right).",
    "twins": "Twin reproducibility: the fraction of twin pairs (two models on disjoint K-sets, same noise) closer "
             "than delta_m, with its 95% interval, beside the memorized fraction, at the final snapshot; dotted: "
             "the median twin distance (right axis).",
}


def _fmt_b(v: float) -> str:
    return "open" if not np.isfinite(v) else f"{v:.2f}"


def section(st, figs, out, level: float = 0.95, n_boot: int = 1000) -> str:
    """Draw the phase-diagram figures into ``figs`` (report._Figures), write their tables as CSV
    into ``out`` and return the page's HTML for them ('' when the study has no axes)."""
    twins = st.frames.get("twins")
    fr = st.frames.get("fractions")
    if not has_axes(fr, twins):
        return ""
    fr = with_axes(fr)
    runs = st.frames.get("runs")
    pt = phase_table(fr, st.frames.get("null_fractions"), runs, level, n_boot)
    tau = tau_mem(fr, level=level, n_boot=n_boot)
    expo = tau_exponent(fr, level=level)
    cb = crossings_by_axis(fr, runs, level, n_boot)
    rep = pd.DataFrame()
    if twins is not None and len(twins):
        parts = [reproducibility(g, study_thresholds(st.configs.get(s))[0], level, n_boot).assign(study=s)
                 if "study" in g else
                 reproducibility(g, None, level, n_boot) for s, g in
                 (twins.groupby("study") if "study" in twins else [(None, twins)])]
        rep = pd.concat(parts, ignore_index=True)
        rep = rep[["study", *[c for c in rep.columns if c != "study"]]] if "study" in rep else rep
    for name, df in (("phase", pt), ("tau_mem", tau), ("tau_exponent", expo), ("crossings_by_axis", cb),
                     ("reproducibility", rep)):
        if len(df):
            from ..tables import write_text

            write_text(out / f"{name}.csv", df.to_csv(index=False))
    sec = "Phase diagram"
    figs.add(phase_figure(pt, tau), "phase", CAPTIONS["phase"], sec)
    figs.add(size_figure(pt), "phase_size", CAPTIONS["phase_size"], sec)
    figs.add(tau_figure(tau, expo), "tau_mem", CAPTIONS["tau_mem"], sec)
    figs.add(crossing_figure(cb), "crossing_axes", CAPTIONS["crossing_axes"], sec)
    figs.add(twins_figure(rep, pt), "twins", CAPTIONS["twins"], sec)
    return section_html(tau, expo, cb, rep, level)


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="", border=0, float_format=lambda v: f"{v:.3g}")


def section_html(tau, expo, cb, rep, level: float = 0.95) -> str:
    """The phase-diagram numbers as HTML: tau_mem per K, the exponent, the crossing K per
    snapshot and variant, twin reproducibility per K."""
    parts = ["<h2 id='phase'>Phase diagram: training time, model size, twins</h2>",
             "<p>Tables beside this page: <code>phase.csv</code>, <code>tau_mem.csv</code>, "
             "<code>tau_exponent.csv</code>, <code>crossings_by_axis.csv</code>, <code>reproducibility.csv</code> "
             "(from <code>raystudy.analysis.phase</code>).</p>"]
    if len(expo):
        items = []
        for e in expo.itertuples():
            name = " · ".join(str(getattr(e, k)) for k in ("study", "metric", "variant") if hasattr(e, k))
            cens = f"; censored K (kept as bounds): {e.censored_K}" if e.censored_K else ""
            items.append(f"<li><b>{html.escape(name)}</b>: tau_mem = c K^b with b = {_fmt_b(e.b)} "
                         f"({level:.0%} interval {_fmt_b(e.b_lo)} to {_fmt_b(e.b_hi)}; {e.n_K} K; overdispersion "
                         f"{e.phi:.2f}{html.escape(cens)})</li>")
        parts.append(f"<ul class='summary'>{''.join(items)}</ul>")
    if len(tau):
        show = tau[[c for c in ("study", "metric", "variant", "K") if c in tau]].copy()
        show["tau_mem"] = [_tau_text(t) for t in tau.itertuples()]
        show["snapshots"] = tau["n_snapshots"]
        parts += ["<h3>tau_mem per K</h3>", _table(show)]
    if len(cb):
        show = cb[[c for c in ("study", "metric", "variant", "params", "images_seen") if c in cb]].copy()
        show["crossing K"] = [
            f"{format_k(r.k_cross, (r.K_min, r.K_max))} [{format_k(r.k_cross_lo, (r.K_min, r.K_max))}, "
            f"{format_k(r.k_cross_hi, (r.K_min, r.K_max))}]" for r in cb.itertuples()]
        show["bracket"] = [k_range(r.k_cross_bracket_lo, r.k_cross_bracket_hi, (r.K_min, r.K_max))
                           for r in cb.itertuples()]
        parts += ["<h3>Crossing K per snapshot and variant</h3>", _table(show)]
    if len(rep):
        show = rep[[c for c in ("study", "metric", "variant", "images_seen", "K", "n") if c in rep]].copy()
        show["reproducible"] = [f"{r.reproducible:.3f} [{r.reproducible_lo:.2f}, {r.reproducible_hi:.2f}]"
                                for r in rep.itertuples()]
        for c in ("median_d_twin", "median_d_own", "median_d_other"):
            show[c] = rep[c]
        parts += ["<h3>Twin reproducibility per K</h3>", _table(show)]
    return "\n".join(parts)


__all__ = ["with_axes", "has_axes", "params_of", "phase_table", "tau_mem", "tau_exponent", "exponent_fit",
           "crossings_by_axis", "reproducibility", "phase_figure", "size_figure", "tau_figure",
           "crossing_figure", "twins_figure", "section", "section_html", "main_view"]
