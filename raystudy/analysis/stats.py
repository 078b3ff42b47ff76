"""The numbers behind the transition curves: fractions per K, their error bars, the crossing K.

Two kinds of uncertainty, kept apart and both drawn:

* over **seeds** (training runs): the mean of the per-seed fractions and their standard
  deviation, from the ``fractions`` table (or recomputed from ``labels``);
* over **samples**: a bootstrap that resamples each (K, seed)'s generated samples with
  replacement (stratified by seed, seeds held fixed) and recomputes the seed-mean curve.
  Resampling n labelled samples and counting is exactly a multinomial draw with the
  observed proportions, so a replicate costs O(1) per group, not O(n).

The point curve is always the mean over seeds of the per-seed fractions, which is what
the ``fractions`` table holds, so every number here matches the stage's output.

Crossing K: the K where the memorized fraction first falls below 1/2, interpolated
linearly in log K between the two Ks around it (K is on a log axis and grows
geometrically). By convention :func:`crossing_k` returns 0 when the fraction is already
below 1/2 at the smallest K and ``inf`` when it never falls below it: both sort
correctly, so bootstrap percentiles of the crossing are well defined.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .load import LABELS

CURVE_COLS: tuple[str, ...] = (*LABELS, "ratio_memorized")


def group_keys(df: pd.DataFrame) -> list[str]:
    """The grouping columns a table has besides K: ``study`` and ``metric``."""
    return [c for c in ("study", "metric") if c in df.columns]


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
    """A crossing K for people: '73', '< 2' (below at the smallest K), '> 1797' (never)."""
    if k is None or (isinstance(k, float) and math.isnan(k)):
        return "n/a"
    if k == 0:
        return f"< {int(min(ks))}" if ks is not None and len(ks) else "< K_min"
    if math.isinf(k):
        return f"> {int(max(ks))}" if ks is not None and len(ks) else "> K_max"
    return f"{k:.3g}" if k < 100 else f"{k:.0f}"


# -- per-seed fractions and seed statistics ----------------------------------------------------

def per_seed_fractions(labels: pd.DataFrame) -> pd.DataFrame:
    """The ``fractions`` table recomputed from ``labels`` (one row per study, metric, K, seed)."""
    keys = group_keys(labels) + ["K", "seed"]
    df = labels[keys].copy()
    for lab in LABELS:
        df[lab] = (labels["label"] == lab).astype(float)
    df["ratio_memorized"] = labels["ratio_memorized"].fillna(False).astype(float)
    g = df.groupby(keys, sort=True)
    out = g[list(CURVE_COLS)].mean()
    out.insert(0, "n", g.size())
    return out.reset_index()


def seed_curves(fractions: pd.DataFrame) -> pd.DataFrame:
    """Per (study, metric, K): mean over seeds of each fraction, its s.d. over seeds
    (``<col>_sd``, NaN with one seed), ``n_seeds`` and ``n`` (samples summed over seeds)."""
    keys = group_keys(fractions) + ["K"]
    cols = [c for c in CURVE_COLS if c in fractions.columns]
    g = fractions.groupby(keys, sort=True)
    out = g[cols].mean().join(g[cols].std(ddof=1).add_suffix("_sd"))
    out["n_seeds"] = g.size()
    out["n"] = g["n"].sum()
    return out.reset_index()


# -- bootstrap over samples --------------------------------------------------------------------

def _codes(lab: pd.DataFrame) -> np.ndarray:
    """Cell of each sample in a 3 x 2 table: label x ratio-test copy."""
    li = np.full(len(lab), -1)
    for j, name in enumerate(LABELS):
        li[(lab["label"] == name).to_numpy()] = j
    if (li < 0).any():
        bad = sorted(set(lab["label"][li < 0].astype(str)))
        raise ValueError(f"unknown labels {bad}")
    rm = lab["ratio_memorized"].fillna(False).to_numpy(bool)
    return li * 2 + rm


def replicate_curves(lab: pd.DataFrame, n_boot: int = 1000, seed: int = 0):
    """For one study and metric: (ks, point curves (nK, 4), bootstrap replicates (n_boot, nK, 4)),
    the 4 curves being memorized, spurious, generalized, ratio_memorized, each the mean over
    seeds of the per-seed fraction. Samples are resampled within each (K, seed)."""
    rng = np.random.default_rng(seed)
    ks = np.array(sorted(lab["K"].unique()))
    point = np.zeros((len(ks), 4))
    reps = np.zeros((n_boot, len(ks), 4))
    for a, k in enumerate(ks):
        at_k = lab[lab["K"] == k]
        seeds = sorted(at_k["seed"].unique())
        for s in seeds:
            codes = _codes(at_k[at_k["seed"] == s])
            n = len(codes)
            counts = np.bincount(codes, minlength=6).astype(float)
            draws = rng.multinomial(n, counts / n, size=n_boot).reshape(n_boot, 3, 2) / n
            point[a, :3] += counts.reshape(3, 2).sum(1) / n
            point[a, 3] += counts.reshape(3, 2)[:, 1].sum() / n
            reps[:, a, :3] += draws.sum(2)
            reps[:, a, 3] += draws[:, :, 1].sum(1)
        point[a] /= len(seeds)
        reps[:, a] /= len(seeds)
    return ks, point, reps


def _interval(x: np.ndarray, level: float, axis: int = 0):
    a = (1 - level) / 2
    lo = np.quantile(x, a, axis=axis, method="inverted_cdf")
    hi = np.quantile(x, 1 - a, axis=axis, method="inverted_cdf")
    return lo, hi


def bootstrap_curves(labels: pd.DataFrame, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> pd.DataFrame:
    """Per (study, metric, K): each curve's point value and its ``level`` bootstrap interval over
    samples (``<col>_lo``, ``<col>_hi``; percentile method)."""
    rows = []
    keys = group_keys(labels)
    for gkey, lab in labels.groupby(keys, sort=True) if keys else [((), labels)]:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        ks, point, reps = replicate_curves(lab, n_boot, seed)
        lo, hi = _interval(reps, level)
        for a, k in enumerate(ks):
            row = dict(zip(keys, gkey))
            row["K"] = int(k)
            for j, c in enumerate(CURVE_COLS):
                row[c], row[f"{c}_lo"], row[f"{c}_hi"] = point[a, j], lo[a, j], hi[a, j]
            rows.append(row)
    return pd.DataFrame(rows)


# -- the summary: crossing K and spurious peak per study and metric -----------------------------

def transition_summary(labels: pd.DataFrame | None = None, fractions: pd.DataFrame | None = None,
                       n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                       half: float = 0.5) -> pd.DataFrame:
    """One row per (study, metric): the crossing K of the memorized fraction (``k_cross``) with
    its bootstrap interval over samples (``k_cross_lo``, ``k_cross_hi``) and its range over
    seeds (``k_cross_seed_min``, ``_max``); the same for the ratio test (``ratio_k_cross*``);
    the spurious peak (``spurious_peak_k``, its value ``spurious_peak`` with interval, and the
    interval of the peak's K). Uses ``labels`` when given (bootstrap), else ``fractions``
    (seed statistics only; the bootstrap columns are NaN)."""
    use_labels = labels is not None and len(labels) > 0
    src = per_seed_fractions(labels) if use_labels else fractions
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
        row["k_cross"] = crossing_k(ks, curve["memorized"].to_numpy(), half)
        row["ratio_k_cross"] = crossing_k(ks, curve["ratio_memorized"].to_numpy(), half)
        per_seed = [crossing_k(g.index.to_numpy(), g["memorized"].to_numpy(), half)
                    for _, g in (fr.set_index("K").sort_index().groupby("seed"))]
        row["k_cross_seed_min"], row["k_cross_seed_max"] = float(min(per_seed)), float(max(per_seed))
        pk, pv = peak(ks, curve["spurious"].to_numpy())
        row["spurious_peak_k"], row["spurious_peak"] = int(pk), float(pv)
        for c in ("k_cross_lo", "k_cross_hi", "ratio_k_cross_lo", "ratio_k_cross_hi",
                  "spurious_peak_lo", "spurious_peak_hi", "spurious_peak_k_lo", "spurious_peak_k_hi"):
            row[c] = float("nan")
        if use_labels:
            mask = np.ones(len(labels), bool)
            for k_, v in zip(keys, gkey):
                mask &= (labels[k_] == v).to_numpy()
            bks, _, reps = replicate_curves(labels[mask], n_boot, seed)
            row["k_cross_lo"], row["k_cross_hi"] = map(float, _interval(crossings(bks, reps[:, :, 0], half), level))
            row["ratio_k_cross_lo"], row["ratio_k_cross_hi"] = map(
                float, _interval(crossings(bks, reps[:, :, 3], half), level))
            i = int(np.searchsorted(bks, pk))
            row["spurious_peak_lo"], row["spurious_peak_hi"] = map(float, _interval(reps[:, i, 1], level))
            rk, _ = peak(bks, reps[:, :, 1])
            row["spurious_peak_k_lo"], row["spurious_peak_k_hi"] = map(float, _interval(rk, level))
        rows.append(row)
    return pd.DataFrame(rows)


def describe(row, level: float = 0.95) -> str:
    """One sentence for one row of :func:`transition_summary`."""
    ks = (row["K_min"], row["K_max"])
    s = f"memorized crosses 1/2 at K = {format_k(row['k_cross'], ks)}"
    if not pd.isna(row.get("k_cross_lo")):
        s += (f" ({level:.0%} bootstrap CI over samples {format_k(row['k_cross_lo'], ks)}"
              f" to {format_k(row['k_cross_hi'], ks)})")
    if row.get("n_seeds", 1) > 1:
        s += (f", per seed {format_k(row['k_cross_seed_min'], ks)} to "
              f"{format_k(row['k_cross_seed_max'], ks)}")
    s += f"; ratio test (< 1/3) crosses at K = {format_k(row['ratio_k_cross'], ks)}"
    s += f"; spurious peaks at K = {row['spurious_peak_k']} ({row['spurious_peak']:.2f}"
    if not pd.isna(row.get("spurious_peak_lo")):
        s += f", CI {row['spurious_peak_lo']:.2f} to {row['spurious_peak_hi']:.2f}"
    return s + ")"
