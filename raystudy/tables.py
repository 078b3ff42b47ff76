"""Table schemas and atomic Parquet I/O: the contract between stages and with analysis.

A table is a directory ``DIR/tables/NAME/`` of Parquet part files, so that
``pandas.read_parquet(DIR/tables/NAME)`` (or DuckDB's ``read_parquet('.../*.parquet')``)
reads it whole. Each part is written to a hidden temporary name and renamed, so
a reader never sees half a file, and a stage that adds a metric or a K adds a
part instead of rewriting the table. This module imports no torch on purpose.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

_I32, _I64, _F32, _F64, _STR = pa.int32(), pa.int64(), pa.float32(), pa.float64(), pa.string()

# Every table with K and seed has the axes of raystudy.axes: variant (string, "base" = the `model`
# section), twin (int32: 0 = the model on the study's K-set, 1 = its twin on a disjoint K-set) and
# images_seen (int64: the snapshot's images seen; train.images for the final model). Parts written
# before these columns existed read as variant "base", twin 0 and their study's train.images (``read``).
AXIS_COLUMNS = ("variant", "twin", "images_seen")

SCHEMAS: dict[str, pa.Schema] = {
    # One row per model checkpoint: the final model of each run (images_seen = what it trained on; 0 for
    # the exact memorizer) and each of its snapshots (raystudy.axes). variant: the model configuration
    # ("base": the `model` section); twin: 0 the model on the study's K-set, 1 its twin on a disjoint one;
    # params: the network's parameter count (0: the exact memorizer, no network).
    "runs": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("model", _STR), ("steps", _I64),
        ("images_seen", _I64), ("final_loss", _F64), ("checkpoint", _STR), ("wall_s", _F64), ("params", _I64),
    ]),
    "samples": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("set", _STR), ("sample_id", _I32), ("sample_seed", _I64),
        ("channels", pa.int16()), ("height", pa.int16()), ("width", pa.int16()),
        ("image", pa.list_(_F32)),
    ]),
    "neighbors": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("sample_id", _I32), ("metric", _STR),
        ("train_idx", pa.list_(_I64)), ("train_dist", pa.list_(_F64)),
        ("synth_idx", pa.list_(_I64)), ("synth_dist", pa.list_(_F64)),
    ]),
    "labels": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("sample_id", _I32), ("metric", _STR),
        ("d_train", _F64), ("d_synth", _F64), ("label", _STR),
        # The ratio test (Gu et al. 2023): NN1/NN2 on per-pixel L2 to the training set, memorized if < 1/3;
        # NN1 = NN2 = 0 (a copy of a duplicated image) is ratio 0, memorized (Gu et al.'s code: NaN).
        ("ratio", _F64), ("ratio_memorized", pa.bool_()),
        # Reconstruction error of the best on-manifold fit (known-manifold datasets only, else null).
        ("manifold_error", _F64),
    ]),
    "fractions": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("metric", _STR), ("n", _I64),
        ("memorized", _F64), ("spurious", _F64), ("generalized", _F64),
        # The ratio test's memorized fraction, beside the paper's rule.
        ("ratio_memorized", _F64),
    ]),
    # The chance level (raystudy.compute.null): held-out real images labelled by the same rule against the K-set
    # (d_synth against the split's other images); n = 0 and NaN where not computed (LPIPS metrics).
    # The same for every seed of a K (stored per unit); a sample fraction at or below it is chance.
    "null_fractions": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("metric", _STR), ("n", _I64),
        ("memorized", _F64), ("spurious", _F64), ("generalized", _F64), ("ratio_memorized", _F64),
    ]),
    # The train stage's loss curve: one row per logged step of each run (its final model's unit; a
    # snapshot adds no rows: its curve is the run's up to its images_seen).
    "train_log": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("step", _I64), ("images_seen", _I64),
        ("loss", _F64),
    ]),
    # The loss curves of a run (raystudy.onset): per evaluation of its EMA model and noise level
    # (timestep: a DDPM index), the denoising loss on a fixed batch of n_train items of its K-set
    # and of n_held_out held-out images, with fixed noise; the means and each item's loss (the
    # same items, in the same order, at every evaluation of the run). Its final model's unit, like
    # train_log.
    "loss_curves": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("level", _I32), ("timestep", _I64), ("train_loss", _F64), ("held_out_loss", _F64),
        ("n_train", _I32), ("n_held_out", _I32), ("train_losses", pa.list_(_F64)),
        ("held_out_losses", pa.list_(_F64)),
    ]),
    # Critical time per item (a generated sample, a training image, a held-out image).
    # kind: "sample" (item_id = sample_id of the eval set), "train" / "held-out" (item_id = dataset index).
    # label: the sample's label under `metric` (null for train / held-out items); pick: "top" / "bottom"
    # of the label's ranking (basins.select_items; null for train / held-out items); d_train, d_synth: its
    # labels row. t_crit: first passage, the last scanned t before the recovery rate over the trials
    # first drops below p (0 if it is below p at t = 1); radius: mean ||x_t - x|| over the trials at t_crit.
    "basins": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("metric", _STR), ("kind", _STR), ("item_id", _I64), ("label", _STR),
        ("pick", _STR), ("d_train", _F64), ("d_synth", _F64), ("t_crit", _I64), ("radius", _F64),
    ]),
    # Per trial: t_survive, the last scanned t before that trial's first failure (0: failed at t = 1),
    # uncensored; the paper's per-trial Tc is this, cut where every item of its batch has rate < p.
    "basin_trials": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("kind", _STR), ("item_id", _I64), ("trial", _I32),
        ("t_survive", _I64), ("radius", _F64),
    ]),
    # The recovery rate at every scanned t (until the item's scan stopped).
    "basin_rates": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("kind", _STR), ("item_id", _I64), ("t", _I64), ("rate", _F64),
        ("n_trials", _I32),
    ]),
    # Relative energy along the quarter circle x(a) = cos(a) x + sin(a) r, at timestep t.
    # energy = E(r) - E(x) with E = -log p_t; drift_potential = the reference code's integral of the
    # reverse-SDE drift; quad_error = |I_n - I_2n| of the quadrature. label, pick: as in `basins` (the
    # item's label and "top" / "bottom" of its ranking; null for training and held-out items).
    "energy": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("twin", _I32), ("images_seen", _I64),
        ("kind", _STR), ("item_id", _I64), ("label", _STR), ("pick", _STR),
        ("reference_kind", _STR), ("reference_id", _I64), ("t", _I64),
        ("energy", _F64), ("drift_potential", _F64), ("quad_error", _F64),
    ]),
    # Twin models (raystudy.compute.twins): model A (twin 0) and B (twin 1) of the same (K, seed, variant, snapshot)
    # trained on disjoint K-sets and sampled from the same sample_seed (eval set). Distances in the metric's
    # units as in neighbors/labels (l2: per-pixel RMS). d_twin: A's sample to B's sample of that seed;
    # d_own_a / d_other_a: A's sample to its nearest image of A's K-set / of B's K-set; d_own_b / d_other_b:
    # the same for B's sample. Reproducibility at K: the fraction with d_twin < classify.delta_m[metric].
    "twins": pa.schema([
        ("K", _I32), ("seed", _I32), ("variant", _STR), ("images_seen", _I64), ("metric", _STR),
        ("sample_id", _I32), ("sample_seed", _I64), ("d_twin", _F64),
        ("d_own_a", _F64), ("d_other_a", _F64), ("d_own_b", _F64), ("d_other_b", _F64),
    ]),
}

LABELS = ("memorized", "spurious", "generalized")


def table_dir(study_dir: str | os.PathLike, name: str) -> Path:
    if name not in SCHEMAS:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(SCHEMAS)}")
    return Path(study_dir) / "tables" / name


def _part_path(study_dir, name: str, part: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", part):
        raise ValueError(f"bad part name {part!r}")
    return table_dir(study_dir, name) / f"part-{part}.parquet"


def to_table(name: str, columns: Mapping[str, Iterable], meta: Mapping[str, str] | None = None) -> pa.Table:
    """Build a table of ``name``'s schema; a missing or extra column is an error, except the axis
    columns (raystudy.axes), which rows of the main model may leave out: variant "base", twin 0,
    images_seen the ``train.images`` of ``meta``'s dependencies (null without them); and runs'
    ``params`` (null: unknown)."""
    schema = SCHEMAS[name]
    columns = {**columns, **_axis_defaults(name, columns, meta)}
    missing = set(schema.names) - set(columns)
    extra = set(columns) - set(schema.names)
    if missing or extra:
        raise ValueError(f"table {name}: missing columns {sorted(missing)}, unexpected {sorted(extra)}")
    arrays = [_column(columns[f.name], f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    if meta:
        table = table.replace_schema_metadata({k: str(v) for k, v in meta.items()})
    return table


# A checkpoint that trained nothing (the closed-form models, samples made elsewhere): the values of
# the ``runs`` columns its record leaves out.
UNTRAINED = {"steps": 0, "images_seen": 0, "final_loss": float("nan"), "checkpoint": "", "wall_s": 0.0, "params": 0}


def runs_rows(records: Iterable[Mapping]) -> dict[str, list]:
    """The ``runs`` table's columns, one row per checkpoint record (a dict with K, seed and model at
    least, as a model folder's run record holds it; other keys are ignored). What a record leaves
    out takes ``UNTRAINED``'s value; variant and twin left out (or None) are the main model's, and
    params None is unknown (``to_table``)."""
    rows = [{**UNTRAINED, **r} for r in records]
    for r in rows:
        if any(c not in r for c in ("K", "seed", "model")):
            raise ValueError(f"runs_rows: a record needs K, seed and model, got {sorted(r)}")
    return {c: [r.get(c) for r in rows] for c in SCHEMAS["runs"].names}


def samples_rows(k: int, seed: int, set_name: str, sample_id, sample_seed, images, axis_columns: Mapping | None = None) -> dict:
    """The ``samples`` table's columns of one sample set's rows: ``images`` (n, C, H, W) float32 in
    [-1, 1], stored flat beside their shape; ``sample_seed`` (n,) each sample's seed (-1: none,
    samples made elsewhere); ``axis_columns``: their checkpoint's (``raystudy.axes.columns``; left
    out: the main model's, ``to_table``)."""
    import numpy as np

    n, (c, h, w) = len(images), images.shape[1:]
    return {"K": np.full(n, k), "seed": np.full(n, seed), **(axis_columns or {}), "set": np.full(n, set_name),
            "sample_id": np.asarray(sample_id), "sample_seed": np.asarray(sample_seed), "channels": np.full(n, c),
            "height": np.full(n, h), "width": np.full(n, w), "image": images.reshape(n, -1)}


def _all_none(values) -> bool:
    return isinstance(values, list) and len(values) > 0 and all(v is None for v in values)


def _axis_defaults(name: str, columns: Mapping[str, Iterable], meta: Mapping[str, str] | None) -> dict:
    """Defaults for the axis columns left out (or left empty beside a non-empty K)."""
    if "K" not in columns:
        return {}
    n = len(columns["K"])
    lack = [c for c in (*AXIS_COLUMNS, "params") if c in SCHEMAS[name].names
            and (c not in columns or (n and not len(columns[c])) or _all_none(columns[c]))]
    if not lack:
        return {}
    values = {**pre_axis_values(meta), "params": None}  # params: unknown
    return {c: [values[c]] * n for c in lack}


def pre_axis_values(meta: Mapping[str, str] | None) -> dict:
    """The axis columns' values for rows written without them. A study made before snapshots,
    variants and twins has one model per (K, seed): the base variant's final model, twin 0,
    which saw ``train.images`` (read from ``meta``'s recorded dependencies; None where they do
    not record it)."""
    try:
        images = json.loads((meta or {}).get("depends", "{}")).get("train.images")
    except (json.JSONDecodeError, AttributeError):
        images = None
    return {"variant": "base", "twin": 0, "images_seen": images}


def _column(values, typ: pa.DataType) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.cast(typ)
    if pa.types.is_list(typ) and getattr(values, "ndim", 0) == 2:  # (n, d) -> n lists, no loop over rows
        flat = pa.array(values.reshape(-1), type=typ.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1]).cast(typ)
    return pa.array(values if hasattr(values, "__array__") else list(values), type=typ)


def list_to_numpy(col, width: int | None = None):
    """A list column (all rows the same length) back to an (n, d) numpy array."""
    import numpy as np

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(col) == 0:
        return np.zeros((0, width or 0))
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(col), -1)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (file or folder) to write; on success rename it
    over ``path``, on failure remove it. The one way anything in a study is written, so a
    reader (or a re-run after a crash) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Leading dot: pyarrow datasets skip hidden files, so readers never see the temp.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)  # a folder cannot be replaced in one rename
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


# The adaptive sweep's record, beside the tables: raystudy.adaptive writes it after each round,
# the report shows it.
SWEEP_JSON = "sweep.json"


def read_sweep(study_dir) -> dict | None:
    """The study's ``sweep.json``, or None when it has none (or an unreadable one)."""
    p = Path(study_dir) / SWEEP_JSON
    try:
        return json.loads(p.read_text()) if p.exists() else None
    except json.JSONDecodeError:
        return None


def write_figure(fig, path, dpi: int = 150) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it; 150 dpi is
    the report's resolution (``analysis.plots.style.DPI``), readable on a laptop screen."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def write_part(study_dir, name: str, part: str, table: pa.Table) -> Path:
    """Write one part atomically (temporary name in the same directory, then rename)."""
    if not table.schema.remove_metadata().equals(SCHEMAS[name]):
        raise ValueError(f"table {name}: schema {table.schema} does not match {SCHEMAS[name]}")
    path = _part_path(study_dir, name, part)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS.get(name))
    return path


def remove_part(study_dir, name: str, part: str) -> None:
    """Remove one part if it is there (the part's name by the same rule ``write_part`` writes it)."""
    _part_path(study_dir, name, part).unlink(missing_ok=True)


def part_meta(study_dir, name: str, part: str) -> dict[str, str] | None:
    """The part's key-value metadata, or None if the part is absent (or unreadable)."""
    try:
        md = pq.read_schema(_part_path(study_dir, name, part)).metadata or {}
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None
    return {k.decode(): v.decode() for k, v in md.items()}


# Rows per Parquet row group where a row is large: a samples row is a whole image (12 KB at
# CIFAR size), and a reader that wants a few rows by id decodes whole row groups. 256 rows
# (3 MB at CIFAR size) keep such reads small (see ``read(..., by_row_group=True)``).
ROW_GROUP_ROWS = {"samples": 256}


def use_system_allocator() -> None:
    """pyarrow's allocations from here on go to the C library's malloc, not its default pool.

    For the driver, which reads a study's tables unit by unit for hours: the default pool
    (mimalloc) keeps the pages a read freed, so the driver's resident memory grew with the
    samples it read (classify + figures: +42 MB at 20,000 samples per set, 2 MB of neighbour
    distances read; benchmarks/driver_memory.py), where malloc gives them back. The Ray
    workers, which read and write large parts at full speed, keep the default pool."""
    pa.set_memory_pool(pa.system_memory_pool())


def read(study_dir, name: str, columns: list[str] | None = None, filters=None,
         by_row_group: bool = False) -> pa.Table:
    """Read a whole table (all parts); an absent table is an empty table of its schema.

    ``by_row_group``: for a few rows of a large table (a figure's samples by id). The row
    groups are visited one at a time, the filter is first evaluated on the table's scalar
    columns alone, and only row groups holding a match are decoded in full -- a whole-table
    scan would decode every image of every part (about 1 GB at 50,000 samples per set, for
    20 rows) before filtering."""
    d = table_dir(study_dir, name)
    files = sorted(str(p) for p in d.glob("part-*.parquet")) if d.exists() else []
    if not files:
        schema = SCHEMAS[name]
        t = schema.empty_table()
        return t.select(columns) if columns else t
    fills = {f: fill for f in files if (fill := _legacy_fill(f, name))}
    if fills:
        current = [f for f in files if f not in fills]
        out = [read_files(current, name, columns, filters, by_row_group)] if current else []
        out += [_read_legacy(f, name, fill, columns, filters) for f, fill in fills.items()]
        return pa.concat_tables(out)
    return read_files(files, name, columns, filters, by_row_group)


def _legacy_fill(path: str, name: str) -> dict | None:
    """For a part written before the axis columns existed: the values they take
    (:func:`pre_axis_values` of the part's own metadata)."""
    schema = pq.read_schema(path)
    lack = [c for c in AXIS_COLUMNS if c in SCHEMAS[name].names and c not in schema.names]
    if not lack:
        return None
    values = pre_axis_values({k.decode(): v.decode() for k, v in (schema.metadata or {}).items()})
    return {c: values[c] for c in lack}


def _read_legacy(path: str, name: str, fill: dict, columns, filters) -> pa.Table:
    import pyarrow.dataset as ds

    schema = SCHEMAS[name]

    def filled(t: pa.Table) -> pa.Table:
        for c, v in fill.items():
            i = t.schema.get_field_index(c)
            t = t.set_column(i, schema.field(c), pa.array([v] * t.num_rows, type=schema.field(c).type))
        return t

    dataset = ds.dataset([path], format="parquet", schema=schema)
    if filters is not None:
        # The filter may name a filled column: decide on the scalar columns first (cheap), and
        # decode the whole part only when some row matches.
        scalar = [f.name for f in schema if not pa.types.is_list(f.type)]
        present = [c for c in scalar if c not in fill]
        if filled(_with_all(dataset.to_table(columns=present), schema)).filter(filters).num_rows == 0:
            t = schema.empty_table()
            return t.select(columns) if columns else t
    t = filled(dataset.to_table())
    if filters is not None:
        t = t.filter(filters)
    return t.select(columns) if columns else t


def _with_all(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """``t`` with the schema's other columns as nulls (so filled() finds every column)."""
    for i, f in enumerate(schema):
        if f.name not in t.column_names:
            t = t.add_column(min(i, t.num_columns), f, pa.nulls(t.num_rows, type=f.type))
    return t


def read_files(files: list[str], name: str, columns=None, filters=None, by_row_group: bool = False) -> pa.Table:
    import pyarrow.dataset as ds

    dataset = ds.dataset(files, format="parquet", schema=SCHEMAS[name])
    if not by_row_group or filters is None:
        return dataset.to_table(columns=columns, filter=filters)
    schema = SCHEMAS[name]
    scalar = [f.name for f in schema if not pa.types.is_list(f.type)]
    out = []
    for frag in dataset.get_fragments(filter=filters):
        for rg in frag.split_by_row_group(filters, schema=schema):
            if rg.to_table(columns=scalar, filter=filters, schema=schema).num_rows:
                out.append(rg.to_table(columns=columns, filter=filters, schema=schema))
                # Arrow's allocator would otherwise keep each decoded row group's pages.
                pa.default_memory_pool().release_unused()
    if not out:
        t = schema.empty_table()
        return t.select(columns) if columns else t
    return pa.concat_tables(out)


def read_pandas(study_dir, name: str, columns: list[str] | None = None):
    return read(study_dir, name, columns).to_pandas()


def read_unit(study_dir, name: str, unit, cfg_or_seed=None, *, metric: str | None = None, set: str | None = None,
              ids: tuple[int, int] | None = None, columns: list[str] | None = None, axis=None,
              images_seen: int | None = None) -> pa.Table:
    """The rows of one unit of a table, optionally only sample ids ``lo <= id < hi``, ordered by
    sample id: pushed down to Parquet as filters, so only those rows are read.

    ``read_unit(study, name, unit, cfg)``: a ``raystudy.axes.Unit`` at its checkpoint (its axis,
    ``images_seen`` from ``cfg``), with its metric where the table has one, and the sample ``set``
    where asked. ``read_unit(study, name, K, seed, metric=, axis=, images_seen=)``: the same by
    parts; ``axis`` (default: base, twin 0) picks the run, ``images_seen`` its checkpoint
    (``Axis.seen(cfg)``; None: any, which only a study without snapshots may use)."""
    import pyarrow.compute as pc

    from .axes import Unit

    if isinstance(unit, Unit):
        K, seed, axis, images_seen = unit.K, unit.seed, unit.axis, unit.axis.seen(cfg_or_seed)
        metric = unit.metric if "metric" in SCHEMAS[name].names else None
    else:
        K, seed = unit, cfg_or_seed
    f = (pc.field("K") == K) & (pc.field("seed") == seed)
    names = SCHEMAS[name].names
    if "variant" in names:
        f &= pc.field("variant") == (axis.variant if axis is not None else "base")
    if "twin" in names:
        f &= pc.field("twin") == (axis.twin if axis is not None else 0)
    if axis is not None and not axis.final and images_seen != axis.images_seen:
        raise ValueError(f"read_unit: a snapshot axis ({axis}) needs its images_seen")
    if images_seen is not None:
        # null: a row written without it (``to_table`` with no recorded train.images), the final model's
        at = pc.field("images_seen") == images_seen
        f &= at | pc.field("images_seen").is_null() if axis is None or axis.final else at
    if metric is not None:
        f &= pc.field("metric") == metric
    if set is not None:
        f &= pc.field("set") == set
    if ids is not None:
        f &= (pc.field("sample_id") >= ids[0]) & (pc.field("sample_id") < ids[1])
    t = read(study_dir, name, columns=columns, filters=f)
    return t.sort_by("sample_id") if "sample_id" in t.column_names else t


def read_samples(study_dir, k: int, seed: int, set_name: str, axis=None, images_seen: int | None = None) -> tuple:
    """(sample_id, images (n, C, H, W) float32) of one sample set, ordered by sample_id."""
    import numpy as np

    t = read_unit(study_dir, "samples", k, seed, set=set_name, axis=axis, images_seen=images_seen)
    if t.num_rows == 0:
        raise FileNotFoundError(f"no {set_name} samples for K={k} seed={seed} in {study_dir}: run the generate stage")
    c, h, w = (int(t[col][0].as_py()) for col in ("channels", "height", "width"))
    return t["sample_id"].to_numpy(), list_to_numpy(t["image"]).reshape(-1, c, h, w).astype(np.float32)


def dumps_meta(**kv) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in kv.items()}
