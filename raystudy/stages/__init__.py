"""The stage mechanism: one rule for "is this output still valid?".

A stage is one object with the same facts: the tables it reads, the tables it writes, the
config keys its output depends on, what one of its workers books, ``missing(cfg, study)`` and
``run_units(cfg, study, todo)``. Its output comes in units (``raystudy.axes.Unit``: a checkpoint,
with a metric where the stage has one), each a few Parquet parts. Every part carries in its
metadata the values of the keys its stage depends on, *including every upstream stage's*, and their hash (the fingerprint).
So one comparison decides for every stage: a unit whose parts are absent is missing,
one whose fingerprint differs is stale (and the stored values say which key changed),
and a change upstream makes everything downstream stale without any stage keeping
its own list of harmless keys.

This package is the Ray layer: ``shards.py`` (sharded parts and the one streaming loop) and
one module per stage of ``raystudy.study.STAGES``, named like it, each running its stage over
the plain module of the same name in ``raystudy.compute`` (``figures`` over ``raystudy.analysis``
and ``raystudy.datasets.toy``). The rule itself (this file) imports no Ray.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .. import axes, tables

Unit = axes.Unit


@dataclass(frozen=True)
class Todo:
    unit: Unit
    why: str  # "missing" or "stale (train.lr: 0.002 -> 0.001)"


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    # Config keys (dotted) this stage's output depends on; "{metric}" is the unit's metric.
    depends: tuple[str, ...]
    after: tuple["Stage", ...]
    units: Callable[..., list]            # cfg -> [Unit]
    run: Callable[..., None]              # (stage, cfg, study_dir, [Unit]) -> None
    # Keys in the fingerprint only while set (truthy): a key added later whose default changes
    # nothing leaves the fingerprints of the studies made before it as they were.
    depends_when_set: tuple[str, ...] = ()
    # A stale unit is recomputed, or refused where recomputing would silently put two
    # different models into one study.
    on_stale: str = "recompute"
    enabled: Callable[..., bool] = lambda cfg: True
    uses_ray: Callable[..., bool] = lambda cfg: True
    # Cheap checks before any work (and before the study folder is touched): raise UserError.
    check: Optional[Callable[..., None]] = None   # (stage, cfg, study_dir, [Unit], dataset)
    # Where a unit's fingerprints live; default: the metadata of its Parquet parts.
    stored: Optional[Callable[..., list]] = None  # (study_dir, Unit) -> [meta dict or None]
    # What one worker of this stage books on the cluster: (stage, cfg) -> (what, CPUs, GPUs).
    worker: Callable[..., tuple] = lambda stage, cfg: search_worker(stage, cfg)

    def part(self, unit: Unit) -> str:
        return unit.part

    def resources(self, cfg) -> tuple[str, float, float]:
        """(what, CPUs, GPUs) of one worker of this stage: what must fit the cluster before it runs."""
        return self.worker(self, cfg)

    def run_units(self, cfg, study_dir, todo: list) -> None:
        """Run this stage over the units ``todo``."""
        self.run(self, cfg, study_dir, todo)

    def check_units(self, cfg, study_dir, todo: list, dataset) -> None:
        """This stage's cheap checks before any work (none where it has none)."""
        if self.check is not None:
            self.check(self, cfg, study_dir, todo, dataset)

    # -- the one rule
    def keys(self, cfg, unit: Unit) -> list[str]:
        metric = unit.metric
        keys: dict[str, None] = {}
        for st in self.after:
            keys.update(dict.fromkeys(st.keys(cfg, unit)))
        for k in self.depends:
            keys[k.replace("{metric}", metric or "")] = None
        keys.update(dict.fromkeys(k for k in self.depends_when_set if cfg.value(k)))
        return list(keys)

    def depends_on(self, cfg, unit: Unit) -> dict:
        """The unit's dependencies: its keys' values in the config of its variant, plus what its axis
        adds (nothing for the default axis, so such units keep the fingerprints they always had)."""
        axis = unit.axis
        ucfg = axes.for_axis(cfg, axis)
        return {**{k: ucfg.value(k) for k in self.keys(cfg, unit)}, **axis.depends(cfg)}

    def meta(self, cfg, unit: Unit) -> dict[str, str]:
        deps = self.depends_on(cfg, unit)
        return {"study": cfg.study.name, "stage": self.name, "fingerprint": fingerprint(deps),
                "depends": json.dumps(deps, sort_keys=True)}

    def stored_meta(self, study_dir, unit: Unit) -> list:
        if self.stored is not None:
            return self.stored(study_dir, unit)
        return [tables.part_meta(study_dir, t, self.part(unit)) for t in self.writes]

    def missing(self, cfg, study_dir) -> list[Todo]:
        if not self.enabled(cfg):
            return []
        out = []
        for unit in self.units(cfg):
            want = self.depends_on(cfg, unit)
            fp = fingerprint(want)
            metas = self.stored_meta(study_dir, unit)
            if any(m is None for m in metas):
                out.append(Todo(unit, "missing"))
            elif any(m.get("fingerprint") != fp for m in metas):
                bad = next(m for m in metas if m.get("fingerprint") != fp)
                out.append(Todo(unit, f"stale ({changed(bad, want)})"))
        return out


def search_worker(stage, cfg) -> tuple[str, float, float]:
    """A worker that searches on the CPU with ``knn.faiss_threads`` threads."""
    return f"{stage.name} worker", float(cfg.knn.faiss_threads), 0.0


def fingerprint(deps: dict) -> str:
    return hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16]


def changed(stored: dict, want: dict) -> str:
    """Which leaf keys differ between a stored part's dependencies and the config's, as one phrase:
    a section stored whole (``model``) is compared key by key, so the phrase names
    ``model.type: empirical -> unet``, not the two sections."""
    try:
        old = _leaves(json.loads(stored.get("depends", "{}")))
    except json.JSONDecodeError:
        old = {}
    new = _leaves(json.loads(json.dumps(want)))  # tuples as the stored lists
    diffs = [f"{k}: {_show(old.get(k))} -> {_show(new.get(k))}" for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k)]
    return ", ".join(diffs) if diffs else "made by another version of raystudy"


def _leaves(deps: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in deps.items():
        if isinstance(v, dict) and v:
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _show(v) -> str:
    """A value as the user wrote it in YAML (a string unquoted); a long list cut, never a key."""
    s = v if isinstance(v, str) else json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


# Made by train.py and read back by the trackers (tracking.py, which train.py imports): here, so
# that tracking.py need not import train.py back.
def run_label(run: dict) -> str:
    """A run as Tune's trial table shows it and names its trial: ``K=64 seed=0``, then
    ``variant=wide`` and ``twin=1`` where the run has them."""
    label = f"K={run['K']} seed={run['seed']}"
    if run.get("variant", axes.BASE) != axes.BASE:
        label += f" variant={run['variant']}"
    return label + (f" twin={run['twin']}" if run.get("twin") else "")


def label_fields(label: str) -> dict[str, str]:
    """``run_label``'s text back as its fields (variant names are identifiers, so no value
    holds a space or an equals sign)."""
    return dict(kv.split("=", 1) for kv in label.split())


def ks_seeds(cfg) -> list[Unit]:
    """Every model checkpoint: the default axis first (a study without axes has only it), then
    the others."""
    return [Unit(k, s, axis=a) for a in axes.model_axes(cfg) for k in cfg.ks for s in cfg.seeds]


def metric_ks_seeds(cfg) -> list[Unit]:
    return [Unit(k, s, m, a) for m in cfg.knn.metrics for a in axes.model_axes(cfg) for k in cfg.ks for s in cfg.seeds]


def metric_units(cfg, metric: str) -> list[Unit]:
    return [Unit(k, s, metric, a) for a in axes.model_axes(cfg) for k in cfg.ks for s in cfg.seeds]


def json_stored(relpath: str) -> Callable[[Path, Unit], list]:
    """Fingerprints kept in a JSON file (for outputs that are not Parquet, e.g. figures)."""
    def read(study_dir, unit):
        p = Path(study_dir) / relpath
        try:
            return [json.loads(p.read_text())]
        except (FileNotFoundError, json.JSONDecodeError):
            return [None]
    return read
