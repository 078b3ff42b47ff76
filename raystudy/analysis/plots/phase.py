"""The phase diagram's figures, each drawn from a table of :mod:`raystudy.analysis.phase`
(:func:`raystudy.analysis.phase.phase_tables`): the fractions over K x training time
(:func:`phase_figure`) and over K x model size (:func:`size_figure`), tau_mem(K) with its
exponent and tau_gap(K) beside it (:func:`tau_figure`), the held-out gap over training
(:func:`gap_figure`), the crossing K per snapshot and variant (:func:`crossing_figure`) and twin
reproducibility (:func:`twins_figure`). Each returns None where its axis is absent."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..fractions import group_keys
from ..load import with_axes
from ..phase import final_snapshots
from .style import COLORS, STUDY_COLORS, k_axis, pyplot

# tau_gap sits this factor right of its K on the log K axis: beside tau_mem, not on it.
GAP_SHIFT = 1.07


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


def _rows_of(df: pd.DataFrame | None, keys: list, values: tuple) -> pd.DataFrame:
    """The rows of ``df`` whose ``keys`` (those it has) hold ``values``."""
    if df is None or df.empty:
        return pd.DataFrame()
    sel = np.ones(len(df), bool)
    for k_, v in zip(keys, values):
        if k_ in df:
            sel &= (df[k_] == v).to_numpy()
    return df[sel]


def _gaps_on_tau(ax, gaps: pd.DataFrame, col, variant) -> None:
    """tau_gap per run, at K x GAP_SHIFT: open squares with their bracket as bars
    (clipped like tau_mem's), an open triangle at the last evaluation where the gap never opened."""
    ok = gaps[~gaps["censored"].astype(bool)]
    if len(ok):
        y = ok["tau_gap"].to_numpy(float)
        lo = np.clip(ok["tau_gap_lo"].to_numpy(float), ok["t_min"].to_numpy(float) / 3, None)
        hi = np.clip(ok["tau_gap_hi"].to_numpy(float), None, ok["t_max"].to_numpy(float) * 3)
        ax.errorbar(ok["K"].to_numpy(float) * GAP_SHIFT, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)],
                    fmt="s", color=col, mfc="w", capsize=2, ms=5, label=f"{variant}: tau_gap (held-out gap opens)")
    cens = gaps[gaps["censored"].astype(bool)]
    if len(cens):
        ax.plot(cens["K"].to_numpy(float) * GAP_SHIFT, cens["t_max"], marker="^", color=col, mfc="none", ms=8, ls="none",
                label=f"{variant}: tau_gap censored (gap not open by the last evaluation)")


def tau_figure(tau: pd.DataFrame, expo: pd.DataFrame | None = None, gaps: pd.DataFrame | None = None):
    """tau_mem vs K on log-log axes, one panel per (study, metric), one colour per variant:
    points and error bars (the interval), triangles for censored K (the bound: above the last
    snapshot / below the first), the fitted c K^b with b and its interval, and slope 1 (dotted,
    Bonnaire et al.). Beside it, in the variant's colour, tau_gap per run (``gaps``:
    :func:`raystudy.analysis.phase.tau_gap`): open squares with their bracket, an
    open triangle at the last evaluation where the gap never opened. None without tau."""
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
            g_runs = _rows_of(gaps, [k_ for k_ in keys if k_ != "metric"] + ["variant"],
                              tuple(v for k_, v in zip(keys, gk) if k_ != "metric") + (variant,))
            if len(g_runs):
                _gaps_on_tau(ax, g_runs, col, variant)
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
        with_gap = gaps is not None and len(gaps) > 0
        if with_gap:
            k_axis(ax, g["K"])
        else:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training-set size K")
        ax.set_ylabel("images seen: tau_mem, tau_gap" if with_gap else "tau_mem: images seen when memorized > 1/2")
        ax.set_title((" · ".join(map(str, gk)) or "tau_mem") + (": tau_mem (filled), tau_gap (open)" if with_gap else ""),
                     fontsize=9)
        ax.grid(alpha=0.3, which="both", lw=0.4)
        # Beside the axes where tau_gap doubles the markers: inside it would cover some of them.
        ax.legend(fontsize=7, **({"loc": "upper left", "bbox_to_anchor": (1.02, 1)} if with_gap else {}))
    note = ("bars: 95% interval (logistic in ln t, profile likelihood clipped to the snapshots' bracket);"
            " ▲ not memorized by the last snapshot (tau above it), ▼ memorized at the first (tau below it)")
    if gaps is not None and len(gaps):
        note += ("\nopen squares, right of their K: tau_gap per run (the held-out gap opens), bars: its 95% "
                 "bracket (where the training loss reaches half the held-out loss);\n△ the gap did not open by "
                 "the last evaluation (tau_gap above it)")
    fig.text(0.5, -0.02, note, ha="center", va="top", fontsize=7)
    fig.tight_layout()
    return fig


def gap_curve(run: pd.DataFrame, timestep: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(images seen, held-out minus training loss) of one run's ``loss_curves`` rows: at noise
    level ``timestep``, or the mean over the levels where it is -1 (a run whose gap never
    opened has no leading level)."""
    gap = run["held_out_loss"].to_numpy(float) - run["train_loss"].to_numpy(float)
    at = run["images_seen"].to_numpy()
    if timestep >= 0:
        pick = run["timestep"].to_numpy() == timestep
        gap, at = gap[pick], at[pick]
    g = pd.Series(gap).groupby(at).mean()
    return g.index.to_numpy(float), g.to_numpy(float)


def gap_figure(loss_curves: pd.DataFrame | None, gaps: pd.DataFrame | None = None):
    """The held-out gap (held-out minus training loss) vs images seen (log axis), one panel per
    (study, variant), one line per run coloured by K (dashed: seeds after the first): at the
    noise level whose rise opened the gap (``gap_timestep`` of ``gaps``,
    :func:`raystudy.analysis.phase.tau_gap`), the mean over the levels where it never opened. A
    dot at tau_gap, its bracket a horizontal bar at the dot's height (to the last
    evaluation where the bracket is open). None without loss curves."""
    plt = pyplot()
    from matplotlib import cm
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter

    lc = with_axes(loss_curves)
    if lc.empty:
        return None
    keys = [c for c in ("study",) if c in lc] + ["variant"]
    groups = list(lc.groupby(keys, sort=True))
    ks = lc["K"].astype(float)
    norm = LogNorm(vmin=max(ks.min(), 1), vmax=max(ks.max(), ks.min() + 1, 2))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups) + 0.8, 3.9), squeeze=False,
                             layout="constrained")
    for j, (gkey, g) in enumerate(groups):
        ax = axes[0][j]
        gk = gkey if isinstance(gkey, tuple) else (gkey,)
        first_seed = g["seed"].min()
        several = g["seed"].nunique() > 1
        for (k, seed), run in g.groupby(["K", "seed"], sort=True):
            row = _rows_of(gaps, [*keys, "K", "seed"], (*gk, k, seed))
            opened = len(row) > 0 and not bool(row["censored"].iloc[0])
            ts = int(row["gap_timestep"].iloc[0]) if opened else -1
            x, y = gap_curve(run, ts)
            color = cm.viridis(norm(k))
            where = f"t = {ts}" if opened else "mean over levels"
            ax.plot(x, y, "-" if seed == first_seed else "--", color=color, lw=1.3,
                    label=f"K = {k}{f', seed {seed}' if several else ''} ({where})")
            if opened:
                tau = float(row["tau_gap"].iloc[0])
                y0 = float(y[np.argmin(np.abs(x - tau))])
                lo, hi = float(row["tau_gap_lo"].iloc[0]), float(row["tau_gap_hi"].iloc[0])
                ax.hlines(y0, min(lo, tau), min(hi, x.max()), color=color, lw=2.5, alpha=0.5)
                ax.scatter([tau], [y0], color=[color], edgecolors="k", s=30, zorder=3)
        ax.axhline(0, color="0.5", lw=0.6)
        k_axis(ax, g["images_seen"])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel("images seen")
        ax.set_ylabel("held-out minus training loss")
        ax.set_title(f"{' · '.join(map(str, gk))}: held-out gap (dot: tau_gap)", fontsize=9)
        ax.grid(alpha=0.3, which="both", lw=0.4)
        ax.legend(fontsize=6)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axes, label="K", shrink=0.8)
    bar.ax.minorticks_off()
    bar.set_ticks(sorted(set(ks)), labels=[f"{k:g}" for k in sorted(set(ks))])
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
