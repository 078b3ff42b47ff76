"""Nearest-neighbour grids: a sample beside its top-k training images and its top-k neighbours
in the other (independent) sample set, each with its distance written under it.

Generated images come from the ``samples`` table (``eval`` set: the labelled samples; ``ref``
set: where ``synth_idx`` points). Training images are not in the tables (``train_idx`` are
dataset indices): for ``digits`` they are read from scikit-learn's copy directly; for any
other dataset :func:`train_images` imports ``raystudy.datasets`` lazily, inside the call, and that
is the one function of this package that may touch torch (only when the config resizes
images). When the pixels cannot be read the grid shows the sample-set neighbours only and
says so in its title.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from .load import AnalysisError, read_config, read_table


@functools.lru_cache(maxsize=4)
def _dataset(data_json: str):
    data = json.loads(data_json)
    name = data.get("name", "digits")
    if name == "digits" and data.get("image_size") in (None, 8):
        from ..datasets.files import digits

        x = digits()
        if data.get("limit"):
            x = x[: data["limit"]]
        return x.__getitem__
    # Lazily, and only here: raystudy.datasets reads every dataset without torch except when
    # data.image_size asks for a resize (and the manifold, which renders with torch).
    from ..config import DataSection
    from ..datasets import load_dataset

    return load_dataset(DataSection(**data)).get


def train_images(config: dict, idx) -> tuple[np.ndarray | None, str]:
    """Training images at dataset indices ``idx`` as (len(idx), C, H, W) in [-1, 1], and ''; or
    (None, why) when the dataset's pixels cannot be read here."""
    data = (config or {}).get("data") or {"name": "digits"}
    try:
        get = _dataset(json.dumps(data, sort_keys=True))
        return np.asarray(get(np.asarray(idx, dtype=np.int64))), ""
    except Exception as e:  # noqa: BLE001 - any failure means "no pixels", said in the figure
        return None, f"training images of dataset {data.get('name')!r} unavailable ({type(e).__name__}: {e})"


def pick_samples(labels, n: int) -> "list[int]":
    """``n`` sample ids spread evenly over the d_train order (closest to farthest)."""
    lab = labels.sort_values(["d_train", "sample_id"])
    if len(lab) <= n:
        return lab["sample_id"].astype(int).tolist()
    pos = np.unique(np.linspace(0, len(lab) - 1, n).round().astype(int))
    return lab["sample_id"].iloc[pos].astype(int).tolist()


def nn_grid(study_dir, K: int | None = None, label: str | None = "memorized", metric: str = "l2",
            seed: int | None = None, n: int = 5, k: int = 3, config: dict | None = None):
    """A figure: rows are samples of size-K model ``seed`` with ``label`` (None: any label),
    columns the sample, its top-``k`` training neighbours and its top-``k`` neighbours in the
    other sample set, distances (``metric`` units) under each image. ``K`` defaults to the K
    with the most samples of that label. Returns None when no sample has that label."""
    import matplotlib.pyplot as plt
    import pyarrow.compute as pc

    study_dir = Path(study_dir)
    config = read_config(study_dir) if config is None else config
    from ..axes import main_filter

    at = main_filter(config)  # the main checkpoint (a study with snapshots, variants or twins has more)
    labels = read_table(study_dir, "labels", filters=(pc.field("metric") == metric) & at)
    if labels.empty:
        raise AnalysisError(f"{study_dir}: no labels for metric {metric!r}")
    if label is not None:
        labels = labels[labels["label"] == label]
        if labels.empty:
            return None
    if K is None:
        K = int(labels["K"].value_counts().sort_index().idxmax())
    labels = labels[labels["K"] == K]
    if labels.empty:
        return None
    seed = int(labels["seed"].min()) if seed is None else seed
    labels = labels[labels["seed"] == seed]
    if labels.empty:
        return None
    ids = pick_samples(labels, n)
    flt = (pc.field("K") == K) & (pc.field("seed") == seed) & at
    # Only the drawn rows are read (a sweep holds 51,200 samples per K; the grid draws a few):
    # the shown samples' neighbours, then those samples and their top-k ref neighbours.
    nb = read_table(study_dir, "neighbors", filters=flt & (pc.field("metric") == metric)
                    & pc.field("sample_id").isin(ids)).set_index("sample_id")
    ref_ids = sorted({int(j) for sid in ids if sid in nb.index for j in nb.loc[sid, "synth_idx"][:k] if j >= 0})
    sm = read_table(study_dir, "samples", by_row_group=True, filters=flt & (
        ((pc.field("set") == "eval") & pc.field("sample_id").isin(ids))
        | ((pc.field("set") == "ref") & pc.field("sample_id").isin(ref_ids))))
    pix = {(r.set, int(r.sample_id)): np.asarray(r.image, np.float32).reshape(r.channels, r.height, r.width)
           for r in sm.itertuples()}
    # k training indices per row (padded with -1 where a row has fewer, e.g. K < k)
    tidx = np.full((len(ids), k), -1, dtype=np.int64)
    for r, sid in enumerate(ids):
        got = np.asarray(nb.loc[sid, "train_idx"], dtype=np.int64)[:k]
        tidx[r, : len(got)] = got
    timg, why = train_images(config, np.maximum(tidx.ravel(), 0)) if len(ids) else (None, "")
    lab_of = labels.set_index("sample_id")["label"]

    # One mosaic image and one axes (a grid of 35 axes takes seconds to lay out and save).
    first = next(iter(pix.values()))
    C, H, W = first.shape
    gx, gy, gap = W * 0.12, H * 0.55, W * 0.45      # between cells, below cells (text), between groups
    x0 = [0.0] + [W + gap + i * (W + gx) for i in range(k)] + \
         [W + gap + k * (W + gx) - gx + gap + i * (W + gx) for i in range(k)]
    width, height = x0[-1] + W, len(ids) * (H + gy)
    # About 64 screen pixels a cell (8x at 8x8 digits, 2x at 32x32): the mosaic of a CIFAR-sized
    # grid at 8x would be ~60 MB of float32 before matplotlib copies it.
    scale = float(max(1, round(64 / max(H, W))))
    canvas = np.ones((int(np.ceil(height * scale)), int(np.ceil(width * scale)), 3), np.float32)

    def put(r, c, img):
        img = (np.clip(np.asarray(img, np.float32), -1, 1) + 1) / 2
        img = np.repeat(img, 3, 0) if img.shape[0] == 1 else img[:3]
        img = img.transpose(1, 2, 0).repeat(int(scale), 0).repeat(int(scale), 1)
        y, x = int(round(r * (H + gy) * scale)), int(round(x0[c] * scale))
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img

    texts = []  # (row, column, text, fontsize)
    for r, sid in enumerate(ids):
        row = nb.loc[sid]
        if ("eval", sid) in pix:
            put(r, 0, pix[("eval", sid)])
        texts.append((r, 0, f"#{sid} {lab_of.get(sid, '')}\nd_train {row['train_dist'][0]:.3g}\n"
                             f"d_synth {row['synth_dist'][0]:.3g}", 6))
        for i in range(k):
            if tidx[r, i] >= 0:
                if timg is not None:
                    put(r, 1 + i, timg[r * k + i])
                else:
                    put(r, 1 + i, np.zeros((1, H, W)))
                    texts.append((r, 1 + i, f"train\n#{tidx[r, i]}", None))
                texts.append((r, 1 + i, f"{row['train_dist'][i]:.3g}", 7))
            ref = pix.get(("ref", int(row["synth_idx"][i]))) if i < len(row["synth_idx"]) else None
            if ref is not None:
                put(r, 1 + k + i, ref)
                texts.append((r, 1 + k + i, f"{row['synth_dist'][i]:.3g}", 7))
    inch = 0.95 / W  # inches per pixel unit: one cell about 0.95 in wide
    fig, ax = plt.subplots(figsize=(width * inch + 0.4, height * inch + 0.9))
    ax.imshow(canvas, extent=(0, width, height, 0), interpolation="nearest")
    for r, c, t, fs in texts:
        if fs is None:  # a placeholder's text sits on the cell
            ax.text(x0[c] + W / 2, r * (H + gy) + H / 2, t, ha="center", va="center", fontsize=6, color="w")
        else:
            ax.text(x0[c] + W / 2, r * (H + gy) + H + gy * 0.08, t, ha="center", va="top", fontsize=fs)
    heads = ["sample"] + [f"train NN{i + 1}" for i in range(k)] + [f"other set NN{i + 1}" for i in range(k)]
    for c, t in enumerate(heads):
        ax.text(x0[c] + W / 2, -gy * 0.15, t, ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0, width)
    ax.set_ylim(height, -gy * 0.8)
    ax.set_axis_off()
    what = label if label is not None else "all labels"
    title = f"K = {K}, seed {seed}, {what}: nearest neighbours ({metric} distance under each image)"
    if timg is None and why:
        title += f"\n{why}: sample-set neighbours only"
    ax.set_title(title, fontsize=8, pad=14)
    return fig
