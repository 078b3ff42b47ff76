"""The distances and thresholds figures: d_train and d_synth per K with the thresholds that cut
them (:func:`distances_figure`), and the transition relabelled over a grid of thresholds
(:func:`thresholds_figure`, from :func:`raystudy.analysis.thresholds.threshold_grid`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..load import LABELS, Studies
from ..summaries import format_k
from .style import COLORS, pyplot


def distances_figure(st: Studies, study: str, metric: str, checkpoints: str = "main"):
    """Histograms of d_train and d_synth per K (rows), stacked by label, on log-spaced bins,
    with the study's thresholds delta_m / delta_s drawn: the bimodality a threshold cuts. The
    main model's samples; ``checkpoints="all"``: every checkpoint's."""
    plt = pyplot()
    st = st.view(checkpoints, ("labels",))
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
    plt = pyplot()
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
