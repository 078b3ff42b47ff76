"""Metrics as embeddings: every distance a study uses is a Euclidean distance
between per-image embeddings, so features are computed once per image and the
search is a plain FAISS flat index (see DESIGN.md, "LPIPS is a Euclidean distance").

A metric maps images (N, C, H, W) in [-1, 1] to float32 embeddings (N, d) and
turns a squared embedding distance into the metric's own units.
"""

from __future__ import annotations

import numpy as np


class PixelL2:
    """Per-pixel RMS distance on [-1, 1] images: ||x - y|| / sqrt(D), so thresholds
    mean the same thing at 8x8 and at 32x32."""

    name = "l2"

    def embed(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
        return x / np.float32(np.sqrt(x.shape[1]))

    @staticmethod
    def from_sq(sq: np.ndarray) -> np.ndarray:
        return np.sqrt(sq)


class Euclidean(PixelL2):
    """The plain Euclidean distance ||x - y|| (the circle's plane, where "per pixel" means nothing)."""

    name = "euclidean"

    def embed(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(images, dtype=np.float32).reshape(len(images), -1)


def get_metric(name: str, weights_dir: str | None = None, device: str | None = None):
    """The embedding for metric ``name`` (``l2``, ``lpips-alex``, ``lpips-vgg``)."""
    if name == "l2":
        return PixelL2()
    if name == "euclidean":
        return Euclidean()
    if name in ("lpips-alex", "lpips-vgg"):
        from .lpips import LpipsEmbedding

        return LpipsEmbedding(name.split("-", 1)[1], weights_dir=weights_dir, device=device)
    raise ValueError(f"unknown metric {name!r}")
