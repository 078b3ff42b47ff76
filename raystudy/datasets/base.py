"""What every dataset is: float32 images (N, C, H, W) in [-1, 1], read by index (which of them a
study trains on and holds out: ``raystudy.splits``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Dataset:
    name: str
    shape: tuple[int, int, int]  # C, H, W
    n: int
    _get: Callable[[np.ndarray], np.ndarray]
    # Rendered on demand (the manifold): training reads batches instead of holding the K-set.
    lazy: bool = False
    # The dataset's own test split (CIFAR-10 test_batch, MNIST t10k), as its last n_test indices: no
    # K-set ever draws from it, and the held-out items come from it instead of the permutation's tail.
    n_test: int = 0

    def __len__(self) -> int:
        return self.n

    @property
    def n_train(self) -> int:
        """The images K-sets are drawn from (all of them, less the dataset's own test split)."""
        return self.n - self.n_test

    def get(self, idx) -> np.ndarray:
        """Images at dataset indices ``idx`` as float32 (len(idx), C, H, W) in [-1, 1]."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"{self.name}: index out of range [0, {self.n})")
        return self._get(idx)

    def images(self, idx):
        """The images at ``idx`` (a K-set: ``raystudy.splits.kset``) as training reads them: an
        array, or ``LazyImages`` where the dataset renders on demand, so memory stays flat as K
        grows."""
        return LazyImages(self, idx) if self.lazy else self.get(idx)


def from_array(name: str, arr: np.ndarray, test: np.ndarray | None = None) -> Dataset:
    """A dataset held in memory; ``test`` (the dataset's own test split) is appended after the
    training images, so their indices and the study's permutation of them are unchanged. uint8
    images are held as bytes and mapped to [-1, 1] as they are read (v / 127.5 - 1, the same
    float32 values as mapping them all first), a quarter of the memory in every process that
    loads the dataset."""
    from .files import unit_range

    n_test = 0 if test is None else len(test)
    if n_test:
        if arr.dtype != test.dtype:
            arr, test = unit_range(arr), unit_range(test)
        arr = np.concatenate([arr, test])
    if arr.dtype != np.uint8:
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    return Dataset(name, tuple(arr.shape[1:]), len(arr), lambda idx: unit_range(arr[idx]), n_test=n_test)


class LazyImages:
    """A K-set indexable like an array, read (or rendered) per batch, never whole."""

    def __init__(self, dataset: Dataset, idx: np.ndarray):
        self.dataset, self.idx = dataset, np.asarray(idx)
        self.shape = (len(self.idx), *dataset.shape)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, pos) -> np.ndarray:
        return self.dataset.get(self.idx[np.asarray(pos)])
