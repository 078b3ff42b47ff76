"""What every dataset is: float32 images (N, C, H, W) in [-1, 1], read by index, and the
nested K-subsets a study trains on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import DataError


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


def from_array(name: str, arr: np.ndarray) -> Dataset:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return Dataset(name, tuple(arr.shape[1:]), len(arr), lambda idx: arr[idx])


def permutation(n: int, seed: int) -> np.ndarray:
    """The study's one seeded permutation: the size-K training set is its first K items."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n)


def subset_indices(n: int, k: int, seed: int) -> np.ndarray:
    if not 1 <= k <= n:
        raise DataError(f"K={k} is outside 1..{n} (the dataset has {n} images)")
    return permutation(n, seed)[:k]


def held_out_indices(n: int, reserve: int, seed: int) -> np.ndarray:
    """The study's held-out split: the last ``reserve`` items of the permutation, in its order.

    The K-sets stay the permutation's prefixes (reserving changes none of them); a study
    refuses K > n - reserve, so no K-set of it ever holds one of these."""
    if not 0 <= reserve < n:
        raise DataError(f"data.held_out={reserve} must be in 0..{n - 1} (the dataset has {n} images)")
    return permutation(n, seed)[n - reserve:]


class LazyImages:
    """A K-set indexable like an array, read (or rendered) per batch, never whole."""

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
