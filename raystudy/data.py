"""Datasets (embedded and local-path) and nested K-subsets.

Nothing is ever downloaded: the default is scikit-learn's 8x8 digits, which ship
inside the installed package; real datasets are read from a path the user gives.
Every dataset yields float32 images of shape (N, C, H, W) scaled to [-1, 1].
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


class DataError(ValueError):
    """A dataset that cannot be read, phrased as one line that says what is expected."""


@dataclass
class Dataset:
    name: str
    shape: tuple[int, int, int]  # C, H, W
    n: int
    _get: Callable[[np.ndarray], np.ndarray]
    # Rendered on demand (the manifold): training reads batches instead of holding the K-set.
    lazy: bool = False

    def __len__(self) -> int:
        return self.n

    def get(self, idx) -> np.ndarray:
        """Images at dataset indices ``idx`` as float32 (len(idx), C, H, W) in [-1, 1]."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"{self.name}: index out of range [0, {self.n})")
        return self._get(idx)


def permutation(n: int, seed: int) -> np.ndarray:
    """The study's one seeded permutation: the size-K training set is its first K items."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n)


def subset_indices(n: int, k: int, seed: int) -> np.ndarray:
    if not 1 <= k <= n:
        raise DataError(f"K={k} is outside 1..{n} (the dataset has {n} images)")
    return permutation(n, seed)[:k]


def _from_array(name: str, arr: np.ndarray) -> Dataset:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return Dataset(name, tuple(arr.shape[1:]), len(arr), lambda idx: arr[idx])


def _to_unit(images: np.ndarray, channels_last: bool) -> np.ndarray:
    """uint8 or float images -> float32 NCHW in [-1, 1]."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None] if not channels_last else x[..., None]
    if x.ndim != 4:
        raise DataError(f"images must have 3 or 4 dimensions (N,H,W[,C]), got shape {x.shape}")
    if channels_last:
        x = x.transpose(0, 3, 1, 2)
    if x.dtype == np.uint8 or x.max() > 1.5:
        x = x.astype(np.float32) / 127.5 - 1.0
    elif x.min() >= 0:
        x = x.astype(np.float32) * 2.0 - 1.0
    return np.ascontiguousarray(x, dtype=np.float32)


def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32)  # 0..16
    return (images / 8.0 - 1.0)[:, None]


def _need(path: str | None, name: str, layout: str) -> Path:
    if not path:
        raise DataError(f"data.path is required for dataset {name!r}: expected {layout}")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.path {p} does not exist: dataset {name!r} expects {layout}")
    return p


def _cifar10(path: str | None) -> np.ndarray:
    layout = "the CIFAR-10 python folder (cifar-10-batches-py/ with data_batch_1..5)"
    root = _need(path, "cifar10", layout)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    files = [root / f"data_batch_{i}" for i in range(1, 6)]
    if not all(f.exists() for f in files):
        raise DataError(f"{root} lacks data_batch_1..5: expected {layout}")
    chunks = []
    for f in files:
        with open(f, "rb") as fh:
            try:
                d = pickle.load(fh, encoding="bytes")
            except Exception as e:  # noqa: BLE001 - any unpickling failure means a corrupt batch
                raise DataError(f"{f} is not a CIFAR-10 pickle batch ({type(e).__name__})") from None
        chunks.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    return _to_unit(np.concatenate(chunks), channels_last=False)


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


def _mnist(path: str | None, name: str) -> np.ndarray:
    root = _need(path, name, "a folder with train-images-idx3-ubyte[.gz]")
    return _to_unit(read_idx(_idx_file(root, "train-images-idx3-ubyte")), channels_last=False)


def _folder(path: str | None) -> np.ndarray:
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
    return _to_unit(np.stack(arrs), channels_last=(mode == "RGB"))


def _array(path: str | None) -> np.ndarray:
    root = _need(path, "array", "a .npy or .npz file of images (N,H,W[,C]) or (N,C,H,W)")
    try:
        obj = np.load(root, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{root} is not a readable .npy/.npz ({type(e).__name__})") from None
    if isinstance(obj, np.lib.npyio.NpzFile):
        key = "images" if "images" in obj.files else obj.files[0]
        obj = obj[key]
    channels_last = obj.ndim == 4 and obj.shape[-1] in (1, 3) and obj.shape[1] not in (1, 3)
    return _to_unit(obj, channels_last=channels_last)


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.clamp(-1, 1).numpy()


def load_dataset(data_cfg) -> Dataset:
    """Build the dataset a config's ``data`` section names."""
    name = data_cfg.name
    if name == "manifold":
        from .manifold import manifold_dataset

        return manifold_dataset(data_cfg)
    readers = {
        "digits": lambda: _digits(),
        "cifar10": lambda: _cifar10(data_cfg.path),
        "mnist": lambda: _mnist(data_cfg.path, "mnist"),
        "fashion-mnist": lambda: _mnist(data_cfg.path, "fashion-mnist"),
        "folder": lambda: _folder(data_cfg.path),
        "array": lambda: _array(data_cfg.path),
    }
    x = readers[name]()
    if data_cfg.limit:
        x = x[: data_cfg.limit]
    if data_cfg.grayscale and x.shape[1] == 3:
        x = (x * np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]).sum(1, keepdims=True)
    if data_cfg.image_size and x.shape[-1] != data_cfg.image_size:
        x = _resize(x, data_cfg.image_size)
    return _from_array(name, x)


class LazyImages:
    """The size-K training set of a lazy dataset: indexable like an array, rendered per batch."""

    def __init__(self, dataset: Dataset, idx: np.ndarray):
        self.dataset, self.idx = dataset, np.asarray(idx)
        self.shape = (len(self.idx), *dataset.shape)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, pos) -> np.ndarray:
        return self.dataset.get(self.idx[np.asarray(pos)])


def training_images(dataset: Dataset, k: int, seed: int):
    """The K-set for training: an array, or ``LazyImages`` where the dataset renders on demand,
    so memory stays flat as K grows."""
    idx = subset_indices(len(dataset), k, seed)
    return LazyImages(dataset, idx) if dataset.lazy else dataset.get(idx)


def training_set(dataset: Dataset, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The nested size-K training set: (dataset indices, images)."""
    idx = subset_indices(len(dataset), k, seed)
    return idx, dataset.get(idx)
