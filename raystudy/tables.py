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

SCHEMAS: dict[str, pa.Schema] = {
    "runs": pa.schema([
        ("K", _I32), ("seed", _I32), ("model", _STR), ("steps", _I64), ("images_seen", _I64),
        ("final_loss", _F64), ("checkpoint", _STR), ("wall_s", _F64),
    ]),
    "samples": pa.schema([
        ("K", _I32), ("seed", _I32), ("set", _STR), ("sample_id", _I32), ("sample_seed", _I64),
        ("channels", pa.int16()), ("height", pa.int16()), ("width", pa.int16()),
        ("image", pa.list_(_F32)),
    ]),
    "neighbors": pa.schema([
        ("K", _I32), ("seed", _I32), ("sample_id", _I32), ("metric", _STR),
        ("train_idx", pa.list_(_I64)), ("train_dist", pa.list_(_F64)),
        ("synth_idx", pa.list_(_I64)), ("synth_dist", pa.list_(_F64)),
    ]),
    "labels": pa.schema([
        ("K", _I32), ("seed", _I32), ("sample_id", _I32), ("metric", _STR),
        ("d_train", _F64), ("d_synth", _F64), ("label", _STR),
        # The ratio test (Gu et al. 2023): NN1/NN2 on per-pixel L2 to the training set, memorized if < 1/3;
        # NN1 = NN2 = 0 (a copy of a duplicated image) is ratio 0, memorized (Gu et al.'s code: NaN).
        ("ratio", _F64), ("ratio_memorized", pa.bool_()),
        # Reconstruction error of the best on-manifold fit (known-manifold datasets only, else null).
        ("manifold_error", _F64),
    ]),
    "fractions": pa.schema([
        ("K", _I32), ("seed", _I32), ("metric", _STR), ("n", _I64),
        ("memorized", _F64), ("spurious", _F64), ("generalized", _F64),
        # The ratio test's memorized fraction, beside the paper's rule.
        ("ratio_memorized", _F64),
    ]),
    # The chance level (raystudy.null): held-out real images labelled by the same rule against the K-set
    # (d_synth against the held-out split's other half); n = 0 and NaN where not computed (LPIPS metrics).
    # The same for every seed of a K (stored per unit); a sample fraction at or below it is chance.
    "null_fractions": pa.schema([
        ("K", _I32), ("seed", _I32), ("metric", _STR), ("n", _I64),
        ("memorized", _F64), ("spurious", _F64), ("generalized", _F64), ("ratio_memorized", _F64),
    ]),
    # The train stage's loss curve: one row per logged step of each run.
    "train_log": pa.schema([
        ("K", _I32), ("seed", _I32), ("step", _I64), ("images_seen", _I64), ("loss", _F64),
    ]),
    # Critical time per item (a generated sample, a training image, a held-out image).
    # kind: "sample" (item_id = sample_id of the eval set), "train" / "held-out" (item_id = dataset index).
    # label: the sample's label under `metric` (null for train / held-out items); pick: "top" / "bottom"
    # of the label's ranking (basins.select_items; null for train / held-out items); d_train, d_synth: its
    # labels row. t_crit: first passage, the last scanned t before the recovery rate over the trials
    # first drops below p (0 if it is below p at t = 1); radius: mean ||x_t - x|| over the trials at t_crit.
    "basins": pa.schema([
        ("K", _I32), ("seed", _I32), ("metric", _STR), ("kind", _STR), ("item_id", _I64), ("label", _STR),
        ("pick", _STR), ("d_train", _F64), ("d_synth", _F64), ("t_crit", _I64), ("radius", _F64),
    ]),
    # Per trial: t_survive, the last scanned t before that trial's first failure (0: failed at t = 1),
    # uncensored; the paper's per-trial Tc is this, cut where every item of its batch has rate < p.
    "basin_trials": pa.schema([
        ("K", _I32), ("seed", _I32), ("kind", _STR), ("item_id", _I64), ("trial", _I32),
        ("t_survive", _I64), ("radius", _F64),
    ]),
    # The recovery rate at every scanned t (until the item's scan stopped).
    "basin_rates": pa.schema([
        ("K", _I32), ("seed", _I32), ("kind", _STR), ("item_id", _I64), ("t", _I64), ("rate", _F64),
        ("n_trials", _I32),
    ]),
    # Relative energy along the quarter circle x(a) = cos(a) x + sin(a) r, at timestep t.
    # energy = E(r) - E(x) with E = -log p_t; drift_potential = the reference code's integral of the
    # reverse-SDE drift; quad_error = |I_n - I_2n| of the quadrature. label, pick: as in `basins` (the
    # item's label and "top" / "bottom" of its ranking; null for training and held-out items).
    "energy": pa.schema([
        ("K", _I32), ("seed", _I32), ("kind", _STR), ("item_id", _I64), ("label", _STR), ("pick", _STR),
        ("reference_kind", _STR), ("reference_id", _I64), ("t", _I64),
        ("energy", _F64), ("drift_potential", _F64), ("quad_error", _F64),
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
    """Build a table of ``name``'s schema; a missing or extra column is an error."""
    schema = SCHEMAS[name]
    missing = set(schema.names) - set(columns)
    extra = set(columns) - set(schema.names)
    if missing or extra:
        raise ValueError(f"table {name}: missing columns {sorted(missing)}, unexpected {sorted(extra)}")
    arrays = [_column(columns[f.name], f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    if meta:
        table = table.replace_schema_metadata({k: str(v) for k, v in meta.items()})
    return table


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


def write_figure(fig, path) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
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


def read_unit(study_dir, name: str, K: int, seed: int, *, metric: str | None = None, set: str | None = None,
              ids: tuple[int, int] | None = None, columns: list[str] | None = None) -> pa.Table:
    """The rows of one unit of a table ((K, seed), with ``metric`` and/or the sample ``set``
    where the table has them), optionally only sample ids ``lo <= id < hi``, ordered by
    sample id: pushed down to Parquet as filters, so only those rows are read."""
    import pyarrow.compute as pc

    f = (pc.field("K") == K) & (pc.field("seed") == seed)
    if metric is not None:
        f &= pc.field("metric") == metric
    if set is not None:
        f &= pc.field("set") == set
    if ids is not None:
        f &= (pc.field("sample_id") >= ids[0]) & (pc.field("sample_id") < ids[1])
    t = read(study_dir, name, columns=columns, filters=f)
    return t.sort_by("sample_id") if "sample_id" in t.column_names else t


def read_samples(study_dir, k: int, seed: int, set_name: str) -> tuple:
    """(sample_id, images (n, C, H, W) float32) of one sample set, ordered by sample_id."""
    import numpy as np

    t = read_unit(study_dir, "samples", k, seed, set=set_name)
    if t.num_rows == 0:
        raise FileNotFoundError(f"no {set_name} samples for K={k} seed={seed} in {study_dir}: run the generate stage")
    c, h, w = (int(t[col][0].as_py()) for col in ("channels", "height", "width"))
    return t["sample_id"].to_numpy(), list_to_numpy(t["image"]).reshape(-1, c, h, w).astype(np.float32)


def dumps_meta(**kv) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in kv.items()}
