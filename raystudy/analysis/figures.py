"""The study's figures, drawn from loaded tables (:func:`raystudy.analysis.load`).

Every function returns a matplotlib Figure (or None when its table is absent) and leaves
saving to the caller (:mod:`raystudy.analysis.report` saves PNG/PDF); in a notebook the
figure shows inline. What is drawn is written on the figure itself.

The functions given a loaded study (:func:`curves`, :func:`summary`, :func:`transition_figure`,
:func:`compare_figure`, and the distances, training, basins and energy figures) show each
study's main model, as ``raystudy show`` and the report do (``Studies.main``: the config's first
variant at its final snapshot, twin 0); ``checkpoints="all"`` pools every snapshot, variant and
twin into one curve instead. The phase diagram (:mod:`raystudy.analysis.phase`) is where the
checkpoints are told apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .load import LABELS, Studies
from .stats import (
    CHECKPOINTS,
    format_k,
    interval_curves,
    k_at,
    k_range,
    per_seed_fractions,
    seed_curves,
    transition_summary,
)

# The one palette of the labels (and of the basins' image kinds): every figure, the sample
# gallery and the report's captions take their colours and colour words from here.
COLORS = {"memorized": "tab:red", "spurious": "tab:orange", "generalized": "tab:green",
          "ratio_memorized": "tab:purple", "train": "tab:blue", "held-out": "tab:gray"}
COLOR_NAMES = {k: v.removeprefix("tab:") for k, v in COLORS.items()}
DPI = 150  # what the report and the figures stage save at: readable on a laptop screen
STUDY_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive")


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _view(st: Studies, checkpoints: str, tables: tuple[str, ...]) -> Studies:
    """``st`` at each study's main model (``checkpoints="main"``), or as it is (``"all"``);
    only ``tables`` are restricted, the ones the caller reads."""
    from ..errors import AnalysisError

    if checkpoints not in CHECKPOINTS:
        raise AnalysisError(f"checkpoints must be 'main' or 'all', not {checkpoints!r}")
    return st.main(tables) if checkpoints == "main" else st


CURVE_TABLES = ("labels", "fractions", "null_fractions")


def _fractions_of(st: Studies) -> pd.DataFrame:
    """The ``fractions`` table, or the same recomputed from ``labels`` when it is absent."""
    if st.has("fractions"):
        return st.fractions
    if st.has("labels"):
        return per_seed_fractions(st.labels)
    return pd.DataFrame()


def _in_order(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Rows in the order the studies were given (groupby sorts them by name)."""
    if df.empty or "study" not in df:
        return df
    rank = {n: i for i, n in enumerate(names)}
    keys = ["study", *[c for c in ("metric", "K") if c in df]]
    return df.sort_values(keys, key=lambda c: c.map(rank) if c.name == "study" else c, kind="stable") \
        .reset_index(drop=True)


def curves(st: Studies, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
           checkpoints: str = "main") -> pd.DataFrame:
    """Per (study, metric, K): seed mean and s.d. of each fraction and its ``level`` interval
    (``<col>_lo`` / ``<col>_hi``: exact over samples with one seed, hierarchical bootstrap over
    seeds and samples with several; :func:`raystudy.analysis.stats.interval_curves`), of each
    study's main model (``Studies.main``); ``checkpoints="all"``: every checkpoint's samples
    pooled into one curve."""
    st = _view(st, checkpoints, CURVE_TABLES)
    fr = _fractions_of(st)
    sc = seed_curves(fr, checkpoints)
    if len(fr):
        ic = interval_curves(fr, level, n_boot, seed, checkpoints)
        ic = ic[[c for c in ic.columns if c.endswith(("_lo", "_hi")) or c in ("study", "metric", "K")]]
        sc = sc.merge(ic, on=["study", "metric", "K"], how="left")
    return _in_order(sc, st.names)


def summary(st: Studies, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
            checkpoints: str = "main") -> pd.DataFrame:
    """:func:`raystudy.analysis.stats.transition_summary` of loaded studies: of each study's main
    model (``Studies.main``: the config's first variant at its final snapshot, twin 0), the
    numbers ``raystudy show`` and the report give; ``checkpoints="all"`` pools every snapshot,
    variant and twin into one curve (:func:`raystudy.analysis.stats.pool_checkpoints`)."""
    st = _view(st, checkpoints, CURVE_TABLES)
    return _in_order(transition_summary(st.labels if st.has("labels") else None, _fractions_of(st), n_boot, level,
                                        seed, checkpoints=checkpoints), st.names)


def _span(ax, lo, hi, ks, color, alpha=0.10, **kw):
    """Shade a crossing interval, clipped to the K range (0 / inf mean outside it)."""
    if pd.isna(lo) or pd.isna(hi):
        return
    a = max(lo, min(ks)) if lo > 0 else min(ks)
    b = min(hi, max(ks)) if np.isfinite(hi) else max(ks)
    if b > a:
        ax.axvspan(a, b, color=color, alpha=alpha, lw=0, **kw)


def crossing_text(row, prefix: str = "k_cross", level: float = 0.95) -> str:
    """'between K = 32 and 128 (fit K = 48.6, 95% interval K = 44.1 to 54)' when no grid K lies
    in the bracket, else 'K = 99.5 (95% interval K = 84 to 117)'; a K outside the grid says
    which end it lies beyond."""
    ks = (row["K_min"], row["K_max"])
    k, lo, hi = row[prefix], row.get(f"{prefix}_lo"), row.get(f"{prefix}_hi")
    ci = "" if pd.isna(lo) else f"{level:.0%} interval {k_range(lo, hi, ks)}"
    b_lo, b_hi = row.get(f"{prefix}_bracket_lo"), row.get(f"{prefix}_bracket_hi")
    if not pd.isna(b_lo) and not row.get(f"{prefix}_resolved", True) and b_lo > 0 and np.isfinite(b_hi):
        return f"between K = {format_k(b_lo)} and {format_k(b_hi)} (fit {k_at(k, ks)}{', ' + ci if ci else ''})"
    return k_at(k, ks) + (f" ({ci})" if ci else "")


def k_axis(ax, ks) -> None:
    """A log K axis labelled with plain numbers: the grid K themselves where they are few and
    spread enough for their labels not to touch, else decades (1-2-5 steps on a grid spanning
    under two decades, where a log axis has one decade tick at most and labels its minor ticks,
    which overlap: '2x10^0 3x10^0'). Minor ticks are never labelled."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ks = np.unique(np.asarray(ks, float))
    ks = ks[np.isfinite(ks) & (ks > 0)]
    if len(ks):
        span = np.log(ks.max() / ks.min())
        if len(ks) <= 8 and (len(ks) < 2 or np.diff(np.log(ks)).min() >= span / 20):
            ax.xaxis.set_major_locator(FixedLocator(ks))
        elif span < np.log(100):
            ax.xaxis.set_major_locator(LogLocator(10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _panel(ax, cv: pd.DataFrame, row, ratio: bool = True, level: float = 0.95) -> list[str]:
    """Draw one study and metric's curves and marks on ``ax``; returns the panel's summary
    lines, which the caller writes beside the axes (never over the data)."""
    ks = cv["K"].to_numpy()
    multi_seed = cv["n_seeds"].max() > 1
    for lab in (*LABELS, "ratio_memorized") if ratio else LABELS:
        if lab not in cv:
            continue
        y = cv[lab].to_numpy()
        sd = cv.get(f"{lab}_sd")
        dashed = lab == "ratio_memorized"
        name = "memorized by ratio test (< 1/3)" if dashed else lab
        ax.errorbar(ks, y, yerr=sd.to_numpy() if (multi_seed and sd is not None) else None,
                    fmt="s--" if dashed else "o-", ms=4, capsize=3, lw=1.4, color=COLORS[lab], label=name,
                    alpha=0.85 if dashed else 1)
        if f"{lab}_lo" in cv and cv[f"{lab}_lo"].notna().any():
            ax.fill_between(ks, cv[f"{lab}_lo"], cv[f"{lab}_hi"], color=COLORS[lab], alpha=0.15, lw=0)
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    text = []
    if row is not None:
        kc = row["k_cross"]
        if ks.min() <= kc <= ks.max():
            ax.axvline(kc, color=COLORS["memorized"], lw=1, ls="--", label="memorized = 1/2 (logistic fit)")
        # the bracket (grid K significantly above / below 1/2) hatched, the interval shaded
        if "k_cross_bracket_lo" in row:
            _span(ax, row["k_cross_bracket_lo"], row["k_cross_bracket_hi"], ks, COLORS["memorized"], alpha=0.05,
                  hatch="//")
        _span(ax, row.get("k_cross_lo"), row.get("k_cross_hi"), ks, COLORS["memorized"], alpha=0.18)
        text.append(f"memorized = 1/2: {crossing_text(row, level=level)}")
        if "emm" in row:
            if ks.min() <= row["emm"] <= ks.max():
                ax.axvline(row["emm"], color=COLORS["ratio_memorized"], lw=1, ls=":", label="EMM (ratio test = 0.9)")
            _span(ax, row["emm_lo"], row["emm_hi"], ks, COLORS["ratio_memorized"], alpha=0.12)
            text.append(f"EMM (ratio test = 0.9): {crossing_text(row, 'emm', level)}")
        text.append(f"ratio test = 1/2: {k_at(row['ratio_k_cross'], (row['K_min'], row['K_max']))}")
        if row["spurious_peak"] > 0:
            ax.plot([row["spurious_peak_k"]], [row["spurious_peak"]], marker="*", ms=13, color=COLORS["spurious"],
                    mec="k", mew=0.6, ls="none", zorder=5, label="spurious peak (grid)")
            text.append(f"spurious peak: {row['spurious_peak']:.2f} at grid K = {row['spurious_peak_k']} "
                        f"({level:.0%} interval {row['spurious_peak_lo']:.2f} to {row['spurious_peak_hi']:.2f})")
        else:
            text.append("spurious: no sample at any K")
    k_axis(ax, ks)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training-set size K")
    ax.set_ylabel("fraction of samples")
    ax.grid(alpha=0.3, which="major", lw=0.4)
    return text


def null_curve(st: Studies, study: str, metric: str) -> pd.DataFrame:
    """The chance level per K (table ``null_fractions``, mean over its rows per K; empty where
    absent or not computed): held-out real images labelled by the samples' rule."""
    if not st.has("null_fractions"):
        return pd.DataFrame(columns=["K", *LABELS])
    nf = st.null_fractions
    nf = nf[(nf["study"] == study) & (nf["metric"] == metric) & (nf["n"] > 0)]
    return nf.groupby("K", as_index=False)[list(LABELS)].mean().sort_values("K")


def _null(ax, st: Studies, study: str, metric: str) -> None:
    nc = null_curve(st, study, metric)
    for lab in ("memorized", "spurious"):
        if len(nc):
            ax.plot(nc["K"], nc[lab], ":", marker="x", ms=4, lw=1.2, color=COLORS[lab], alpha=0.9,
                    label=f"null: held-out images {lab} (chance)")


def _note(cv: pd.DataFrame, level: float, marks: bool = True) -> str:
    n_seeds = int(cv["n_seeds"].max()) if len(cv) else 0
    s = f"Lines: mean over {n_seeds} seed(s)"
    if n_seeds > 1:
        s += "; error bars: ±1 s.d. over seeds"
    if any(c.endswith("_lo") for c in cv.columns):
        s += (f"; bands: {level:.0%} interval per K (" +
              ("hierarchical bootstrap over seeds and samples" if n_seeds > 1 else "exact, over samples") + ")")
    if not marks:
        return s + "; dashed vertical: each study's crossing K (logistic fit in log K), shaded: its interval."
    return s + (f"; shaded {COLOR_NAMES['memorized']}: the crossing's interval, hatched: the grid's bracket "
                f"(grid K significantly above / below 1/2); shaded {COLOR_NAMES['ratio_memorized']}: EMM's "
                "interval; the null is held-out real images under the same rule (a fraction at or below it is "
                "chance).")


def _legend_handles(axes) -> tuple[list, list[str]]:
    """Every labelled artist of ``axes`` once: the curves first (matplotlib lists lines, such as
    the vertical marks, before the error-bar curves), then the marks, then the null."""
    seen = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    first = [*LABELS, "memorized by ratio test (< 1/3)"]
    order = sorted(seen, key=lambda lab: (first.index(lab) if lab in first else len(first) + lab.startswith("null")))
    return [seen[lab] for lab in order], order


def transition_figure(st: Studies, cv: pd.DataFrame | None = None, sm: pd.DataFrame | None = None,
                      n_boot: int = 1000, level: float = 0.95, checkpoints: str = "main"):
    """Memorized / spurious / generalized fraction vs K (log axis); one panel per metric and
    study; the ratio test (dashed) beside the paper's rule; the crossing K and its interval;
    the spurious peak. Each panel's numbers are written under it and the legend and notes under
    all of them, so nothing covers a curve. ``cv`` / ``sm``: precomputed :func:`curves` /
    :func:`summary`. Each study's main model, with its null; ``checkpoints="all"``: every
    checkpoint pooled (:func:`summary`)."""
    import textwrap

    plt = _plt()
    st = _view(st, checkpoints, CURVE_TABLES)
    cv = curves(st, n_boot, level, checkpoints=checkpoints) if cv is None else cv
    sm = summary(st, n_boot, level, checkpoints=checkpoints) if sm is None else sm
    studies, metrics = list(cv["study"].unique()), sorted(cv["metric"].unique())
    nrow, ncol = len(studies), len(metrics)
    width = 6.4 * ncol
    fig = plt.figure(figsize=(width, 4.4 * nrow + 1.7), layout="constrained")
    gs = fig.add_gridspec(2 * nrow + 1, ncol, height_ratios=[3.5, 0.9] * nrow + [1.5])
    # the data axes first: fig.axes[0] is the first study's first metric
    axes = [[fig.add_subplot(gs[2 * i, j]) for j in range(ncol)] for i in range(nrow)]
    for i, s in enumerate(studies):
        for j, m in enumerate(metrics):
            ax = axes[i][j]
            c = cv[(cv["study"] == s) & (cv["metric"] == m)].sort_values("K")
            r = sm[(sm["study"] == s) & (sm["metric"] == m)] if len(sm) else sm
            text = _panel(ax, c, r.iloc[0] if len(r) else None, level=level)
            _null(ax, st, s, m)
            ax.set_title(f"{s} · {m}" if len(studies) > 1 else f"metric: {m}", fontsize=10)
            below = fig.add_subplot(gs[2 * i + 1, j])
            below.set_axis_off()
            below.text(0, 1, "\n".join(text), transform=below.transAxes, va="top", ha="left", fontsize=8,
                       linespacing=1.4)
    foot = fig.add_subplot(gs[-1, :])
    foot.set_axis_off()
    handles, labels = _legend_handles([a for row in axes for a in row])
    foot.legend(handles, labels, loc="upper center", ncol=3, fontsize=8, frameon=False)
    foot.text(0.5, 0, textwrap.fill(_note(cv, level), int(width * 17)), transform=foot.transAxes, ha="center",
              va="bottom", fontsize=7.5, color="0.25")
    return fig


def compare_figure(st: Studies, cv: pd.DataFrame | None = None, sm: pd.DataFrame | None = None,
                   n_boot: int = 1000, level: float = 0.95, checkpoints: str = "main"):
    """Several studies on one axis per metric: memorized (top) and spurious (bottom) vs K,
    each with its band and its crossing K; the title gives how far the crossing moved. Each
    study's main model; ``checkpoints="all"``: every checkpoint pooled (:func:`summary`)."""
    plt = _plt()
    st = _view(st, checkpoints, CURVE_TABLES)
    cv = curves(st, n_boot, level, checkpoints=checkpoints) if cv is None else cv
    sm = summary(st, n_boot, level, checkpoints=checkpoints) if sm is None else sm
    studies, metrics = list(cv["study"].unique()), sorted(cv["metric"].unique())
    fig, axes = plt.subplots(2, len(metrics), figsize=(max(5.4 * len(metrics), 8), 7), squeeze=False)
    for j, m in enumerate(metrics):
        for i, s in enumerate(studies):
            color = STUDY_COLORS[i % len(STUDY_COLORS)]
            c = cv[(cv["study"] == s) & (cv["metric"] == m)].sort_values("K")
            if c.empty:
                continue
            ks = c["K"].to_numpy()
            for a, lab in ((0, "memorized"), (1, "spurious")):
                ax = axes[a][j]
                ax.plot(ks, c[lab], "o-", ms=4, color=color, label=s)
                if f"{lab}_lo" in c and c[f"{lab}_lo"].notna().any():
                    ax.fill_between(ks, c[f"{lab}_lo"], c[f"{lab}_hi"], color=color, alpha=0.15, lw=0)
            r = sm[(sm["study"] == s) & (sm["metric"] == m)]
            if len(r):
                r = r.iloc[0]
                if ks.min() <= r["k_cross"] <= ks.max():
                    axes[0][j].axvline(r["k_cross"], color=color, ls="--", lw=1)
                _span(axes[0][j], r.get("k_cross_lo"), r.get("k_cross_hi"), ks, color)
                if r["spurious_peak"] > 0:
                    axes[1][j].plot([r["spurious_peak_k"]], [r["spurious_peak"]], "*", ms=12, color=color, mec="k")
        title = f"memorized · {m}"
        sub = sm[sm["metric"] == m] if len(sm) else sm
        if len(sub) >= 2:
            a, b = sub.iloc[0], sub.iloc[-1]
            if 0 < a["k_cross"] < np.inf and 0 < b["k_cross"] < np.inf:
                title += f"\nK½: {a['study']} {format_k(a['k_cross'])} → {b['study']} " \
                         f"{format_k(b['k_cross'])} (×{b['k_cross'] / a['k_cross']:.2f})"
        axes[0][j].set_title(title, fontsize=9)
        axes[1][j].set_title(f"spurious · {m}", fontsize=9)
        for a in (0, 1):
            ax = axes[a][j]
            k_axis(ax, cv.loc[cv["metric"] == m, "K"])
            ax.set_ylim(-0.03, 1.03)
            ax.axhline(0.5, color="k", lw=0.6, ls=":") if a == 0 else None
            ax.set_xlabel("training-set size K")
            ax.set_ylabel(f"{'memorized' if a == 0 else 'spurious'} fraction")
            ax.grid(alpha=0.3, lw=0.4)
    axes[0][0].legend(fontsize=8)
    fig.text(0.5, -0.01, _note(cv, level, marks=False), ha="center", va="top", fontsize=7)
    fig.tight_layout()
    return fig


def distances_figure(st: Studies, study: str, metric: str, checkpoints: str = "main"):
    """Histograms of d_train and d_synth per K (rows), stacked by label, on log-spaced bins,
    with the study's thresholds delta_m / delta_s drawn: the bimodality a threshold cuts. The
    main model's samples; ``checkpoints="all"``: every checkpoint's."""
    plt = _plt()
    st = _view(st, checkpoints, ("labels",))
    lab = st.labels[(st.labels["study"] == study) & (st.labels["metric"] == metric)]
    if lab.empty:
        return None
    dm, ds = st.thresholds(study, metric)
    ks = sorted(lab["K"].unique())
    vals = np.concatenate([lab["d_train"].to_numpy(float), lab["d_synth"].to_numpy(float)])
    vals = vals[np.isfinite(vals)]
    pos = vals[vals > 0]
    floor = (pos.min() / 2) if len(pos) else 1e-6
    lo = min(floor, dm, ds) / 1.5
    hi = max(vals.max() if len(vals) else 1.0, dm, ds) * 1.5
    bins = np.geomspace(lo, hi, 40)
    fig, axes = plt.subplots(len(ks), 2, figsize=(9, 1.25 * len(ks) + 1.0), sharex=True, squeeze=False)
    for r, k in enumerate(ks):
        g = lab[lab["K"] == k]
        for c, (col, thr, name) in enumerate((("d_train", dm, "delta_m"), ("d_synth", ds, "delta_s"))):
            ax = axes[r][c]
            data = [np.clip(g.loc[g["label"] == L, col].to_numpy(float), lo, None) for L in LABELS]
            ax.hist(data, bins=bins, stacked=True, histtype="stepfilled", color=[COLORS[L] for L in LABELS],
                    label=list(LABELS))
            ax.axvline(thr, color="k", ls="--", lw=1)
            ax.set_xscale("log")
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(f"{col} ({metric}); dashed: {name} = {thr:g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"K = {k}\ncount", fontsize=8)
    axes[-1][0].set_xlabel("distance to the nearest training image", fontsize=8)
    axes[-1][1].set_xlabel("distance to the nearest sample of the other set", fontsize=8)
    axes[0][1].legend(fontsize=7, loc="upper right")
    zeros = f" (zeros drawn at {lo:.2g})" if (vals <= 0).any() else ""
    fig.suptitle(f"{study}: distances per K, stacked by label{zeros}", fontsize=10)
    fig.tight_layout()
    return fig


def _heat(ax, z, dm, ds, title, fmt, log: bool, mark, cmap="viridis"):
    from matplotlib.colors import LogNorm, Normalize

    zz = np.asarray(z, float)
    finite = zz[np.isfinite(zz) & (zz > 0)] if log else zz[np.isfinite(zz)]
    if log and len(finite):
        norm = LogNorm(vmin=finite.min(), vmax=max(finite.max(), finite.min() * 1.0001))
    else:
        norm = Normalize(vmin=finite.min() if len(finite) else 0, vmax=finite.max() if len(finite) else 1)
    shown = np.where(np.isfinite(zz) & ((zz > 0) | (not log)), zz, np.nan)
    im = ax.imshow(shown, origin="lower", aspect="auto", cmap=cmap, norm=norm)
    for i in range(zz.shape[0]):
        for j in range(zz.shape[1]):
            ax.text(j, i, fmt(zz[i, j]), ha="center", va="center", fontsize=6,
                    color="w" if np.isfinite(shown[i, j]) and norm(shown[i, j]) < 0.5 else "k")
    ax.set_xticks(range(len(ds)), [f"{v:.2g}" for v in ds], rotation=60, fontsize=7)
    ax.set_yticks(range(len(dm)), [f"{v:.2g}" for v in dm], fontsize=7)
    ax.set_xlabel("delta_s")
    ax.set_ylabel("delta_m")
    if mark is not None:
        ax.add_patch(__import__("matplotlib").patches.Rectangle((mark[1] - 0.5, mark[0] - 0.5), 1, 1,
                                                                fill=False, ec="k", lw=2))
    ax.set_title(title, fontsize=9)
    return im


def thresholds_figure(grid: pd.DataFrame, delta_m0: float | None = None, delta_s0: float | None = None,
                      title: str = ""):
    """Heatmaps over the (delta_m, delta_s) grid of :func:`raystudy.analysis.thresholds.threshold_grid`
    (one study and metric): the crossing K (depends on delta_m only), the K of the spurious
    peak, and the peak's height. The study's own thresholds are boxed."""
    plt = _plt()
    dm = np.sort(grid["delta_m"].unique())
    ds = np.sort(grid["delta_s"].unique())
    piv = {c: grid.pivot_table(index="delta_m", columns="delta_s", values=c, aggfunc="first")
           .reindex(index=dm, columns=ds).to_numpy() for c in ("k_cross", "spurious_peak_k", "spurious_peak")}
    mark = None
    if delta_m0 is not None and delta_s0 is not None:
        mark = (int(np.argmin(np.abs(np.log(dm / delta_m0)))), int(np.argmin(np.abs(np.log(ds / delta_s0)))))
    kmin, kmax = int(grid["K_min"].min()), int(grid["K_max"].max())
    ks_range = (kmin, kmax)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    _heat(axes[0], piv["k_cross"], dm, ds, "K where memorized crosses 1/2\n(depends on delta_m only)",
          lambda v: format_k(v, ks_range), True, mark)
    _heat(axes[1], piv["spurious_peak_k"], dm, ds, "K of the spurious peak", lambda v: f"{v:.0f}", True, mark,
          cmap="magma")
    _heat(axes[2], piv["spurious_peak"], dm, ds, "height of the spurious peak", lambda v: f"{v:.2f}", False, mark,
          cmap="cividis")
    fig.suptitle((title + ": " if title else "") + "relabelled from stored distances on a threshold grid "
                 f"(box: the study's thresholds; '<' / '>': crossing outside K = {kmin}..{kmax})", fontsize=9)
    fig.tight_layout()
    return fig


CLOSED_FORM = ("empirical", "gaussian")  # model types with nothing to train (raystudy.stages.train)


def closed_form(st: Studies, study: str) -> bool:
    """Whether ``study``'s model is a closed form (no training, so no loss curves to show)."""
    return ((st.configs.get(study) or {}).get("model") or {}).get("type") in CLOSED_FORM


def training_figure(st: Studies, checkpoints: str = "main"):
    """Loss vs images seen per run (colour: K, log scale), from ``train_log``; beside it the
    final loss and wall time per run from ``runs``, one row per study whose model was trained.
    None if neither table has rows or no study trained a model (closed-form models only). The
    main model's runs; ``checkpoints="all"``: every variant's, twin's and snapshot's rows."""
    plt = _plt()
    st = _view(st, checkpoints, ("train_log", "runs"))
    from matplotlib import cm
    from matplotlib.colors import LogNorm

    if not st.has("train_log") and not st.has("runs"):
        return None
    studies = [s for s in st.names if not closed_form(st, s)]
    if not studies:
        return None
    fig, axes = plt.subplots(len(studies), 2, figsize=(11, 3.6 * len(studies)), squeeze=False)
    for i, s in enumerate(studies):
        ax = axes[i][0]
        tl = st.train_log[st.train_log["study"] == s] if st.has("train_log") else pd.DataFrame()
        runs = st.runs[st.runs["study"] == s] if st.has("runs") else pd.DataFrame()
        allk = sorted({int(k) for df in (tl, runs) if len(df) for k in df["K"]} or {1})
        norm = LogNorm(vmin=max(min(allk), 1), vmax=max(max(allk), 2))
        if len(tl):
            for (k, seed), g in tl.groupby(["K", "seed"], sort=True):
                g = g.sort_values("images_seen")
                y = g["loss"].to_numpy(float)
                w = max(1, len(y) // 20)
                smooth = pd.Series(y).rolling(w, min_periods=1).mean().to_numpy()
                color = cm.viridis(norm(k))
                ax.plot(g["images_seen"], y, color=color, alpha=0.2, lw=0.6)
                ax.plot(g["images_seen"], smooth, color=color, lw=1.3, ls="-" if seed == tl["seed"].min() else "--")
            ax.set_yscale("log")
            ax.set_xlabel("images seen")
            ax.set_ylabel("training loss (thin: logged, thick: running mean)")
            fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="K")
        else:
            ax.text(0.5, 0.5, "no train_log table in this study", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        ax.set_title(f"{s}: loss curves (one line per K and seed)", fontsize=9)
        ax = axes[i][1]
        if len(runs):
            g = runs.groupby("K", sort=True)
            ax.plot(g["final_loss"].mean().index, g["final_loss"].mean(), "o-", color="tab:blue", label="final loss")
            ax.set_xscale("log")
            ax.set_xlabel("training-set size K")
            ax.set_ylabel("final loss (mean over seeds)", color="tab:blue")
            ax2 = ax.twinx()
            ax2.plot(g["wall_s"].mean().index, g["wall_s"].mean(), "s--", color="tab:gray")
            ax2.set_ylabel("wall time per run (s)", color="tab:gray")
            ax.set_title(f"{s}: per run (runs table)", fontsize=9)
            ax.grid(alpha=0.3, lw=0.4)
        else:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def _group(df: pd.DataFrame) -> pd.Series:
    """A basin / energy row's group: the sample's label, or the item kind (train / held-out)."""
    kind = df["kind"].astype(str) if "kind" in df else pd.Series("sample", index=df.index)
    label = df["label"].astype(object).where(df["label"].notna(), None) if "label" in df else None
    return pd.Series(np.where((kind == "sample") & label.notna(), label, kind) if label is not None else kind,
                     index=df.index)


def _order(groups) -> list[str]:
    pref = [*LABELS, "train", "held-out"]
    return [g for g in pref if g in set(groups)] + sorted(set(groups) - set(pref))


def _boxes(ax, df: pd.DataFrame, value: str, ylabel: str):
    ks = sorted(df["K"].unique())
    groups = _order(df["_group"])
    width = 0.8 / max(len(groups), 1)
    for gi, g in enumerate(groups):
        data, pos = [], []
        for ki, k in enumerate(ks):
            v = df.loc[(df["K"] == k) & (df["_group"] == g), value].dropna().to_numpy(float)
            if len(v):
                data.append(v)
                pos.append(ki - 0.4 + width * (gi + 0.5))
        if data:
            bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, manage_ticks=False,
                            flierprops=dict(ms=2))
            for b in bp["boxes"]:
                b.set_facecolor(COLORS.get(g, "0.7"))
                b.set_alpha(0.7)
            ax.plot([], [], "s", color=COLORS.get(g, "0.7"), label=g)
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("training-set size K")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, lw=0.4, axis="y")
    ax.legend(fontsize=7)


def basins_figure(st: Studies, checkpoints: str = "main"):
    """Critical time t_crit per K and label (samples) or kind (training / held-out images),
    and the basin radius vs t_crit. None when the ``basins`` table is absent. The main model's
    rows; ``checkpoints="all"``: every checkpoint's."""
    plt = _plt()
    st = _view(st, checkpoints, ("basins",))
    if not st.has("basins"):
        return None
    studies = [s for s in st.names if (st.basins["study"] == s).any()]
    fig, axes = plt.subplots(len(studies), 2, figsize=(12, 3.8 * len(studies)), squeeze=False)
    for i, s in enumerate(studies):
        b = st.basins[st.basins["study"] == s].copy()
        b["_group"] = _group(b)
        _boxes(axes[i][0], b, "t_crit", "critical time t_crit")
        axes[i][0].set_title(f"{s}: t_crit per K (label of the sample, or kind of image)", fontsize=9)
        ax = axes[i][1]
        ks = sorted(b["K"].unique())
        markers = "os^vDPX*"
        for g in _order(b["_group"]):
            for ki, k in enumerate(ks):
                sub = b[(b["_group"] == g) & (b["K"] == k)]
                if len(sub):
                    ax.scatter(sub["t_crit"], sub["radius"], s=14, color=COLORS.get(g, "0.5"),
                               marker=markers[ki % len(markers)], alpha=0.7, label=g if ki == 0 else None)
        for ki, k in enumerate(ks):
            ax.scatter([], [], marker=markers[ki % len(markers)], color="k", s=14, label=f"K = {k}")
        ax.set_xlabel("critical time t_crit")
        ax.set_ylabel("basin radius (mean ||x_t - x|| at t_crit)")
        ax.set_title(f"{s}: radius vs t_crit", fontsize=9)
        ax.grid(alpha=0.3, lw=0.4)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


ENERGY_VALUES = (("energy", "energy = E(ref) - E(item), E = -log p_t (ours)"),
                 ("drift_potential", "drift_potential: integral of the reverse drift (the paper's number)"))


def energy_figure(st: Studies, checkpoints: str = "main"):
    """Per K and label (or item kind), one panel per reference kind and value: ``energy``
    (E(reference) - E(item), E = -log p_t) and ``drift_potential`` (what the paper's code reports
    and plots; beta_t (energy - (|r|^2 - |x|^2) / 4)). None when the ``energy`` table is absent.
    The main model's rows; ``checkpoints="all"``: every checkpoint's."""
    plt = _plt()
    st = _view(st, checkpoints, ("energy",))
    if not st.has("energy"):
        return None
    studies = [s for s in st.names if (st.energy["study"] == s).any()]
    e = st.energy
    refs = sorted(e["reference_kind"].dropna().astype(str).unique()) if "reference_kind" in e else ["all"]
    refs = refs or ["all"]
    values = [(v, lab) for v, lab in ENERGY_VALUES if v in e]
    ncol = len(refs) * len(values)
    fig, axes = plt.subplots(len(studies), ncol, figsize=(6 * ncol, 3.8 * len(studies)), squeeze=False)
    for i, s in enumerate(studies):
        es = e[e["study"] == s].copy()
        es["_group"] = _group(es)
        for j, r in enumerate(refs):
            sub = es if r == "all" else es[es["reference_kind"].astype(str) == r]
            for vi, (value, ylabel) in enumerate(values):
                ax = axes[i][j * len(values) + vi]
                _boxes(ax, sub, value, ylabel)
                ax.axhline(0, color="k", lw=0.6)
                ax.set_title(f"{s}: {value}, references = {r}", fontsize=9)
                ax.yaxis.label.set_size(7)
    fig.tight_layout()
    return fig
