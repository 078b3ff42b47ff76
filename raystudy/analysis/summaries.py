"""The summary of a transition curve: the crossing K, EMM and the spurious peak, with their
intervals, one row per (study, metric), and the sentence that says it.

Crossing K, EMM and their intervals come from :mod:`raystudy.analysis.transition` (a logistic
fit in log K with a profile-likelihood interval, clipped to the bracket of grid K that are
significantly above / below the level). Linear interpolation in log K between the two grid K
around the crossing is ``k_cross_interp`` (and is what the threshold grid uses): a point, with
no honest interval of its own. By convention :func:`crossing_k` returns 0 when the fraction is
already below 1/2 at the smallest K and ``inf`` when it never falls below it.

:func:`transition_summary` reads one curve per (study, metric) and takes ``checkpoints`` as the
one-curve functions of :mod:`raystudy.analysis.fractions` do; :func:`summary` takes a loaded
study (:func:`raystudy.analysis.load`) and reads each study's main model.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats as sps

from .fractions import (
    CURVE_COLS,
    CURVE_TABLES,
    fractions_of,
    group_keys,
    in_study_order,
    one_curve,
    per_k_counts,
    per_seed_fractions,
)
from .load import Studies
from .transition import Crossing, fit_crossing_along, fit_peak, fraction_intervals, overdispersion, peak_bracket

# -- crossing K and spurious peak --------------------------------------------------------------

def crossings(ks, curves, level: float = 0.5) -> np.ndarray:
    """Crossing K of each curve in ``curves`` (shape (..., len(ks))), log-K interpolation.

    0 where the curve starts below ``level``; inf where it never falls below it."""
    ks = np.asarray(ks, dtype=float)
    f = np.asarray(curves, dtype=float)
    if ks.ndim != 1 or f.shape[-1] != len(ks):
        raise ValueError(f"curves must end in len(ks)={len(ks)}, got shape {f.shape}")
    if len(ks) > 1 and np.any(np.diff(ks) <= 0):
        raise ValueError("ks must be strictly increasing")
    above = f >= level
    out = np.full(f.shape[:-1], np.inf)
    out[~above[..., 0]] = 0.0
    if len(ks) < 2:
        return out
    down = above[..., :-1] & ~above[..., 1:]  # above at K_i, below at K_{i+1}
    has = down.any(-1) & above[..., 0]
    i = np.argmax(down, axis=-1)
    fi = np.take_along_axis(f, i[..., None], -1)[..., 0]
    fj = np.take_along_axis(f, (i + 1)[..., None], -1)[..., 0]
    logk = np.log(ks)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (fi - level) / (fi - fj)
    x = logk[i] + t * (logk[i + 1] - logk[i])
    out[has] = np.exp(x[has])
    return out


def crossing_k(ks, frac, level: float = 0.5) -> float:
    """K where ``frac`` (ordered like ``ks``, ascending) first falls below ``level``,
    interpolated linearly in log K. 0: below already at the smallest K; inf: never below."""
    return float(crossings(ks, frac, level))


def peak(ks, curves) -> tuple[np.ndarray, np.ndarray]:
    """(K at the maximum, the maximum) of each curve (first K on ties)."""
    ks = np.asarray(ks)
    f = np.asarray(curves, dtype=float)
    i = np.argmax(f, axis=-1)
    return ks[i], np.take_along_axis(f, i[..., None], -1)[..., 0]


def format_k(k: float, ks=None) -> str:
    """A K for people: '73', '< 2' (below the smallest K), '> 1797' (beyond the largest)."""
    if k is None or (isinstance(k, float) and math.isnan(k)):
        return "n/a"
    lo, hi = (min(ks), max(ks)) if ks is not None and len(ks) else (None, None)
    if k == 0 or (lo is not None and k < lo):
        return f"< {int(lo)}" if lo is not None else "< K_min"
    if math.isinf(k) or (hi is not None and k > hi):
        return f"> {int(hi)}" if hi is not None else "> K_max"
    return f"{k:.3g}" if k < 100 else f"{k:.0f}"


# -- the summary: crossing K, EMM and spurious peak per study and metric -------------------------

EMM_LEVEL = 0.9  # Gu et al.'s effective model memorization: the largest K still >= 90% memorized


def fractions_crossing(fr: pd.DataFrame, col: str, q: float, level: float, n_boot: int, seed: int,
              axis: str = "K", increasing: bool = False) -> Crossing:
    """The pooled fit's crossing; with several seeds its interval also holds the seeds' own:
    a t interval (S - 1 degrees of freedom) of the per-seed fitted ln K, because a seed is
    one draw of the training run and S seeds say only so much about the next. ``axis`` /
    ``increasing``: the same along another column (``images_seen``: the memorized fraction
    rises with training time; :func:`raystudy.analysis.transition.fit_crossing_along`)."""
    ks, counts, ns = per_k_counts(fr, col, axis)
    per_k = fraction_intervals(counts, ns, level, n_boot, seed)
    c = fit_crossing_along(ks, [c.sum() for c in counts], [n.sum() for n in ns], q, level,
                           overdispersion(counts, ns), per_k, increasing)
    seeds = sorted(fr["seed"].unique())
    if len(seeds) < 2:
        return c
    per_seed = []
    for s in seeds:
        g = fr[fr["seed"] == s].sort_values(axis)
        n = g["n"].to_numpy(float)
        per_seed.append(fit_crossing_along(g[axis].to_numpy(float), np.rint(n * g[col].to_numpy(float)), n, q,
                                           level, increasing=increasing).k)
    x = np.log(np.clip(per_seed, 1e-300, None))
    half = sps.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    lo = min(c.fit_lo, float(np.exp(x.mean() - half)))
    hi = max(c.fit_hi, float(np.exp(x.mean() + half)))
    lo, hi = max(lo, c.bracket_lo), min(hi, c.bracket_hi)
    if lo > hi:
        lo, hi = c.bracket_lo, c.bracket_hi
    return replace(c, lo=lo, hi=hi, k=float(np.clip(c.k, lo, hi)))


def transition_summary(labels: pd.DataFrame | None = None, fractions: pd.DataFrame | None = None,
                       n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                       half: float = 0.5, peak_fit: bool = True, checkpoints: str = "main") -> pd.DataFrame:
    """One row per (study, metric).

    ``k_cross``: where the memorized fraction crosses ``half``, from a logistic fit in log K;
    ``k_cross_lo`` / ``_hi``: its ``level`` interval (profile likelihood clipped to the
    bracket); ``k_cross_fit_lo`` / ``_hi``: the fit's interval alone; ``k_cross_bracket_lo`` /
    ``_hi``: the grid K around it that are significantly above / below ``half`` (0 / inf:
    open); ``k_cross_resolved``: a grid K lies inside the bracket; ``k_cross_width``: the
    fitted width in ln K. The same for the ratio test (``ratio_k_cross*``) and for ``emm``
    (the ratio test's memorized fraction = 0.9). ``k_cross_interp``: the log-K linear
    interpolation, with its range over seeds (``k_cross_seed_min``, ``_max``).
    ``spurious_peak_k`` / ``spurious_peak``: the grid K with the largest spurious fraction and
    that fraction; ``spurious_peak_lo`` / ``_hi``: its per-K interval; ``spurious_peak_k_lo`` /
    ``_hi``: where a unimodal peak can be. ``spurious_fit`` (``_lo``, ``_hi``): the peak K of a
    Gaussian bump in ln K fitted by binomial likelihood, with its profile interval clipped to that
    bracket; ``spurious_fit_height`` (``_height_lo``, ``_height_hi``): the bump's height, the
    curve's maximum, which can lie between grid K (:func:`raystudy.analysis.transition.fit_peak`).
    ``overdispersion``: the seeds' phi (1: binomial). ``peak_fit=False`` leaves out the bump fit
    (``spurious_fit*``), most of the call's cost, where no one reads it.
    Uses ``labels`` when given, else ``fractions`` (the same numbers: counts are n x fraction).
    ``checkpoints``: ``"main"`` wants one model's rows per study and refuses a frame of several
    snapshots, variants or twins (give ``Studies.main()``'s tables, or use
    :func:`summary`, which restricts a loaded study to its main model);
    ``"all"`` pools every checkpoint's samples into one curve (:func:`raystudy.analysis.fractions.one_curve`)."""
    use_labels = labels is not None and len(labels) > 0
    src = per_seed_fractions(labels) if use_labels else fractions
    src = one_curve(src, checkpoints, "the labels" if use_labels else "the fractions")
    if src is None or len(src) == 0:
        return pd.DataFrame()
    keys = group_keys(src)
    rows = []
    for gkey, fr in src.groupby(keys, sort=True) if keys else [((), src)]:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        curve = fr.groupby("K", sort=True)[list(CURVE_COLS)].mean()
        ks = curve.index.to_numpy()
        row = dict(zip(keys, gkey))
        row.update(K_min=int(ks.min()), K_max=int(ks.max()), n_K=len(ks),
                   n_seeds=int(fr["seed"].nunique()), n_per_K=float(fr.groupby("K")["n"].sum().mean()))
        mem = fractions_crossing(fr, "memorized", half, level, n_boot, seed)
        row.update(mem.columns("k_cross"))
        row.update(fractions_crossing(fr, "ratio_memorized", half, level, n_boot, seed).columns("ratio_k_cross"))
        row.update(fractions_crossing(fr, "ratio_memorized", EMM_LEVEL, level, n_boot, seed).columns("emm"))
        row["overdispersion"] = mem.phi
        row["k_cross_interp"] = crossing_k(ks, curve["memorized"].to_numpy(), half)
        per_seed = [crossing_k(g.index.to_numpy(), g["memorized"].to_numpy(), half)
                    for _, g in (fr.set_index("K").sort_index().groupby("seed"))]
        row["k_cross_seed_min"], row["k_cross_seed_max"] = float(min(per_seed)), float(max(per_seed))
        sp = curve["spurious"].to_numpy()
        sp_lo, sp_hi = fraction_intervals(*per_k_counts(fr, "spurious")[1:], level, n_boot, seed)
        pk, pv = peak(ks, sp)
        i = int(np.searchsorted(ks, pk))
        row["spurious_peak_k"], row["spurious_peak"] = int(pk), float(pv)
        row["spurious_peak_lo"], row["spurious_peak_hi"] = float(sp_lo[i]), float(sp_hi[i])
        row["spurious_peak_k_lo"], row["spurious_peak_k_hi"] = peak_bracket(ks, sp, sp_lo, sp_hi)
        if peak_fit:
            _, counts, ns = per_k_counts(fr, "spurious")
            row.update(fit_peak(ks, [c.sum() for c in counts], [n.sum() for n in ns], level,
                                overdispersion(counts, ns), (sp_lo, sp_hi)).columns("spurious_fit"))
        rows.append(row)
    return pd.DataFrame(rows)


def k_at(k: float, ks) -> str:
    """'K = 43.4', or 'below K = 2' / 'beyond K = 512' for a K outside the grid ``ks`` (lo, hi)."""
    if k is None or (isinstance(k, float) and math.isnan(k)):
        return "no K (not computed)"
    if k <= 0 or k < ks[0]:
        return f"below K = {int(ks[0])}"
    if not np.isfinite(k) or k > ks[1]:
        return f"beyond K = {int(ks[1])}"
    return f"K = {format_k(k, ks)}"


def k_range(lo: float, hi: float, ks) -> str:
    """An interval of K in words: 'K = 33.9 to 55.9', 'from below K = 2 to K = 47', 'beyond
    K = 512'; ends outside the grid ``ks`` (lo, hi) named as such, never as '< 2' or 'K_max'."""
    a, b = k_at(lo, ks), k_at(hi, ks)
    if a == b:
        return a
    if a.startswith("K = ") and b.startswith("K = "):
        return f"K = {format_k(lo, ks)} to {format_k(hi, ks)}"
    return f"from {a} to {b}"


def span_words(lo: float, hi: float, between: str, above: str, below: str, neither: str) -> str:
    """A span of K whose ends may be open (``lo`` 0: no end below, ``hi`` inf: none above) in
    words: the template for its case, ``{lo}`` and ``{hi}`` filled with :func:`format_k`."""
    if lo > 0 and np.isfinite(hi):
        return between.format(lo=format_k(lo), hi=format_k(hi))
    if lo > 0:
        return above.format(lo=format_k(lo))
    return below.format(hi=format_k(hi)) if np.isfinite(hi) else neither


def _bracket(b_lo: float, b_hi: float) -> str:
    """What the grid alone says about a crossing: the grid K significantly above / below it."""
    return span_words(b_lo, b_hi, "the grid brackets it between K = {lo} and {hi}", "the grid puts it above K = {lo}",
                      "the grid puts it below K = {hi}", "no grid K is significantly above or below the level")


def crossing_words(row, prefix: str = "k_cross", level: float = 0.95) -> tuple[str, str]:
    """A crossing of one row of :func:`transition_summary` for people, as (where, detail): where is
    'K = 43.4', 'between K = 32 and 128' (no grid K inside the bracket: the grid's answer first),
    'below K = 2', 'beyond K = 512' or 'no K the grid can tell'; detail gives the interval and
    what the grid alone says."""
    ks = (row["K_min"], row["K_max"])
    k, lo, hi = row[prefix], row[f"{prefix}_lo"], row[f"{prefix}_hi"]
    b_lo, b_hi = row[f"{prefix}_bracket_lo"], row[f"{prefix}_bracket_hi"]
    fit = f"{level:.0%} interval {k_range(lo, hi, ks)}"
    if b_lo == 0 and not np.isfinite(b_hi) and not row[f"{prefix}_resolved"]:
        return "no K the grid can tell", "no K significantly above or below it"
    if b_lo == 0 and hi <= ks[0]:
        return f"below K = {int(ks[0])}", "already below at the smallest K"
    if not np.isfinite(b_hi) and lo >= ks[1]:
        return f"beyond K = {int(ks[1])}", "still above at the largest K"
    if not row[f"{prefix}_resolved"] and b_lo > 0 and np.isfinite(b_hi):
        return (f"between K = {format_k(b_lo)} and {format_k(b_hi)}",
                f"no grid K in between; a logistic fit in log K says {k_at(k, ks)}, {fit}")
    return k_at(k, ks), f"{fit}, logistic fit in log K; {_bracket(b_lo, b_hi)}"


def _at_phrase(where: str) -> str:
    """A K after a verb: 'at K = 43.4', 'at no K ...', but 'below K = 2', 'between K = ...'."""
    return where if where.startswith(("below ", "beyond ", "between ")) else f"at {where}"


def _where(row, prefix: str, what: str, level: float) -> str:
    """"<what> between K = 32 and 128 (...)" or "<what> at K = 58 (95% interval ...)"."""
    where, detail = crossing_words(row, prefix, level)
    return f"{what} {_at_phrase(where)} ({detail})"


def _peak_span(lo: float, hi: float) -> str:
    """Where a unimodal peak can lie (:func:`raystudy.analysis.transition.peak_bracket`) in words."""
    return span_words(lo, hi, "the peak lies between K = {lo} and {hi}", "the peak lies above K = {lo}",
                      "the peak lies below K = {hi}", "the grid cannot tell where the peak lies")


def describe(row, level: float = 0.95) -> str:
    """One sentence for one row of :func:`transition_summary`. Every K is a number or says
    which end of the grid it lies beyond; with no spurious sample at any K nothing is said of
    a spurious peak."""
    ks = (row["K_min"], row["K_max"])
    s = _where(row, "k_cross", "memorized crosses 1/2", level)
    if row.get("n_seeds", 1) > 1:
        s += (f"; per seed (log-K interpolation) {k_range(row['k_cross_seed_min'], row['k_cross_seed_max'], ks)}, "
              f"overdispersion {row['overdispersion']:.2f}")
    s += "; " + _where(row, "emm", "EMM (ratio test >= 90% memorized) ends", level)
    s += f"; ratio test (< 1/3) crosses 1/2 {_at_phrase(k_at(row['ratio_k_cross'], ks))}"
    if not row["spurious_peak"] > 0:
        return s + "; no sample is spurious at any K"
    s += (f"; spurious peaks at grid K = {row['spurious_peak_k']} ({row['spurious_peak']:.2f}, "
          f"{level:.0%} interval {row['spurious_peak_lo']:.2f} to {row['spurious_peak_hi']:.2f}; "
          f"{_peak_span(row['spurious_peak_k_lo'], row['spurious_peak_k_hi'])})")
    if "spurious_fit_fits" in row and not row["spurious_fit_fits"]:
        s += (f"; a Gaussian bump in log K does not fit the spurious fraction (deviance p = "
              f"{row['spurious_fit_fit_p']:.2g}), so only the grid speaks: the peak is at least "
              f"{row['spurious_fit_height_lo']:.3f} high")
    elif "spurious_fit" in row and np.isfinite(row["spurious_fit"]):
        s += (f"; a bump fitted in log K peaks {_at_phrase(k_at(row['spurious_fit'], ks))} ({level:.0%} interval "
              f"{k_range(row['spurious_fit_lo'], row['spurious_fit_hi'], ks)}) with height "
              f"{row['spurious_fit_height']:.3f} ({row['spurious_fit_height_lo']:.3f} to "
              f"{row['spurious_fit_height_hi']:.3f})")
    return s


# -- a loaded study: its main model's summary --------------------------------------------------

def summary(st: Studies, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
            checkpoints: str = "main") -> pd.DataFrame:
    """:func:`transition_summary` of loaded studies: of each study's main model
    (``Studies.main``: the config's first variant at its final snapshot, twin 0), the numbers
    ``raystudy show`` and the report give; ``checkpoints="all"`` pools every snapshot, variant
    and twin into one curve (:func:`raystudy.analysis.fractions.pool_checkpoints`)."""
    st = st.view(checkpoints, CURVE_TABLES)
    return in_study_order(transition_summary(st.labels if st.has("labels") else None, fractions_of(st), n_boot, level,
                                        seed, checkpoints=checkpoints), st.names)
