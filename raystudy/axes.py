"""The axes of a study beside K and seed: training snapshot, model variant, twin.

A study's model checkpoints are the grid variant x twin x snapshot x K x seed:
- variant: a named model configuration (``variants``: overrides of the ``model`` section); the
  ``model`` section itself is the variant ``base``, the only one when ``variants`` is empty;
- twin: 0 is the model trained on the K-set of the study's permutation, 1 (with ``twins: true``)
  a second model trained on a disjoint K-set (``splits.kset``), sampled with the same seeds;
- snapshot: the EMA weights after ``images_seen`` training images (``train.snapshots``); the
  final model (``train.images``) is always there.

An ``Axis`` names one (variant, twin, snapshot). A unit of a stage is a ``Unit``: a checkpoint
(K, seed at an axis), with the metric where the stage has one. Its part name leaves the axis out
where it is the default one (base, twin 0, final): so a study without variants, twins or
snapshots has the plain part names and fingerprints of a one-axis study, and its parts stay
valid. Plain Python, no Ray, no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

BASE = "base"
VARIANT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True, order=True)
class Axis:
    variant: str = BASE
    twin: int = 0
    images_seen: Optional[int] = None  # None: the final model (train.images)

    @property
    def default(self) -> bool:
        return self == DEFAULT

    @property
    def final(self) -> bool:
        return self.images_seen is None

    def run(self) -> "Axis":
        """The training run this checkpoint belongs to (its final model)."""
        return Axis(self.variant, self.twin)

    def tag(self) -> str:
        """The part-name prefix ("" for the default): ``wide``, ``base.twin``, ``wide.twin.i25600``.
        No "-" in it, so a unit's part names never match another unit's shard pattern."""
        if self.default:
            return ""
        bits = [self.variant] + (["twin"] if self.twin else []) + ([] if self.final else [f"i{self.images_seen}"])
        return ".".join(bits)

    def seen(self, cfg) -> int:
        """The ``images_seen`` column: the snapshot's, or ``train.images`` for the final model."""
        return int(cfg.train.images if self.final else self.images_seen)

    def depends(self, cfg) -> dict:
        """What this axis adds to a unit's fingerprint (nothing for the default axis). A twin's
        K-set is cut before the held-out tail, so it depends on data.held_out."""
        out = {}
        if self.variant != BASE:
            out["axis.variant"] = self.variant
        if self.twin:
            out["axis.twin"] = self.twin
            out["data.held_out"] = cfg.data.held_out
        if not self.final:
            out["axis.images_seen"] = int(self.images_seen)
        return out

    def __str__(self) -> str:
        return self.tag() or BASE


DEFAULT = Axis()


def checkpoint_name(axis: Axis, k: int, seed: int) -> str:
    """The model folder's name under models/: ``K8-s0`` (as always), ``wide.twin-K8-s0``; a snapshot
    sits beside its run's final model: ``K8-s0-snap-00025600``."""
    run = axis.run()
    name = "-".join([*([run.tag()] if run.tag() else []), f"K{k}", f"s{seed}"])
    return name if axis.final else f"{name}-snap-{int(axis.images_seen):08d}"


@dataclass(frozen=True, order=True)
class Unit:
    """One unit of a stage's output: the checkpoint (``K``, ``seed``) at ``axis``, with the
    ``metric`` where the stage has one. The figures' one unit has neither K nor seed."""
    K: Optional[int]
    seed: Optional[int]
    metric: Optional[str] = None
    axis: Axis = DEFAULT

    @property
    def part(self) -> str:
        """The unit's part name: ``K2-s0``, ``l2-K2-s0``; with an axis, its tag before K:
        ``wide.twin.i256-K2-s0``, ``l2-wide-K2-s0``."""
        tag = self.axis.tag()
        return "-".join([*([self.metric] if self.metric else []), *([tag] if tag else []), f"K{self.K}", f"s{self.seed}"])

    def at(self, axis: Axis) -> "Unit":
        """The same unit at another checkpoint."""
        return Unit(self.K, self.seed, self.metric, axis)

    def __str__(self) -> str:
        """As the dry run and the logs show it: ``l2/wide/8/0``, ``8/0``; ``all`` for the figures."""
        if self.K is None:
            return "all"
        return "/".join([*([self.metric] if self.metric else []), *([] if self.axis.default else [str(self.axis)]),
                         str(self.K), str(self.seed)])


ALL = Unit(None, None)  # the one unit of a stage that covers the whole study (the figures)


def variants(cfg) -> list[str]:
    return list(cfg.variants) if cfg.variants else [BASE]


def model_axes(cfg) -> list[Axis]:
    """Every checkpoint's axis, the default first: variants x twins x (snapshots, final)."""
    snaps = [None, *cfg.train.snapshots]
    return [Axis(v, t, s) for v in variants(cfg) for t in ((0, 1) if cfg.twins else (0,)) for s in snaps]


def for_axis(cfg, axis: Axis):
    """The config a checkpoint of ``axis`` was made with: the study's, with the variant's model."""
    if axis.variant == BASE:
        return cfg
    return cfg.for_variant(axis.variant)


def columns(cfg, axis: Axis, n: int) -> dict:
    """The axis columns of ``n`` rows of a table that has K and seed."""
    return {"variant": np.full(n, axis.variant, dtype=object), "twin": np.full(n, axis.twin, dtype=np.int32),
            "images_seen": np.full(n, axis.seen(cfg), dtype=np.int64)}


def main_checkpoint(config: dict) -> dict:
    """The checkpoint the one-axis views (the transition figure, the grids, the summary) show, from
    a config dict: the first variant's final model, twin 0."""
    v = list((config or {}).get("variants") or {}) or [BASE]
    return {"variant": v[0], "twin": 0, "images_seen": int(((config or {}).get("train") or {}).get("images", 0))}


def main_filter(config: dict):
    """``main_checkpoint`` as a pyarrow filter expression."""
    import pyarrow.compute as pc

    m = main_checkpoint(config)
    # A null images_seen: a row written without it (tables.to_table with no recorded train.images).
    return ((pc.field("variant") == m["variant"]) & (pc.field("twin") == 0)
            & ((pc.field("images_seen") == m["images_seen"]) | pc.field("images_seen").is_null()))


def main_rows(df, config: dict):
    """The rows of a DataFrame at ``main_checkpoint`` (a frame without the axis columns as it is)."""
    m = main_checkpoint(config)
    for c in ("variant", "twin"):
        if c in df.columns:
            df = df[df[c] == m[c]]
    # train_log, loss_curves: images_seen is the curve's time, each run's rows are its final model's
    if "images_seen" not in df.columns or "step" in df.columns or "timestep" in df.columns:
        return df
    if "model" in df.columns:  # runs: images_seen is what the checkpoint trained on; the final is the last
        keys = [c for c in ("study", "K", "seed") if c in df.columns]
        return df[df["images_seen"] == df.groupby(keys)["images_seen"].transform("max")] if len(df) else df
    return df[(df["images_seen"] == m["images_seen"]) | df["images_seen"].isna()]
