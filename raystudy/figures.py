"""Figures drawn from the tables: the transition curve and the nearest-neighbour grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import tables

COLORS = {"memorized": "tab:red", "spurious": "tab:orange", "generalized": "tab:green"}


def _save(fig, path: Path) -> Path:
    with tables.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def draw_study(stage, cfg, study_dir) -> None:
    """The figures stage: the transition curve and, for images, the nearest-neighbour grid;
    for the circle, its landscapes and energies (raystudy.toy.report)."""
    from .datasets import load_dataset

    fig_dir = Path(study_dir) / "figures"
    transition_curve(tables.read_pandas(study_dir, "fractions"), fig_dir / "transition.png")
    if cfg.data.name == "circle":
        from .toy.report import circle_report

        circle_report(cfg, study_dir)
    else:
        nn_grid(study_dir, load_dataset(cfg.data), fig_dir / "nn_grid.png")
    tables.write_text(fig_dir / "made-with.json", json.dumps(stage.meta(cfg, ("all",))))


def transition_curve(fractions_df, path) -> Path:
    """Fraction of memorized / spurious / generalized samples vs K (log axis), one panel per metric;
    the line is the mean over seeds, the band its min-max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted(fractions_df["metric"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        df = fractions_df[fractions_df.metric == metric]
        g = df.groupby("K")
        for lab, color in COLORS.items():
            mean, lo, hi = g[lab].mean(), g[lab].min(), g[lab].max()
            ax.plot(mean.index, mean.values, "o-", color=color, label=lab)
            ax.fill_between(mean.index, lo.values, hi.values, color=color, alpha=0.15)
        if "ratio_memorized" in df:
            r = g["ratio_memorized"].mean()
            ax.plot(r.index, r.values, "s--", color="tab:purple", alpha=0.8, label="ratio test < 1/3")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("training-set size K")
        ax.set_ylabel("fraction of samples")
        ax.set_title(f"metric: {metric}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="center right")
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def _show(ax, img):
    img = (np.clip(img, -1, 1) + 1) / 2
    ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([]); ax.set_yticks([])


def nn_grid(study_dir, dataset, path, metric: str = "l2", ks=None, seed: int | None = None,
            n_samples: int = 4, n_neighbors: int = 3) -> Path:
    """Rows: K; each sample followed by its nearest training images, titled with distances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nb = tables.read_pandas(study_dir, "neighbors")
    nb = nb[nb.metric == metric]
    samples = tables.read_pandas(study_dir, "samples")
    samples = samples[samples.set == "eval"]
    ks = sorted(nb.K.unique()) if ks is None else ks
    seed = int(nb.seed.min()) if seed is None else seed
    cols = n_samples * (1 + n_neighbors)
    fig, axes = plt.subplots(len(ks), cols, figsize=(cols * 0.9, len(ks) * 1.1), squeeze=False)
    for r, k in enumerate(ks):
        rows = nb[(nb.K == k) & (nb.seed == seed)].sort_values("sample_id").head(n_samples)
        for j, row in enumerate(rows.itertuples()):
            s = samples[(samples.K == k) & (samples.seed == seed) & (samples.sample_id == row.sample_id)].iloc[0]
            c0 = j * (1 + n_neighbors)
            _show(axes[r][c0], np.asarray(s.image, np.float32).reshape(s.channels, s.height, s.width))
            axes[r][c0].set_title("sample", fontsize=6)
            for i in range(min(n_neighbors, len(row.train_idx))):
                if row.train_idx[i] < 0:
                    continue
                _show(axes[r][c0 + 1 + i], dataset.get([row.train_idx[i]])[0])
                axes[r][c0 + 1 + i].set_title(f"{row.train_dist[i]:.3f}", fontsize=6)
        axes[r][0].set_ylabel(f"K={k}", fontsize=8)
        for ax in axes[r]:
            if not ax.images:
                ax.axis("off")
    fig.suptitle(f"samples and their nearest training images ({metric} distance)", fontsize=9)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out
