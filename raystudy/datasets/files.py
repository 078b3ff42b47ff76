"""Datasets read from the user's disk (never downloaded) and the embedded digits."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from ..errors import DataError


def unit_range(x: np.ndarray, floats: str = "as-is", where: str = "images") -> np.ndarray:
    """The one rule that maps images to float32 in [-1, 1]. uint8 v becomes v / 127.5 - 1; floats
    by what their source promises (``floats``):

    - ``"as-is"``: already mapped (a dataset's images as it holds them): returned unchanged;
    - ``"infer"``: a dataset's files, whose floats may be 0..255 (some value above 1.5), 0..1
      (none below 0) or already -1..1 (the rest), told apart by their range;
    - ``"strict"``: samples, -1..1 by convention (the paper's): no range is guessed (a set of
      bright samples is not 0..1 images), and values outside [-1, 1] by more than 1e-3 are a
      DataError naming ``where``; the rest are clipped to [-1, 1]."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 127.5 - 1.0
    if floats == "as-is":
        return x
    if floats == "infer":
        if x.max() > 1.5:
            return x.astype(np.float32) / 127.5 - 1.0
        if x.min() >= 0:
            return x.astype(np.float32) * 2.0 - 1.0
        return x
    if floats != "strict":
        raise ValueError(f"unit_range: floats={floats!r}; expected 'as-is', 'infer' or 'strict'")
    x = x.astype(np.float32)
    if x.size and (x.min() < -1.001 or x.max() > 1.001):
        raise DataError(f"{where}: values span [{x.min():.3g}, {x.max():.3g}]; expected images in [-1, 1] "
                        "(the paper's samples) or uint8")
    return np.clip(x, -1.0, 1.0)


def to_nchw(images: np.ndarray, channels_last: bool) -> np.ndarray:
    """A dataset file's images as NCHW: uint8 ones stay uint8 (``unit_range`` maps them to [-1, 1]
    when read, so a dataset of CIFAR-10's 60,000 images holds 184 MB, not 737), float ones are
    mapped now (``unit_range(..., "infer")``)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None] if not channels_last else x[..., None]
    if x.ndim != 4:
        raise DataError(f"images must have 3 or 4 dimensions (N,H,W[,C]), got shape {x.shape}")
    if channels_last:
        x = x.transpose(0, 3, 1, 2)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(unit_range(x, "infer"), dtype=np.float32)


def digits(_path=None) -> np.ndarray:
    """scikit-learn's 1,797 digits, (N, 1, 8, 8) float32 in [-1, 1]: pixel v (0..16) becomes v / 8 - 1.

    Read from the CSV the package ships, without importing scikit-learn: its import costs
    seconds, which every ``--dry-run`` and report would pay for 100 KB of pixels."""
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the digits dataset ships with scikit-learn: pip install scikit-learn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        flat = np.loadtxt(f, delimiter=",", dtype=np.float32)[:, :-1]  # the last column is the class
    return (flat.reshape(-1, 1, 8, 8) / 8.0 - 1.0).astype(np.float32)


def _need(path: str | None, name: str, layout: str) -> Path:
    if not path:
        raise DataError(f"data.path is required for dataset {name!r}: expected {layout}")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.path {p} does not exist: dataset {name!r} expects {layout}")
    return p


def cifar10(path: str | None) -> np.ndarray:
    layout = ("the CIFAR-10 python folder (DIR/cifar-10-batches-py/ with data_batch_1..5, test_batch), which "
              "`raystudy unpack cifar10 cifar-10-python.tar.gz --to DIR` makes")
    root = _need(path, "cifar10", layout)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    files = [root / f"data_batch_{i}" for i in range(1, 6)]
    if not all(f.exists() for f in files):
        raise DataError(f"{root} lacks data_batch_1..5: expected {layout}")
    return to_nchw(np.concatenate([_cifar_batch(f) for f in files]), channels_last=False)


def test_split(path: str | None, name: str) -> np.ndarray | None:
    """The dataset's own test split when its file lies beside the training files (CIFAR-10
    ``test_batch``, MNIST / Fashion-MNIST ``t10k-images-idx3-ubyte[.gz]``), else None (the held-out
    split is then the permutation's reserved tail)."""
    if name == "cifar10":
        root = Path(path).expanduser()
        root = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        f = root / "test_batch"
        return to_nchw(_cifar_batch(f), channels_last=False) if f.exists() else None
    if "mnist" in name:
        try:
            f = _idx_file(Path(path).expanduser(), "t10k-images-idx3-ubyte")
        except DataError:
            return None
        return to_nchw(read_idx(f), channels_last=False)
    return None


def _cifar_batch(f: Path) -> np.ndarray:
    with open(f, "rb") as fh:
        try:
            d = pickle.load(fh, encoding="bytes")
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt batch
            raise DataError(f"{f} is not a CIFAR-10 pickle batch ({type(e).__name__})") from None
    return np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)


def _idx_file(root: Path, stem: str) -> Path:
    for cand in (root / stem, root / f"{stem}.gz", root / "raw" / stem, root / "raw" / f"{stem}.gz"):
        if cand.exists():
            return cand
    raise DataError(f"{root} has no {stem}[.gz]: expected the MNIST idx files")


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path} is not an idx file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, found {body.size} bytes")
    return body.reshape(dims)


def mnist(path: str | None, name: str = "mnist") -> np.ndarray:
    root = _need(path, name, "a folder with train-images-idx3-ubyte[.gz]")
    return to_nchw(read_idx(_idx_file(root, "train-images-idx3-ubyte")), channels_last=False)


def folder(path: str | None) -> np.ndarray:
    from PIL import Image

    root = _need(path, "folder", "a folder of .png/.jpg images of one size")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if not files:
        raise DataError(f"{root} holds no .png/.jpg/.jpeg/.bmp images")
    first = Image.open(files[0])
    mode = "L" if first.mode in ("L", "1", "I", "I;16") else "RGB"
    arrs = []
    for f in files:
        im = Image.open(f).convert(mode)
        if im.size != first.size:
            raise DataError(f"{f} is {im.size}, but {files[0]} is {first.size}: set data.image_size to resize")
        arrs.append(np.asarray(im))
    return to_nchw(np.stack(arrs), channels_last=(mode == "RGB"))


def array(path: str | None) -> np.ndarray:
    root = _need(path, "array", "a .npy or .npz file of images (N,H,W[,C]) or (N,C,H,W)")
    try:
        obj = np.load(root, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - a missing, truncated or pickled file: all mean "not usable"
        raise DataError(f"{root} is not a readable .npy/.npz ({type(e).__name__})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        key = "images" if "images" in obj.files else obj.files[0]
        obj = obj[key]
    channels_last = obj.ndim == 4 and obj.shape[-1] in (1, 3) and obj.shape[1] not in (1, 3)
    return to_nchw(obj, channels_last=channels_last)
