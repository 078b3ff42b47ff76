"""Sample galleries: at every K, randomly drawn samples of the labelled (``eval``) set, each
with its label, so the transition is seen at every K and not only where neighbour grids are
drawn. The draw is by a fixed seed: the same study gives the same gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..load import AnalysisError, read_table
from .style import COLORS


def pick_random(labels, n: int, seed: int = 0) -> list[int]:
    """``n`` sample ids of one (K, seed) drawn uniformly without replacement, in id order."""
    ids = np.sort(labels["sample_id"].astype(int).to_numpy())
    if len(ids) <= n:
        return ids.tolist()
    return np.sort(np.random.default_rng(seed).choice(ids, size=n, replace=False)).tolist()


def sample_gallery(study_dir, metric: str = "l2", seed: int | None = None, n: int = 8, draw_seed: int = 0):
    """A figure: one row per K (ascending), ``n`` random eval samples of model ``seed`` (default:
    the lowest) with their ``metric`` label and d_train under each. None if no labels."""
    import matplotlib.pyplot as plt
    import pyarrow.compute as pc

    from ...axes import main_filter
    from ..load import read_config

    study_dir = Path(study_dir)
    at = main_filter(read_config(study_dir))  # the main checkpoint (raystudy.axes)
    labels = read_table(study_dir, "labels", filters=(pc.field("metric") == metric) & at)
    if labels.empty:
        raise AnalysisError(f"{study_dir}: no labels for metric {metric!r}")
    seed = int(labels["seed"].min()) if seed is None else seed
    labels = labels[labels["seed"] == seed]
    ks = sorted(int(k) for k in labels["K"].unique())
    picked = {k: pick_random(labels[labels["K"] == k], n, draw_seed) for k in ks}
    # Only the drawn rows are read, row group by row group (a unit holds up to 51,200 samples).
    ids = sorted({int(i) for v in picked.values() for i in v})
    sm = read_table(study_dir, "samples", by_row_group=True, filters=(pc.field("set") == "eval")
                    & (pc.field("seed") == seed) & at & pc.field("K").isin(ks) & pc.field("sample_id").isin(ids))
    pix = {(int(r.K), int(r.sample_id)): np.asarray(r.image, np.float32).reshape(r.channels, r.height, r.width)
           for r in sm.itertuples()}
    info = labels.set_index(["K", "sample_id"])
    cols = max(len(v) for v in picked.values())
    fig, axes = plt.subplots(len(ks), cols, figsize=(1.05 * cols + 0.6, 1.25 * len(ks) + 0.5), squeeze=False)
    for r, k in enumerate(ks):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(picked[k]):
                ax.set_axis_off()
                continue
            sid = picked[k][c]
            img = (np.clip(pix[(k, sid)], -1, 1) + 1) / 2
            ax.imshow(img[0] if img.shape[0] == 1 else img[:3].transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            row = info.loc[(k, sid)]
            colour = COLORS.get(row["label"], "k")
            for side in ax.spines.values():
                side.set_edgecolor(colour)
                side.set_linewidth(2.5)
            ax.set_xlabel(f"{row['label']}\nd_train {row['d_train']:.3g}", fontsize=6, color=colour, labelpad=2)
            if c == 0:
                ax.set_ylabel(f"K = {k}", fontsize=8)
    fig.suptitle(f"Random eval samples per K (seed {seed}), labelled by {metric}", fontsize=9)
    fig.tight_layout()
    return fig
