"""Figures of the circle study: energy landscapes, a 3-D surface, learned vs exact energy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...tables import write_figure


def _plt():
    import matplotlib.pyplot as plt

    return plt


def landscapes(lands: list[dict], path) -> Path:
    """Per K: -log p contours, score arrows, training points, samples and attractor centres."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(lands), figsize=(4.2 * len(lands), 4), squeeze=False)
    for ax, L in zip(axes[0], lands):
        g, E = L["grid"], L["energy_grid"]
        # Levels stop at the 90th percentile: the far corners are tens of nats up and would
        # otherwise flatten the basins, which are what the figure is about.
        top = float(np.percentile(E - E.min(), 90))
        cs = ax.contourf(g, g, E - E.min(), levels=np.linspace(0, top, 30), cmap="viridis", extend="max")
        step = max(1, len(g) // 14)
        S = L["score_grid"]
        norm = np.linalg.norm(S, axis=-1, keepdims=True) + 1e-12
        U = S / norm
        ax.quiver(g[::step], g[::step], U[::step, ::step, 0], U[::step, ::step, 1], color="w", alpha=0.6, width=0.004)
        ax.scatter(*L["samples"].T, s=4, c="tab:orange", label="samples", alpha=0.6)
        ax.scatter(*L["train"][:200].T, s=18, c="tab:red", marker="x", label="training points")
        for a in L["attractors"]:
            if a["size"] > 1:
                ax.scatter(*a["centre"], s=60, facecolors="none",
                           edgecolors="white" if a["kind"] == "memorized" else "magenta", linewidths=1.5)
        ax.set_title(f"K = {L['K']}  (-log p, t0 shown; magenta: spurious)", fontsize=8)
        ax.set_aspect("equal")
        fig.colorbar(cs, ax=ax, shrink=0.7)
    axes[0][0].legend(loc="lower left", fontsize=6)
    fig.tight_layout()
    return write_figure(fig, path)


def surface(L: dict, path) -> Path:
    plt = _plt()
    fig = plt.figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot(projection="3d")
    g = L["grid"]
    gx, gy = np.meshgrid(g, g)
    ax.plot_surface(gx, gy, L["energy_grid"] - L["energy_grid"].min(), cmap="viridis", linewidth=0)
    ax.set_title(f"energy surface, K = {L['K']}", fontsize=9)
    return write_figure(fig, path)


def learned_vs_exact(cmp: dict, k: int, path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.5))
    ax.plot(cmp["radii"], cmp["learned"] - cmp["learned"].min(), "o-", label=f"learned, K = {k}")
    ax.plot(cmp["radii"], cmp["exact"] - cmp["exact"].min(), "--", label=f"exact DenseAM, beta = {cmp['beta']:.0f}")
    ax.set_xlabel("radius R")
    ax.set_ylabel("-log p (shifted)")
    ax.set_title(f"along the radius: largest error of E(R) - E(1) on [0.7, 1.3]: {cmp['max_error_core']:.2f}",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return write_figure(fig, path)


def memorized_vs_chance(fractions_df, chance: dict, path) -> Path:
    """The memorized fraction beside what a model that had learned the whole circle would get
    (``chance``: K -> study.chance_memorized): where the two meet, the Euclidean threshold no
    longer separates copies from new points, and the ratio test is the better guide."""
    plt = _plt()
    df = fractions_df.groupby("K").mean(numeric_only=True)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(df.index, df["memorized"], "o-", color="tab:red", label="memorized (d_train <= delta_m)")
    ax.plot(df.index, df["ratio_memorized"], "s--", color="tab:purple", label="ratio test < 1/3")
    ks = sorted(chance)
    ax.plot(ks, [chance[k] for k in ks], "k:", label="chance: the whole circle, labelled")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training-set size K")
    ax.set_ylabel("fraction of samples")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return write_figure(fig, path)
