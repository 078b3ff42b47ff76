"""Sharded parts and the one streaming loop of generate and knn.

A (K, seed) or (metric, K, seed) unit of a streaming stage is written as several Parquet
parts of at most ``generate.part_size`` rows each, named ``<unit>-<set>-00000`` (samples) or
``<unit>-00000`` (neighbors). Each part is written by the actor that computed it, so rows
never gather in the driver, and each carries in its metadata the unit's fingerprint plus
``parts`` (how many the unit has) and ``part_rows``. A unit is complete when all its parts
are there and agree; a re-run after a crash writes only the parts that are absent and
leaves finished ones untouched.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable

from .. import axes, progress, tables


def ray_data_output() -> None:
    """Ray Data's progress and execution logs only under -v: the stage's own ``Progress`` line
    says how far it is in the study's units, where Ray Data can only count blocks."""
    import ray.data

    verbose = progress.level() < logging.INFO
    ray.data.DataContext.get_current().enable_progress_bars = verbose
    logging.getLogger("ray.data").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Its one message is the notice that the bars are off, which is what was asked.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.DEBUG if verbose else logging.ERROR)


def axis_task(axis) -> dict:
    """An axis as plain values of a Ray Data row (snapshot -1: the final model)."""
    return {"variant": axis.variant, "twin": axis.twin, "snap": -1 if axis.final else axis.images_seen}


def task_axis(variant, twin, snap):
    return axes.Axis(str(variant), int(twin), None if int(snap) < 0 else int(snap))


def shards(n: int, rows: int) -> list[tuple[int, int, int]]:
    """[(index, lo, hi)] covering range(n) in pieces of at most ``rows``."""
    return [(i, lo, min(n, lo + rows)) for i, lo in enumerate(range(0, n, rows))]


def shard_name(base: str, index: int, set_name: str | None = None) -> str:
    return "-".join([base, *([set_name] if set_name else []), f"{index:05d}"])


def _unit_files(study_dir, table: str, base: str) -> dict[str, Path]:
    """The unit's part files: its shards ``base[-set]-00000``."""
    d = tables.table_dir(study_dir, table)
    pat = re.compile(rf"part-({re.escape(base)}(?:-[A-Za-z]+)?-\d{{5}})\.parquet")
    if not d.is_dir():
        return {}
    return {m.group(1): d / name for name in os.listdir(d) if (m := pat.fullmatch(name))}


def sharded_stored(table: str, part: Callable = None) -> Callable[[Path, tuple], list]:
    """A ``Stage.stored`` for a unit written as several parts: the metas of its parts, with a
    None added when the unit is incomplete (absent, a shard missing, or shards that disagree on
    how the unit is cut), so ``Stage.missing`` counts the parts."""
    part = part or (lambda u: u.part)

    def stored(study_dir, unit) -> list:
        base = part(unit)
        files = _unit_files(study_dir, table, base)
        if not files:
            return [None]
        metas = [tables.part_meta(study_dir, table, name) for name in sorted(files)]
        if any(m is None for m in metas):
            return metas
        cuts = {(m.get("parts"), m.get("part_rows")) for m in metas}
        if len(cuts) != 1 or int(next(iter(cuts))[0] or 0) != len(metas):
            return metas + [None]
        return metas

    return stored


def shard_meta(unit_meta: dict, parts: int, rows: int) -> dict[str, str]:
    return {**unit_meta, "parts": str(parts), "part_rows": str(rows)}


def shards_to_write(study_dir, table: str, base: str, wanted: list[str], meta: dict) -> list[str]:
    """Of a unit's ``wanted`` shard names, those still to write. A shard already there with
    this ``meta`` (fingerprint and cut) is kept untouched; every other file of the unit (stale
    fingerprint, another cut, a legacy whole part, a temporary file left by a killed writer)
    is removed first, so the finished unit holds exactly ``wanted``."""
    keep = set()
    for name, path in _unit_files(study_dir, table, base).items():
        m = tables.part_meta(study_dir, table, name)
        if (name in wanted and m is not None and all(m.get(k) == meta[k] for k in ("fingerprint", "parts", "part_rows"))):
            keep.add(name)
        else:
            path.unlink(missing_ok=True)
    d = tables.table_dir(study_dir, table)
    if d.is_dir():
        tmp = re.compile(rf"\.part-{re.escape(base)}(?:-[A-Za-z]+)?(?:-\d{{5}})?\.parquet\.[0-9a-f]+\.tmp")
        for name in os.listdir(d):
            if tmp.fullmatch(name):
                (d / name).unlink(missing_ok=True)
    return [w for w in wanted if w not in keep]


def stream(stage, cfg, study_dir, todo, table: str, sets, actor, ctor_kwargs: dict, resources: dict) -> None:
    """Run a streaming stage over the units ``todo``: each unit's rows (``generate.n_samples``
    per set of ``sets``; ``(None,)`` for one set) are cut into shards of at most
    ``generate.part_size``, one Ray Data task per shard still to write, which an actor of the
    elastic pool computes and writes as its own part. The driver holds only the list of shards
    (a few ints each), whatever n_samples is; shards already written with the current
    fingerprint (a re-run after a crash) are skipped."""
    import ray

    study_dir = str(Path(study_dir).resolve())
    rows = cfg.generate.part_size
    cut = shards(cfg.generate.n_samples, rows)
    tasks, metas = [], {}
    for unit in todo:
        base = stage.part(unit)
        wanted = {shard_name(base, i, name): (code, i, lo, hi) for code, name in enumerate(sets) for i, lo, hi in cut}
        metas[base] = shard_meta(stage.meta(cfg, unit), len(wanted), rows)
        for name in shards_to_write(study_dir, table, base, list(wanted), metas[base]):
            code, i, lo, hi = wanted[name]
            tasks.append({"K": unit.K, "seed": unit.seed, "set_code": code, "shard": i, "lo": lo, "hi": hi,
                          "base": base, **axis_task(unit.axis)})
    if not tasks:
        return
    expected = sum(t["hi"] - t["lo"] for t in tasks)
    shown = progress.Progress(stage.name, len(tasks), "shards", expected, "samples")
    ray_data_output()
    # One block per shard, so the pool hands shards out one by one and grows with the queue.
    ds = ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
        actor, fn_constructor_kwargs={**ctor_kwargs, "study_dir": study_dir},
        fn_kwargs={"study_dir": study_dir, "metas": metas}, batch_size=1, batch_format="numpy", **resources)
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        shown.update(len(b["rows"]), int(b["rows"].sum()))
    if shown.rows != expected:
        raise RuntimeError(f"{stage.name} wrote {shown.rows} rows of {expected}")
