"""What the other stages measured: the training runs (:func:`training_figure`, with
:func:`training_notes` saying why a study has none), the basins (:func:`basins_figure`) and the
energies (:func:`energy_figure`) per K and label. Each shows every study's main model;
``checkpoints="all"``: every checkpoint's rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..load import LABELS, Studies
from .style import COLORS, pyplot


def closed_form(st: Studies, study: str) -> bool:
    """Whether ``study``'s model is a closed form (no training, so no loss curves to show)."""
    from ...models.kinds import kind

    return kind(st.configs.get(study) or {}).closed_form


def training_figure(st: Studies, checkpoints: str = "main"):
    """Loss vs images seen per run (colour: K, log scale), from ``train_log``; beside it the
    final loss and wall time per run from ``runs``, one row per study whose model was trained.
    None if neither table has rows or no study trained a model (closed-form models only). The
    main model's runs; ``checkpoints="all"``: every variant's, twin's and snapshot's rows."""
    plt = pyplot()
    st = st.view(checkpoints, ("train_log", "runs"))
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


def training_notes(st: Studies) -> list[str]:
    """Why a study shows no loss curves: its train_log table is absent (no part written) or
    empty. A closed-form model (nothing trained) needs no word."""
    from ... import tables as _tables

    notes = []
    for s in st.names:
        if closed_form(st, s) or (st.has("train_log") and (st.train_log["study"] == s).any()):
            continue
        pre = f"{s}: " if len(st.names) > 1 else ""
        if any(_tables.table_dir(st.dirs[s], "train_log").glob("part-*.parquet")):
            notes.append(f"{pre}train_log table empty: no loss curves")
        elif st.has("runs") and (st.runs["study"] == s).any():
            notes.append(f"{pre}train_log table absent: no loss curves (runs table only)")
        else:
            notes.append(f"{pre}train_log and runs tables absent: no training figure")
    return notes


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
    plt = pyplot()
    st = st.view(checkpoints, ("basins",))
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
    plt = pyplot()
    st = st.view(checkpoints, ("energy",))
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
