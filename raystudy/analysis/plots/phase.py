"""The phase diagram's figures, each drawn from a table of :mod:`raystudy.analysis.phase`
(:func:`raystudy.analysis.phase.phase_tables`): the fractions over K x training time
(:func:`phase_figure`) and over K x model size (:func:`size_figure`), tau_mem(K) with its
exponent (:func:`tau_figure`), the crossing K per snapshot and variant (:func:`crossing_figure`)
and twin reproducibility (:func:`twins_figure`). Each returns None where its axis is absent."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..fractions import group_keys
from ..phase import final_snapshots
from .style import COLORS, STUDY_COLORS, pyplot


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
    plt = pyplot()
    if pt.empty or pt["images_seen"].nunique() < 2:
        return None
    keys = [*group_keys(pt), "variant"]
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


def size_figure(pt: pd.DataFrame):
    """Heatmaps of each fraction over K x model size (parameters) at each variant's final
    snapshot, one row of panels per (study, metric). None with one variant."""
    plt = pyplot()
    if pt.empty or pt["variant"].nunique() < 2:
        return None
    fin = final_snapshots(pt).copy()
    fin["size"] = [f"{v} ({p / 1e3:.0f}k)" if np.isfinite(p) else str(v)
                   for v, p in zip(fin["variant"], fin["params"].astype(float))]
    fin["order"] = fin["params"].astype(float).fillna(0)
    keys = group_keys(fin)
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
    plt = pyplot()
    if tau is None or tau.empty:
        return None
    keys = group_keys(tau)
    groups = list(tau.groupby(keys, sort=True)) if keys else [((), tau)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    for j, (gkey, g) in enumerate(groups):
        ax = axes[0][j]
        gk = gkey if isinstance(gkey, tuple) else (gkey,)
        for i, (variant, h) in enumerate(g.groupby("variant", sort=True)):
            col = STUDY_COLORS[i % len(STUDY_COLORS)]
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
    plt = pyplot()
    if cb.empty or (cb["images_seen"].nunique() < 2 and cb["variant"].nunique() < 2):
        return None
    keys = group_keys(cb)
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
            draw(ax, h["images_seen"].to_numpy(float), h, STUDY_COLORS[i % len(STUDY_COLORS)], str(variant))
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
    plt = pyplot()
    if rep is None or rep.empty:
        return None
    rep = final_snapshots(rep)
    keys = [*group_keys(rep), "variant"]
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
                ax.plot(m["K"], m["memorized"], "s--", color=COLORS["memorized"], label="memorized")
                ax.fill_between(m["K"], m["memorized_lo"], m["memorized_hi"], color=COLORS["memorized"], alpha=0.12, lw=0)
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
