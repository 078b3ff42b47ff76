"""The transition figures of loaded studies (:func:`raystudy.analysis.load`): the fractions vs K
with their intervals, the crossing K, EMM, the spurious peak and the null, one panel per metric
and study (:func:`transition_figure`), and several studies on one axis (:func:`compare_figure`).

Each shows every study's main model, as ``raystudy show`` and the report do (``Studies.main``:
the config's first variant at its final snapshot, twin 0); ``checkpoints="all"`` pools every
snapshot, variant and twin into one curve instead. The phase diagram
(:mod:`raystudy.analysis.plots.phase`) is where the checkpoints are told apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..fractions import CURVE_TABLES, curves, null_curve
from ..load import LABELS, Studies
from ..summaries import format_k, k_at, k_range, summary
from .style import COLOR_NAMES, COLORS, STUDY_COLORS, k_axis, pyplot


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
    checkpoint pooled (:func:`raystudy.analysis.summaries.summary`)."""
    import textwrap

    plt = pyplot()
    st = st.view(checkpoints, CURVE_TABLES)
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
    study's main model; ``checkpoints="all"``: every checkpoint pooled (:func:`raystudy.analysis.summaries.summary`)."""
    plt = pyplot()
    st = st.view(checkpoints, CURVE_TABLES)
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
