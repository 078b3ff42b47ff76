"""Loading: every table of one or several studies into pandas, and DuckDB views over the same files.

``load(DIR)`` or ``load(DIR1, DIR2, ...)`` returns a :class:`Studies`: one pandas DataFrame per
table with a leading ``study`` column, plus each study's config (``config.yaml`` read with
plain YAML) and stage run times (``stages.json``, when the study wrote one). An absent table
is an empty DataFrame of its schema, so code that draws basins or energy can ask
``st.has("basins")`` and say so when there is nothing to draw.

``connect(DIR, ...)`` gives the same tables as SQL views (one view per table, a ``study``
column in each), reading the Parquet part files in place::

    con = connect("studies/demo")
    con.sql(EXAMPLE_QUERY).df()

Nothing here imports torch or Ray; ``config.yaml`` is read as YAML, not through
``raystudy.config``, so a laptop with pandas, pyarrow and duckdb can read a cluster's study.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd
import yaml

from .. import tables as _tables
from ..compute.classify import DELTA_M, DELTA_S
from ..errors import AnalysisError

TABLES: tuple[str, ...] = tuple(_tables.SCHEMAS)
LABELS: tuple[str, ...] = tuple(_tables.LABELS)
# the columns beside K and seed that tell one checkpoint from another (raystudy.axes)
AXIS_COLUMNS: tuple[str, ...] = tuple(_tables.AXIS_COLUMNS)
# which rows a one-curve function reads: each study's main model, or every checkpoint pooled
CHECKPOINTS: tuple[str, ...] = ("main", "all")

# The one documented example query: relabel from the stored distances in SQL, no study re-run.
EXAMPLE_QUERY = """\
-- memorized fraction per K under a threshold of your choosing (here l2 <= 0.05),
-- straight from the stored raw distances, next to the fraction the study recorded
SELECT l.study, l.metric, l.K,
       count(*)                             AS n,
       avg((l.d_train <= 0.05)::DOUBLE)     AS memorized_at_0_05,
       avg((l.label = 'memorized')::DOUBLE) AS memorized_as_labelled
FROM labels AS l
WHERE l.metric = 'l2'
GROUP BY ALL
ORDER BY l.study, l.K"""


def _flatten_dirs(dirs) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        if isinstance(d, (str, os.PathLike)):
            out.append(Path(d))
        else:
            out.extend(Path(x) for x in d)
    if not out:
        raise AnalysisError("give at least one study folder")
    for d in out:
        if not (d / "tables").is_dir():
            raise AnalysisError(f"{d} is not a study folder (no tables/ inside)")
    return out


def read_config(study_dir) -> dict:
    """The study's ``config.yaml`` as a plain dict ({} if absent)."""
    p = Path(study_dir) / "config.yaml"
    if not p.exists():
        return {}
    return yaml.safe_load(p.read_text()) or {}


def read_stages(study_dir) -> pd.DataFrame | None:
    """``stages.json`` ({"stage": {"wall_s": ..., ...}}) as one row per stage, or None if absent."""
    p = Path(study_dir) / "stages.json"
    if not p.exists():
        return None
    try:
        raw = json.loads(p.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    rows = []
    for name, rec in (raw.items() if isinstance(raw, dict) else []):
        rec = rec if isinstance(rec, dict) else {"wall_s": rec}
        rows.append({"stage": name, **{k: v for k, v in rec.items() if not isinstance(v, (dict, list))}})
    return pd.DataFrame(rows) if rows else None


def study_thresholds(config: dict | None) -> tuple[dict[str, float], dict[str, float]]:
    """(delta_m, delta_s), each per metric, of a config dict: its ``classify`` section over the
    package defaults (raystudy.compute.classify) metric by metric, as raystudy.config reads a config file
    that sets one threshold."""
    c = (config or {}).get("classify") or {}
    return {**DELTA_M, **(c.get("delta_m") or {})}, {**DELTA_S, **(c.get("delta_s") or {})}


def thresholds(config: dict, metric: str) -> tuple[float, float]:
    """(delta_m, delta_s) of ``metric`` from a config dict (:func:`study_thresholds`)."""
    dm, ds = study_thresholds(config)
    if metric not in dm or metric not in ds:
        raise AnalysisError(f"no classify thresholds for metric {metric!r} in config.yaml")
    return float(dm[metric]), float(ds[metric])


def study_names(dirs: Iterable) -> list[str]:
    """A short unique name per study: its ``study.name`` when those are unique, else its folder
    name, else its path."""
    dirs = [Path(d) for d in dirs]
    names = [str((read_config(d).get("study") or {}).get("name") or d.name) for d in dirs]
    if len(set(names)) == len(names):
        return names
    names = [d.name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [str(d) for d in dirs]


def read_table(study_dir, name: str, columns: list[str] | None = None, filters=None,
               by_row_group: bool = False) -> pd.DataFrame:
    """One table of one study as pandas (all parts; empty with the schema's columns if absent);
    ``by_row_group``: a few rows of a large table (``raystudy.tables.read``)."""
    return _tables.read(study_dir, name, columns=columns, filters=filters, by_row_group=by_row_group).to_pandas()


def with_axes(df: pd.DataFrame | None) -> pd.DataFrame:
    """``df`` with ``variant`` and ``twin`` where absent or null taking the values of a row written
    without them (``raystudy.tables.pre_axis_values``: "base", 0), only the first model of twins
    kept (``twin == 0``), and ``images_seen``. A study's tables always have ``images_seen`` (a part
    written before snapshots reads as its study's train.images); a frame without the column
    records no train.images, so its one checkpoint per variant is keyed 0."""
    if df is None:
        return pd.DataFrame()
    fill = _tables.pre_axis_values(None)
    df = df.copy()
    if "variant" not in df:
        df["variant"] = fill["variant"]
    df["variant"] = df["variant"].fillna(fill["variant"]).astype(str)
    if "images_seen" not in df:
        df["images_seen"] = 0
    if "twin" in df:
        df = df[df["twin"].fillna(fill["twin"]).astype(int) == 0].drop(columns="twin")
    return df


@dataclass
class Studies:
    """Every table of one or several studies. ``st.fractions`` (or ``st["fractions"]``) is one
    DataFrame over all studies with a ``study`` column first; ``st.configs[name]`` is a config
    dict, ``st.dirs[name]`` the folder, ``st.stages[name]`` the stage times (or None)."""

    dirs: dict[str, Path]
    configs: dict[str, dict]
    frames: dict[str, pd.DataFrame]
    stages: dict[str, pd.DataFrame | None] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.dirs)

    def __getitem__(self, table: str) -> pd.DataFrame:
        if table not in self.frames:
            raise KeyError(f"table {table!r} not loaded; loaded: {', '.join(self.frames)}")
        return self.frames[table]

    def __getattr__(self, table: str) -> pd.DataFrame:
        frames = self.__dict__.get("frames", {})
        if table in frames:
            return frames[table]
        raise AttributeError(table)

    def has(self, table: str) -> bool:
        """Whether the table was loaded and has at least one row."""
        return table in self.frames and len(self.frames[table]) > 0

    def metrics(self) -> list[str]:
        df = self.frames.get("labels")
        if df is None or df.empty:
            df = self.frames.get("fractions")
        return sorted(df["metric"].unique()) if df is not None and not df.empty else []

    def thresholds(self, study: str, metric: str) -> tuple[float, float]:
        return thresholds(self.configs.get(study, {}), metric)

    def main(self, tables: Iterable[str] | None = None) -> "Studies":
        """The same tables (or only ``tables``) at each study's main checkpoint
        (``raystudy.axes.main_checkpoint``: the config's first variant, ``base`` without
        ``variants``, its final model, twin 0): what ``raystudy show``, the report and the
        notebook's one-curve functions (``summary``, ``curves``, ``transition_figure``, ...)
        show. Every snapshot, variant and twin is in ``st`` itself, for the phase diagram."""
        from ..axes import main_rows

        names = list(self.frames) if tables is None else [t for t in tables if t in self.frames]
        frames = {t: pd.concat([main_rows(df[df["study"] == s], self.configs.get(s)) for s in self.names])
                  if len(df) else df for t, df in ((t, self.frames[t]) for t in names)}
        return Studies(self.dirs, self.configs, frames, self.stages)

    def view(self, checkpoints: str, tables: Iterable[str]) -> "Studies":
        """The studies at each study's main model (``checkpoints="main"``: :meth:`main`), or as
        they are (``"all"``); only ``tables`` are restricted, the ones the caller reads."""
        if checkpoints not in CHECKPOINTS:
            raise AnalysisError(f"checkpoints must be 'main' or 'all', not {checkpoints!r}")
        return self.main(tables) if checkpoints == "main" else self

    def main_view(self) -> tuple["Studies", str]:
        """(:meth:`main`, a sentence saying which model that is, or '' when there was nothing to
        restrict). The one-curve figures (:func:`raystudy.analysis.plots.draw_all`) and the
        report's summary are of this view, so snapshots and variants are never pooled into one
        curve."""
        fr = self.frames.get("fractions")
        if fr is None or fr.empty:
            fr = self.frames.get("labels")
        if fr is None or fr.empty or not any(c in fr for c in AXIS_COLUMNS):
            return self, ""
        from ..axes import main_checkpoint

        # The rule for "the main model" is raystudy.axes.main_checkpoint's, as main() applies it:
        # this only adds the sentence that says which model the one-curve figures show.
        fr = with_axes(fr)
        said = []
        for s, g in fr.groupby("study", sort=False) if "study" in fr else [(None, fr)]:
            m = main_checkpoint(self.configs.get(s) if s is not None else None)
            if g["variant"].nunique() > 1 or g["images_seen"].nunique() > 1:
                said.append(f"{s + ': ' if s is not None else ''}variant {m['variant']} at its final snapshot "
                            f"({m['images_seen']} images seen)")
        note = ("The transition figures and summary show " + "; ".join(said) +
                "; every snapshot and variant is in the phase diagram section.") if said else ""
        return self.main(), note

    def one(self, study: str) -> "Studies":
        """The same tables restricted to one study."""
        return Studies({study: self.dirs[study]}, {study: self.configs[study]},
                       {t: df[df["study"] == study] for t, df in self.frames.items()},
                       {study: self.stages.get(study)})


def load(*dirs, tables: Iterable[str] | None = None) -> Studies:
    """Load every table (or only ``tables``) of one or several study folders into pandas.

    ``load("studies/demo")``, ``load("a", "b")`` and ``load(["a", "b"])`` all work. Each
    DataFrame starts with a ``study`` column (the study's name, see :func:`study_names`)."""
    paths = _flatten_dirs(dirs)
    names = study_names(paths)
    wanted = list(TABLES) if tables is None else list(tables)
    for t in wanted:
        if t not in _tables.SCHEMAS:
            raise AnalysisError(f"unknown table {t!r}; known: {', '.join(TABLES)}")
    frames = {}
    for t in wanted:
        parts = []
        for name, d in zip(names, paths):
            df = read_table(d, t)
            df.insert(0, "study", name)
            parts.append(df)
        frames[t] = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return Studies(dict(zip(names, paths)), {n: read_config(d) for n, d in zip(names, paths)},
                   frames, {n: read_stages(d) for n, d in zip(names, paths)})


def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def connect(*dirs, database: str = ":memory:"):
    """A DuckDB connection with one view per table over the studies' Parquet files.

    Each view has a ``study`` column first; a table no study has is an empty view of its
    schema, so a query over ``basins`` returns no rows instead of failing. The views read
    the part files by glob, so parts written later are seen by later queries. Try
    ``connect(d).sql(EXAMPLE_QUERY).df()``."""
    import duckdb
    import pyarrow as pa

    paths = _flatten_dirs(dirs)
    names = study_names(paths)
    con = duckdb.connect(database)
    for t in TABLES:
        selects = []
        for name, d in zip(names, paths):
            tdir = _tables.table_dir(d, t)
            if tdir.is_dir() and any(tdir.glob("part-*.parquet")):
                glob = str(tdir.resolve() / "part-*.parquet")
                selects.append(f"SELECT {_sql_str(name)} AS study, * FROM read_parquet({_sql_str(glob)}, "
                               "union_by_name = true)")
        if selects:
            con.execute(f'CREATE VIEW "{t}" AS ' + " UNION ALL BY NAME ".join(selects))
        else:
            schema = _tables.SCHEMAS[t]
            empty = pa.schema([pa.field("study", pa.string()), *schema]).empty_table()
            con.register(f"_empty_{t}", empty)
            con.execute(f'CREATE VIEW "{t}" AS SELECT * FROM "_empty_{t}"')
    return con
