"""Datasets by name: ``load_dataset(data_cfg)``. Every dataset yields float32 images
(N, C, H, W) in [-1, 1]; nothing is downloaded (embedded, generated, or the user's path)."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..splits import CIRCLE_SALT
from .base import Dataset, LazyImages, from_array

__all__ = ["DATASETS", "DataError", "Dataset", "LazyImages", "load_dataset"]


def _files(name: str):
    """A dataset read into memory from ``files``, then limited, greyed and resized as the config says."""
    def load(c) -> Dataset:
        from . import files

        x = files.mnist(c.path, name) if "mnist" in name else getattr(files, name)(c.path)
        # The dataset's own test split, where it has one and it is on disk: the held-out images.
        test = files.test_split(c.path, name)
        if c.limit:
            x = x[: c.limit]
        return from_array(c.name, _shape(x, c), None if test is None else _shape(test, c))
    return load


def _shape(x: np.ndarray, c) -> np.ndarray:
    from .files import unit_range

    if (c.grayscale and x.shape[1] == 3) or (c.image_size and x.shape[-1] != c.image_size):
        x = unit_range(x)
    if c.grayscale and x.shape[1] == 3:
        x = (x * np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]).sum(1, keepdims=True)
    if c.image_size and x.shape[-1] != c.image_size:
        x = _resize(x, c.image_size)
    return x


# Here, not in files.py: files.py stays free of torch, so raystudy.analysis can read the digits
# through it (the import contracts in .importlinter check this).
def _resize(x: np.ndarray, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t.clamp(-1, 1).numpy()


def _manifold(c) -> Dataset:
    from .manifold import manifold_dataset

    return manifold_dataset(c)


def _circle(c) -> Dataset:
    """The 2-D circle of the paper's toy model: points on the unit circle as 1x2 "images", so the
    image stages handle them unchanged. Angles come from one fixed generator; the K-sets are the
    study's nested permutation of them like every other dataset's."""
    theta = np.random.default_rng(np.random.SeedSequence([0, CIRCLE_SALT])).uniform(0, 2 * np.pi, c.size)
    pts = np.stack([np.cos(theta), np.sin(theta)], 1).astype(np.float32)[:, None, None, :]
    return Dataset("circle", (1, 1, 2), c.size, lambda idx: pts[idx])


# name -> loader(data_cfg); the config's data.name must be one of these.
DATASETS = {**{n: _files(n) for n in ("digits", "cifar10", "mnist", "fashion-mnist", "folder", "array")},
            "manifold": _manifold, "circle": _circle}


def load_dataset(data_cfg) -> Dataset:
    """Build the dataset a config's ``data`` section names."""
    if data_cfg.name not in DATASETS:
        raise DataError(f"data.name: unknown dataset {data_cfg.name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[data_cfg.name](data_cfg)
