"""The 2-D circle of the paper's toy model: points on the unit circle, stored as 1x2
"images" so the image stages (samples, neighbours, labels) handle them unchanged."""

from __future__ import annotations

import numpy as np

from .base import Dataset

# Angles are drawn for a fixed pool; the size-K set is the first K of the study's seeded
# permutation of it, so the sets are nested like every other dataset's.
POOL = 100_000


def circle_dataset(n: int = POOL, seed: int = 0) -> Dataset:
    theta = np.random.default_rng(np.random.SeedSequence([seed, 0xC1C])).uniform(0, 2 * np.pi, n)
    pts = np.stack([np.cos(theta), np.sin(theta)], 1).astype(np.float32)[:, None, None, :]
    return Dataset("circle", (1, 1, 2), n, lambda idx: pts[idx])
