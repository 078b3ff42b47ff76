"""Samples we did not generate, as a study's ``samples`` table (``raystudy import-samples``).

A user of the paper's code holds its synthetic sets as ``.npz`` files (its ``run_generate.py``:
key ``samples``, (n, C, H, W) floats in [-1, 1], many files per K), or any folder of PNGs. This
writes them as the (K, seed) unit of a study: a ``runs`` row (model ``imported``, checkpoint =
the source) and the ``eval`` and ``ref`` sample sets, with the train and generate stages'
fingerprints, so ``raystudy run`` finds both stages complete for that unit and runs knn,
classify and the figures on them. The basins and energy stages need a model: not for imports.
``sample_seed`` is -1 (we cannot reproduce an imported sample).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import axes, tables
from .errors import DataError

IMPORTED = "imported"


def _to_unit_range(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    x = x.astype(np.float32)
    if x.size and (x.min() < -1.001 or x.max() > 1.001):
        raise DataError(f"{where}: values span [{x.min():.3g}, {x.max():.3g}]; expected images in [-1, 1] "
                        "(the paper's samples) or uint8")
    return np.clip(x, -1.0, 1.0)


def _npz(path: Path) -> np.ndarray:
    with np.load(path) as f:
        if "samples" not in f:
            raise DataError(f"{path}: no 'samples' array (keys: {', '.join(f.files) or 'none'})")
        return _to_unit_range(f["samples"], str(path))


def _png(path: Path, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return _to_unit_range(a.astype(np.uint8), str(path))[None]


def read_images(source, shape: tuple[int, int, int]) -> np.ndarray:
    """Images (n, C, H, W) float32 in [-1, 1] from a ``.npz`` file, or a folder of ``.npz`` files or
    of PNGs (files in name order), checked against the dataset's ``shape``."""
    source = Path(source)
    if source.is_file() and source.suffix == ".npz":
        files, kind = [source], "npz"
    elif source.is_dir():
        npz, png = sorted(source.glob("*.npz")), sorted(source.glob("*.png"))
        files, kind = (npz, "npz") if npz else (png, "png")
    else:
        raise DataError(f"{source}: not a .npz file or a folder of .npz / .png files")
    if not files:
        raise DataError(f"{source}: holds no .npz or .png files")
    parts = [_npz(f) if kind == "npz" else _png(f, shape[0]) for f in files]
    parts = [p if p.ndim == 4 else p[None] for p in parts]
    for f, p in zip(files, parts):
        if p.shape[1:] != parts[0].shape[1:]:
            raise DataError(f"{f}: images of {p.shape[1:]} beside {files[0].name}'s {parts[0].shape[1:]}: "
                            f"every file of {source} must hold images of one size")
    x = np.concatenate(parts)
    if x.ndim == 4 and x.shape[-1] == shape[0] and x.shape[1] != shape[0]:  # (n, H, W, C)
        x = x.transpose(0, 3, 1, 2)
    if tuple(x.shape[1:]) != tuple(shape):
        raise DataError(f"{source}: images are {tuple(x.shape[1:])}, the study's dataset is {tuple(shape)} (C, H, W)")
    return np.ascontiguousarray(x, dtype=np.float32)


def import_samples(cfg, study_dir, k: int, seed: int, source, ref=None) -> dict[str, int]:
    """Write ``source`` (and ``ref``) as the samples of unit (K, seed). Without ``ref`` the source's
    first ``generate.n_samples`` images are the eval set and the next ones the ref set. Returns
    the rows written per set."""
    from . import config as config_mod
    from .datasets import load_dataset
    from .stages.shards import shard_meta, shard_name, shards, shards_to_write
    from .study import GENERATE, TRAIN, study_folder, validate_against_data

    if k not in cfg.ks or seed not in cfg.seeds:
        raise DataError(f"import-samples: K={k}, seed={seed} is not a unit of the config (ks {list(cfg.ks)}, "
                        f"seeds {list(cfg.seeds)})")
    dataset = load_dataset(cfg.data)
    validate_against_data(cfg, dataset)
    n = cfg.generate.n_samples
    x = read_images(source, dataset.shape)
    sets = {"eval": x[:n], "ref": read_images(ref, dataset.shape)[:n] if ref is not None else x[n:2 * n]}
    for name, imgs in sets.items():
        if len(imgs) < n:
            have = len(x) if ref is None else len(imgs)
            raise DataError(f"import-samples: {have} images for the {name} set; generate.n_samples={n} per set "
                            f"({'eval + ref = ' + str(2 * n) if ref is None else n} needed): pass --ref, or "
                            "--set generate.n_samples=...")
    study_dir = study_folder(study_dir)
    config_mod.save(cfg, study_dir)
    unit = (k, seed)
    part = TRAIN.part(unit)
    meta = TRAIN.meta(cfg, unit)
    tables.write_part(study_dir, "train_log", part, tables.to_table("train_log", {
        c: [] for c in tables.SCHEMAS["train_log"].names}, meta))
    tables.write_part(study_dir, "runs", part, tables.to_table("runs", {
        "K": [k], "seed": [seed], "variant": ["base"], "twin": [0], "model": [IMPORTED], "steps": [0],
        "images_seen": [0], "final_loss": [np.nan], "checkpoint": [str(Path(source).resolve())], "wall_s": [0.0],
        "params": [0]}, meta))
    rows = cfg.generate.part_size
    cut = shards(n, rows)
    base = GENERATE.part(unit)
    wanted = [shard_name(base, i, name) for name in sets for i, _, _ in cut]
    smeta = shard_meta(GENERATE.meta(cfg, unit), len(wanted), rows)
    shards_to_write(study_dir, "samples", base, wanted, smeta)  # clears what a previous import left
    c, h, w = dataset.shape
    for name, imgs in sets.items():
        for i, lo, hi in cut:
            m = hi - lo
            tables.write_part(study_dir, "samples", shard_name(base, i, name), tables.to_table("samples", {
                "K": np.full(m, k), "seed": np.full(m, seed), **axes.columns(cfg, axes.DEFAULT, m),
                "set": np.full(m, name),
                "sample_id": np.arange(lo, hi), "sample_seed": np.full(m, -1), "channels": np.full(m, c),
                "height": np.full(m, h), "width": np.full(m, w), "image": imgs[lo:hi].reshape(m, -1)}, smeta))
    return {name: len(imgs) for name, imgs in sets.items()}
