"""Samples we did not generate, as a study's ``samples`` table (``raystudy import-samples``).

A user of the paper's code holds its synthetic sets as ``.npz`` files (its ``run_generate.py``:
key ``samples``, (n, C, H, W) floats in [-1, 1], many files per K), or any folder of PNGs. This
writes them as the (K, seed) unit of a study: a ``runs`` row (model ``imported``, checkpoint =
the source) and the ``eval`` and ``ref`` sample sets, with the train and generate stages'
fingerprints, so ``raystudy run`` finds both stages complete for that unit and runs knn,
classify and the figures on them. The basins and energy stages need a model: not for imports.
``sample_seed`` is -1 (we cannot reproduce an imported sample).

Pixels: uint8 images (PNGs) become v / 127.5 - 1; float images must already be in [-1, 1] (the
paper's convention; no range is guessed, as it is for a dataset's files) and are refused when
they leave it by more than 1e-3 (``datasets.files.unit_range(..., "strict")``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import axes, tables
from .datasets.files import unit_range
from .errors import DataError

IMPORTED = "imported"


def _npz_header(path: Path) -> tuple[int, ...]:
    """The shape of ``samples`` in a .npz, read from its .npy header without loading the array."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            if "samples.npy" not in z.namelist():
                keys = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
                raise DataError(f"{path}: no 'samples' array (keys: {', '.join(keys) or 'none'})")
            with z.open("samples.npy") as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                return tuple(read(f)[0])
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None


def _png_header(path: Path, channels: int) -> tuple[int, ...]:
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    return (1, channels, h, w)


def _npz(path: Path) -> np.ndarray:
    with np.load(path) as f:
        return unit_range(f["samples"], "strict", str(path))


def _png(path: Path, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return unit_range(a.astype(np.uint8), "strict", str(path))[None]


class ImageSource:
    """The images of a .npz file, or of a folder of .npz files or of PNGs (files in name order),
    checked against the dataset's ``shape`` (C, H, W) from the files' headers alone: ``len`` is
    known and every shape error raised before a pixel is read, and ``batches`` reads one file
    at a time, so an import holds one file, not the paper's 100 files of 512 images."""

    def __init__(self, source, shape: tuple[int, int, int]):
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
        self.files, self.kind, self.shape = files, kind, tuple(shape)
        heads = [_npz_header(f) if kind == "npz" else _png_header(f, shape[0]) for f in files]
        heads = [h if len(h) == 4 else (1, *h) for h in heads]
        for f, h in zip(files, heads):
            if h[1:] != heads[0][1:]:
                raise DataError(f"{f}: images of {h[1:]} beside {files[0].name}'s {heads[0][1:]}: "
                                f"every file of {source} must hold images of one size")
        # (n, H, W, C) files, as image libraries write them.
        self.channels_last = heads[0][-1] == shape[0] and heads[0][1] != shape[0]
        got = (heads[0][3], heads[0][1], heads[0][2]) if self.channels_last else heads[0][1:]
        if tuple(got) != self.shape:
            raise DataError(f"{source}: images are {tuple(got)}, the study's dataset is {self.shape} (C, H, W)")
        self.counts = [h[0] for h in heads]

    def __len__(self) -> int:
        return sum(self.counts)

    def batches(self, limit: int | None = None):
        """float32 (n, C, H, W) in [-1, 1], file by file, ``limit`` images in all."""
        left = len(self) if limit is None else limit
        for f in self.files:
            if left <= 0:
                return
            x = _npz(f) if self.kind == "npz" else _png(f, self.shape[0])
            x = x if x.ndim == 4 else x[None]
            if self.channels_last:
                x = x.transpose(0, 3, 1, 2)
            yield np.ascontiguousarray(x[:left], dtype=np.float32)
            left -= len(x)


def read_images(source, shape: tuple[int, int, int]) -> np.ndarray:
    """All images (n, C, H, W) float32 in [-1, 1] of ``source`` (see ``ImageSource``) in memory."""
    return np.concatenate(list(ImageSource(source, shape).batches()))


def _chunks(batches, sizes):
    """Arrays of exactly ``sizes`` rows, in order, cut from the arrays ``batches`` yields."""
    it, buf, have = iter(batches), [], 0
    for size in sizes:
        while have < size:
            x = next(it)
            buf.append(x)
            have += len(x)
        whole = np.concatenate(buf) if len(buf) > 1 else buf[0]
        yield whole[:size]
        rest = whole[size:]
        buf, have = ([rest] if len(rest) else []), len(rest)


def import_samples(cfg, study_dir, k: int, seed: int, source, ref=None, echo=None) -> dict[str, int]:
    """Write ``source`` (and ``ref``) as the samples of unit (K, seed). Without ``ref`` the source's
    first ``generate.n_samples`` images are the eval set and the next ones the ref set. Returns
    the rows written per set. Streams file by file and shard by shard (``generate.part_size``
    rows): what the driver holds is one file and one shard, whatever the sample count. The
    unit's ``runs`` row, which marks its train stage complete, is written last."""
    import itertools

    from . import config as config_mod
    from .axes import Unit
    from .datasets import load_dataset
    from .progress import Progress
    from .stages.shards import shard_meta, shard_name, shards, shards_to_write
    from .study import GENERATE, TRAIN, study_folder, validate_against_data

    if k not in cfg.ks or seed not in cfg.seeds:
        raise DataError(f"import-samples: K={k}, seed={seed} is not a unit of the config (ks {list(cfg.ks)}, "
                        f"seeds {list(cfg.seeds)})")
    dataset = load_dataset(cfg.data)
    validate_against_data(cfg, dataset)
    n = cfg.generate.n_samples
    src = ImageSource(source, dataset.shape)
    ref_src = ImageSource(ref, dataset.shape) if ref is not None else None
    have = {"eval": len(src), "ref": len(ref_src) if ref_src is not None else len(src) - n}
    for name in ("eval", "ref"):
        if have[name] < n:
            shown = len(src) if ref_src is None else have[name]
            raise DataError(f"import-samples: {shown} images for the {name} set; generate.n_samples={n} per set "
                            f"({'eval + ref = ' + str(2 * n) if ref_src is None else n} needed): pass --ref, or "
                            "--set generate.n_samples=...")
    study_dir = study_folder(study_dir)
    config_mod.save(cfg, study_dir)
    unit = Unit(k, seed)
    part = TRAIN.part(unit)
    meta = TRAIN.meta(cfg, unit)
    rows = cfg.generate.part_size
    cut = shards(n, rows)
    base = GENERATE.part(unit)
    wanted = [shard_name(base, i, name) for name in ("eval", "ref") for i, _, _ in cut]
    smeta = shard_meta(GENERATE.meta(cfg, unit), len(wanted), rows)
    for name in ("train_log", "loss_curves"):  # trained elsewhere: no curves
        tables.write_part(study_dir, name, part, tables.to_table(name, {c: [] for c in tables.SCHEMAS[name].names}, meta))
    tables.remove_part(study_dir, "runs", part)
    shards_to_write(study_dir, "samples", base, wanted, smeta)  # clears what a previous import left
    shown = Progress("import", len(wanted), "shards", 2 * n, "samples", echo=echo)
    sizes = [hi - lo for _, lo, hi in cut]
    chunks = (_chunks(src.batches(2 * n), sizes + sizes) if ref_src is None else
              itertools.chain(_chunks(src.batches(n), sizes), _chunks(ref_src.batches(n), sizes)))
    c, h, w = dataset.shape
    for (name, (i, lo, hi)), imgs in zip([(s, piece) for s in ("eval", "ref") for piece in cut], chunks):
        m = hi - lo
        tables.write_part(study_dir, "samples", shard_name(base, i, name), tables.to_table("samples", tables.samples_rows(
            k, seed, name, np.arange(lo, hi), np.full(m, -1), imgs.reshape(m, c, h, w), axes.columns(cfg, axes.DEFAULT, m)),
            smeta))
        shown.update(1, m)
    tables.write_part(study_dir, "runs", part, tables.to_table("runs", tables.runs_rows([
        {"K": k, "seed": seed, "variant": axes.BASE, "twin": 0, "model": IMPORTED,
         "checkpoint": str(Path(source).resolve())}]), meta))
    return {"eval": n, "ref": n}
