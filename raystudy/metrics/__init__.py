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


_CHECK = """
import sys
from raystudy.errors import UserError
from raystudy.metrics.lpips import LpipsEmbedding
try:
    for net in sys.argv[2:]:
        LpipsEmbedding(net, weights_dir=sys.argv[1] or None, device="cpu")
except UserError as e:
    print(type(e).__name__ + "\\t" + str(e))
    sys.exit(3)
"""


def check_backbones(nets, weights_dir: str | None = None) -> None:
    """Raise ``WeightsMissing`` or ``WeightsCorrupt`` (one line) unless every LPIPS ``nets`` backbone
    loads into lpips's network. Where torch is not imported yet (a study's driver), in a child
    process: importing torch alone takes a process past 600 MB, and the driver needs it for nothing
    else, so it stays a few hundred MB whatever the study's size."""
    import subprocess
    import sys

    from .. import errors

    nets = list(dict.fromkeys(nets))
    if not nets:
        return
    if "torch" in sys.modules:
        from .lpips import LpipsEmbedding

        for net in nets:
            LpipsEmbedding(net, weights_dir=weights_dir, device="cpu")
        return
    out = subprocess.run([sys.executable, "-c", _CHECK, str(weights_dir or ""), *nets], capture_output=True, text=True)
    if out.returncode == 3:
        kind, _, message = out.stdout.strip().splitlines()[-1].partition("\t")
        raise getattr(errors, kind, errors.UserError)(message)
    if out.returncode:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise errors.UserError(f"checking the LPIPS backbone ({', '.join(nets)}) failed: {tail}")
