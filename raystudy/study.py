"""A study is its stages, run in order; each does only what is missing or stale.

``STAGES`` lists them, each with the tables it reads and writes, the config keys its output
depends on (plus everything upstream's) and the stages it comes after; ``raystudy run --dry-run``
prints them for a config. Every unit also has an axis (raystudy.axes: variant x twin x snapshot).
``stages.Stage`` holds the one rule; this module lists the stages and runs them.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

from . import config as config_mod
from . import provenance, tables
from .axes import ALL
from .errors import ConfigError, DataError, StudyError, one_line
from .models import family
from .stages import Stage, json_stored, ks_seeds, metric_ks_seeds, metric_units
from .stages.basins import run_basins
from .stages.classify import run_classify
from .stages.energy import run_energy
from .stages.generate import check_models, model_worker, run_generate
from .stages.knn import check_weights, knn_worker, run_knn
from .stages.shards import sharded_stored
from .stages.train import run_train, train_stored, trial_worker
from .stages.twins import run_twins, twin_units

_TRAIN_KEYS = ("study.seed", "data.name", "data.image_size", "data.grayscale", "data.limit", "data.size", "model",
               "train.images", "train.batch_size", "train.lr", "train.weight_decay", "train.ema_decay",
               "train.grad_clip", "train.lr_schedule", "train.mixed_precision")

TRAIN = Stage("train", reads=(), writes=("runs", "train_log", "loss_curves"), depends=_TRAIN_KEYS,
              depends_when_set=("train.stop_on_gap",), after=(),
              units=ks_seeds, run=run_train, on_stale="refuse", uses_ray=lambda cfg: family(cfg).trains,
              stored=train_stored, worker=trial_worker)
GENERATE = Stage("generate", reads=("runs",), writes=("samples",),
                 depends=("generate.n_samples", "generate.sampler", "generate.steps"), after=(TRAIN,),
                 units=ks_seeds, run=run_generate, check=check_models, stored=sharded_stored("samples"),
                 worker=model_worker)
KNN = Stage("knn", reads=("samples",), writes=("neighbors",), depends=("knn.k",), after=(GENERATE,),
            units=metric_ks_seeds, run=run_knn, check=check_weights, stored=sharded_stored("neighbors"),
            worker=knn_worker)
CLASSIFY = Stage("classify", reads=("neighbors", "samples"), writes=("labels", "null_fractions", "fractions"),
                 depends=("classify.delta_m.{metric}", "classify.delta_s.{metric}", "data.held_out"), after=(KNN,),
                 units=metric_ks_seeds, run=run_classify, uses_ray=lambda cfg: False)

# The twin model's K-set is cut before the held-out tail: data.held_out shapes it. After generate, not
# knn: the nearest train_dist it reads from the neighbors table is the same for every knn.k.
TWINS = Stage("twins", reads=("neighbors", "samples"), writes=("twins",), depends=("data.held_out",), after=(GENERATE,),
              units=twin_units, run=run_twins, enabled=lambda cfg: cfg.twins,
              uses_ray=lambda cfg: False, check=check_weights)


def _basin_units(cfg):
    return metric_units(cfg, cfg.basins.metric)


BASINS = Stage("basins", reads=("labels", "samples"), writes=("basins", "basin_trials", "basin_rates"),
               depends=tuple(f"basins.{k}" for k in ("metric", "per_label", "rank", "train", "held_out", "trials", "p",
                                                     "delta", "stride", "ddim_steps")),
               after=(CLASSIFY,), units=_basin_units, run=run_basins, enabled=lambda cfg: cfg.basins.enabled,
               worker=model_worker)
ENERGY = Stage("energy", reads=("labels", "samples"), writes=("energy",),
               depends=("basins.metric", "basins.rank",
                        *(f"energy.{k}" for k in ("t", "per_label", "train", "held_out", "train_refs",
                                                  "held_out_refs", "points", "rule"))),
               after=(CLASSIFY,), units=_basin_units, run=run_energy, enabled=lambda cfg: cfg.energy.enabled,
               worker=model_worker)


def _figures(stage, cfg, study_dir, todo) -> None:
    from .stages.figures import draw_study

    draw_study(stage, cfg, study_dir)


# Every figure the study has (raystudy.analysis.plots.draw_all): the phase diagram over its
# checkpoints, the twins, basins and energy where enabled, so their settings are the figures' too.
FIGURES = Stage("figures", reads=("runs", "train_log", "loss_curves", "labels", "fractions", "null_fractions",
                                  "neighbors", "samples", "twins", "basins", "energy"), writes=(),
                depends=("ks", "seeds", "knn.metrics", "variants", "train.snapshots", "twins", "basins.enabled",
                         "energy.enabled"),
                after=(CLASSIFY, TWINS, BASINS, ENERGY), units=lambda cfg: [ALL],
                run=_figures, uses_ray=lambda cfg: False, stored=json_stored("figures/made-with.json"))

STAGES = {s.name: s for s in (TRAIN, GENERATE, KNN, CLASSIFY, TWINS, BASINS, ENERGY, FIGURES)}


log = logging.getLogger("raystudy")


def check_only(only: str | None) -> None:
    """``--only STAGE`` names a stage (the one check, for ``run`` and ``submit``)."""
    if only is not None and only not in STAGES:
        raise ConfigError(f"--only: unknown stage {only!r}; stages: {', '.join(STAGES)}")


def study_folder(study_dir) -> Path:
    """The study folder, resolved; a path that exists but is no folder is one line."""
    p = Path(study_dir).resolve()
    if p.exists() and not p.is_dir():
        raise StudyError(f"{study_dir} is a file, not a study folder; name a folder (a new one, or a study's)")
    return p


# The folders a run creates inside its study folder (files go beside them, at its top).
SUBFOLDERS = ("tables", "models", "figures", "ray_results")


def check_writable(folder, subfolders=(), option: str = "--study") -> None:
    """Raise StudyError unless ``folder`` and its ``subfolders`` can be created and written, without
    creating anything: a file where one of them must be, or a folder this user cannot write, is one
    line naming the path, before any work (a run would otherwise fail after Ray has started)."""
    folder = Path(folder)
    fix = f"move it away or name another folder ({option})"
    for d in (folder, *(folder / s for s in subfolders)):
        if d.exists() and not d.is_dir():
            raise StudyError(f"cannot write to {folder}: {d} is a file where a folder must be; {fix}")
    nearest = folder
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        raise StudyError(f"cannot write to {folder}: {nearest} is a file where a folder must be; {fix}")
    for d in (nearest, *(folder / s for s in subfolders if (folder / s).is_dir())):
        try:
            with tempfile.TemporaryFile(dir=d):
                pass
        except OSError as e:
            raise StudyError(f"cannot write to {folder}: {d}: {one_line(e)}; name a folder you can write "
                             f"({option})") from None


def validate_against_data(cfg, dataset) -> None:
    n, r = dataset.n_train, cfg.data.held_out
    too_big = [k for k in cfg.ks if k > n]
    if too_big:
        raise DataError(f"ks: K={too_big[0]} is larger than the dataset ({cfg.data.name} has {n} training images)")
    if dataset.n_test:
        # The dataset's own test split is the held-out split: K may use every training image.
        if r > dataset.n_test:
            raise DataError(f"data.held_out={r} is more than {cfg.data.name}'s test split ({dataset.n_test} images)")
    elif r >= n:
        raise DataError(f"data.held_out={r} leaves no training images ({cfg.data.name} has {n} images)")
    too_big = [k for k in cfg.ks if k > n - (0 if dataset.n_test else r)]
    if too_big:
        raise DataError(f"ks: K={too_big[0]} is larger than what {cfg.data.name} leaves beside its held-out split "
                        f"({n} - data.held_out {r} = {n - r}); lower K or data.held_out")
    room = n - (0 if dataset.n_test else r)
    if cfg.twins and 2 * max(cfg.ks) > room:
        raise DataError(f"twins: K={max(cfg.ks)} needs 2K = {2 * max(cfg.ks)} images for two disjoint K-sets; "
                        f"{cfg.data.name} leaves {room} beside its held-out split ({n} - data.held_out {r}): "
                        f"lower K or data.held_out, or set twins: false")
    for key, want in (("basins.held_out", cfg.basins.held_out if cfg.basins.enabled else 0),
                      ("energy.held_out", cfg.energy.held_out if cfg.energy.enabled else 0),
                      ("energy.held_out_refs", cfg.energy.held_out_refs if cfg.energy.enabled else 0)):
        if want > r:
            raise DataError(f"{key}={want} is more than the held-out split (data.held_out={r})")


def plan(cfg, study_dir) -> list[tuple[Stage, list]]:
    """Every enabled stage with what it has to do now (missing or stale units)."""
    return [(st, st.missing(cfg, study_dir)) for st in STAGES.values() if st.enabled(cfg)]


def plan_lines(cfg, study_dir) -> list[str]:
    """The --dry-run report: per stage, what it reads and writes and what is missing or stale, and why."""
    lines = []
    for st, todo in plan(cfg, study_dir):
        n = len(st.units(cfg))
        miss = [t for t in todo if t.why == "missing"]
        stale = [t for t in todo if t.why != "missing"]
        head = (f"{st.name}: reads {', '.join(st.reads) or '-'}; writes {', '.join(st.writes) or 'files'}; "
                f"{len(miss)} of {n} missing, {len(stale)} stale")
        if stale:
            head += f" ({'refused' if st.on_stale == 'refuse' else 'recomputed'}): " + \
                "; ".join(f"{t.unit} {t.why}" for t in stale[:4]) + (" ..." if len(stale) > 4 else "")
        lines.append(head)
    return lines


def refuse_stale(cfg, study_dir, todo_by_stage) -> None:
    for st, todo in todo_by_stage:
        stale = [t for t in todo if t.why != "missing"]
        if stale and st.on_stale == "refuse":
            raise StudyError(f"{study_dir} holds {st.name} output made with other settings "
                             f"({stale[0].unit} {stale[0].why}); use a new --study directory")


def _fractions(study_dir):
    """The main checkpoint's fractions rows (the first variant's final model, twin 0: the other
    axes are the phase diagram's)."""
    if not (study_folder(study_dir) / "config.yaml").exists():
        raise StudyError(f"{study_dir} holds no study (no config.yaml)")
    from .analysis.load import read_config
    from .axes import main_rows

    return main_rows(tables.read_pandas(study_dir, "fractions"), read_config(study_dir))


SUMMARY_COLUMNS = ("metric", "K", "n", "memorized", "mem_lo", "mem_hi", "spurious", "generalized", "ratio_memorized")


def fractions_summary(study_dir, df=None):
    """Per (metric, K): the fractions (mean over seeds), samples ``n`` (summed over seeds) and the
    memorized fraction's 95% interval (``mem_lo``, ``mem_hi``): the table ``raystudy show`` prints."""
    import pandas as pd

    from .analysis.fractions import interval_curves

    df = _fractions(study_dir) if df is None else df
    if df.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    g = df.groupby(["metric", "K"])[["n", "memorized", "spurious", "generalized", "ratio_memorized"]].mean()
    g["n"] = df.groupby(["metric", "K"])["n"].sum()
    ic = interval_curves(df).set_index(["metric", "K"])
    g.insert(2, "mem_lo", ic["memorized_lo"])
    g.insert(3, "mem_hi", ic["memorized_hi"])
    return g.reset_index()[list(SUMMARY_COLUMNS)]


def fractions_text(study_dir) -> str:
    """The fractions per K (mean over seeds, the memorized fraction's 95% interval), then where
    memorized crosses 1/2, EMM and the spurious peak, with intervals (raystudy.analysis.summaries),
    then where each run's held-out gap opened (raystudy.analysis.phase.onset_lines)."""
    from .analysis.phase import onset_lines
    from .analysis.summaries import describe, transition_summary

    df = _fractions(study_dir)
    if df.empty:
        lines = ["(no fractions yet: run the study)"]
    else:
        g = fractions_summary(study_dir, df).set_index(["metric", "K"])
        lines = [g.to_string(float_format=lambda v: f"{v:.3f}"), "(mem_lo, mem_hi: 95% interval of memorized per K)"]
        for _, r in transition_summary(fractions=df).iterrows():
            lines.append(f"{r['metric']}: {describe(r)}")
    return "\n".join(lines + onset_lines(study_dir))


def fractions_records(study_dir, fmt: str) -> str:
    """:func:`fractions_summary` as CSV (``fmt="csv"``, a header line) or JSON records (``"json"``,
    a list of objects; NaN as null), at full precision, for scripts."""
    import math

    g = fractions_summary(study_dir)
    if fmt == "csv":
        return g.to_csv(index=False).rstrip("\n")
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
             for k, v in ((k, v.item() if hasattr(v, "item") else v) for k, v in r.items())}
            for r in g.to_dict(orient="records")]
    return json.dumps(rows, indent=1)


def _record_time(study_dir: Path, name: str, wall_s: float, units: int) -> None:
    path = study_dir / "stages.json"
    try:
        times = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        times = {}
    times[name] = {"wall_s": round(wall_s, 2), "units": units, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tables.write_text(path, json.dumps(times, indent=1))


def run(cfg, study_dir, dry_run: bool = False, echo=None, only: str | None = None) -> Path:
    """Run every stage that is not complete; returns the study directory.

    Every check that can fail (K vs the dataset, settings that would mix two models,
    corrupt checkpoints, absent LPIPS weights, a cluster too small for one worker) runs
    before the study folder is touched. Progress goes to ``echo`` (default: the ``raystudy``
    logger); ``dry_run`` prints its plan (the command's output) on stdout, the resolved config
    as a debug message, and raises what the run would refuse (stale training output)."""
    from .datasets import load_dataset

    say = echo or print  # the dry run's report is the command's output, whatever the log level
    echo = echo or log.info
    tables.use_system_allocator()
    study_dir = study_folder(study_dir)
    check_writable(study_dir, SUBFOLDERS)
    dataset = load_dataset(cfg.data)
    validate_against_data(cfg, dataset)
    todo = [(st, t) for st, t in plan(cfg, study_dir) if only in (None, st.name)]
    if dry_run:
        for line in plan_lines(cfg, study_dir):
            say(f"would run {line}")
        log.debug("resolved config:\n%s", cfg.to_yaml().rstrip())
        # A pre-flight check: what the run would refuse fails the dry run too (exit 2).
        refuse_stale(cfg, study_dir, todo)
        return study_dir
    refuse_stale(cfg, study_dir, todo)
    for st, t in todo:
        if t:
            st.check_units(cfg, study_dir, [x.unit for x in t], dataset)
    del dataset  # each stage loads what it reads: the driver holds no images between stages
    ray_stages = [st for st, t in todo if t and st.uses_ray(cfg)]
    if ray_stages:
        from .cluster import check_fits, check_shared_storage, cluster_resources, ensure_ray

        ensure_ray(cfg)
        log.debug("Ray cluster resources: %s", cluster_resources())
        for st in ray_stages:
            check_fits(*st.resources(cfg), wait_s=cfg.ray.scale_up_wait_s)
        check_shared_storage(study_dir)
    config_mod.save(cfg, study_dir)
    provenance.record(study_dir)

    t_all = time.time()
    for st, t in todo:
        if not t:
            echo(f"[{st.name}] complete, skipped")
            continue
        t0 = time.time()
        why = "stale" if any(x.why != "missing" for x in t) else "missing"
        echo(f"[{st.name}] {len(t)} to do ({why})")
        log.debug("[%s] units: %s", st.name, "; ".join(f"{x.unit} {x.why}" for x in t))
        st.run_units(cfg, study_dir, [x.unit for x in t])
        _record_time(study_dir, st.name, time.time() - t0, len(t))
        echo(f"[{st.name}] done in {time.time() - t0:.1f} s")
    echo(f"fractions per K (mean over seeds):\n{fractions_text(study_dir)}")
    echo(f"study {study_dir} finished in {time.time() - t_all:.1f} s; tables under {study_dir / 'tables'}")
    return study_dir

