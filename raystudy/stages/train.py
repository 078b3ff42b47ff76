"""The train stage: Ray Tune over K x seed (x variant x twin), one trial per training run.

Tune decides where runs go and retries a failed trial (``FailureConfig``); the training is
``compute.train.train_one``, which resumes from its own state file in the study folder. So a
retried trial, or a re-run after the driver died, continues where the run stopped, and
the experiment's name depends only on what shapes the runs (the train stage's
fingerprint), never on resources or on which K are still missing.

A unit is one checkpoint (raystudy.axes): a run's final model, or one of its snapshots. A run
makes every missing checkpoint of its own in one pass; a snapshot added to a finished run is
made by the same seeded run again, stopped there (the final model is left as it is).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from .. import axes, progress, tables
from ..compute.train import CURVES_FILE, LOG_FILE, read_run
from ..errors import StudyError, TrainingFailed, one_line
from ..models import family, model_dir
from . import changed, label_fields, run_label


def run_dirname(label: str) -> str:
    """``K=64 seed=0`` as a folder name that any file system and object store takes: ``K64_seed0``."""
    return label.replace("=", "").replace(" ", "_")


def _trial(params, cfg_dict: dict, study_dir: str, metas: dict, runs: dict):
    """Tune function trainable for one run (K, seed, variant, twin). Its one Tune call is
    ``tune.report`` of the metrics at each of ``train_one``'s checkpoints; no Tune ``Checkpoint``
    is made or read: a retried trial resumes from the run's own state file in the study folder.
    ``metas`` maps each checkpoint's part name to the train stage's metadata, made by the driver;
    ``params["run"]`` is the run's label, and ``runs[label]`` the run, the snapshots it must make
    and whether its final model (the trial config holds only the label, which is what Tune's
    status table and the trackers show)."""
    from ray import tune

    from ..compute.train import train_one
    from ..config import from_dict
    from ..datasets import load_dataset
    from ..models import state_file
    from ..splits import kset

    cfg = from_dict(cfg_dict)
    run = runs[params["run"]]
    k, seed = int(run["K"]), int(run["seed"])
    axis = axes.Axis(run.get("variant", axes.BASE), int(run.get("twin", 0)))
    units = [axes.Unit(k, seed, axis=axes.Axis(axis.variant, axis.twin, s)) for s in run.get("snapshots", ())]
    final = run.get("final", True)
    units += [axes.Unit(k, seed, axis=axis)] if final else []
    final_dir, state = model_dir(study_dir, k, seed, axis), state_file(study_dir, k, seed, axis)
    meta = metas.get(axes.Unit(k, seed, axis=axis).part)

    def snaps():
        return {u.axis.images_seen: (model_dir(study_dir, k, seed, u.axis), metas[u.part])
                for u in units if not u.axis.final and read_run(model_dir(study_dir, k, seed, u.axis)) is None}

    @functools.cache
    def data():  # read once per trial, and only where this process trains
        dataset = load_dataset(cfg.data)
        from ..compute.losses import held_out_images

        return dataset.images(kset(cfg, dataset, axis, k)), held_out_images(cfg, dataset)

    def train(todo, state_path, stop_at):
        """One pass of the run: in this process, or on Ray Train workers (this trial then waits);
        either way ``train_one`` with the same arguments, so the same checkpoints."""
        kw = {"meta": meta, "snapshots": todo, "stop_at": stop_at, "twin": axis.twin}
        if cfg.train.workers_for(k) > 1:
            from .parallel import fit

            fit(cfg, study_dir, axis, k, seed, final_dir, state_path, kw)
            return
        # Reported at every log interval, not only at checkpoints (Tune needs no Checkpoint with a
        # report); timesteps_total is the x axis Tune's logger callbacks plot against. Tune's
        # status table shows the first four metrics of a report: the ones a person follows.
        report = lambda m: tune.report({k: m[k] for k in FOLLOWED} | m | {"timesteps_total": m["images_seen"]})  # noqa: E731
        images, held = data()
        train_one(axes.for_axis(cfg, axis), images, k, seed, final_dir, state_path, on_log=report, held_out=held,
                  **kw)

    todo = snaps()
    if final or todo:
        train(todo, state, None if final else max(todo))
    # A run resumed from a state past a snapshot it now has to make: the same seeded run again, stopped there.
    if missed := snaps():
        train(missed, None, max(missed))
    for u in units:
        record_finished(study_dir, u, metas[u.part])


# The metrics Tune's status table shows for each trial, in this order.
FOLLOWED = ("loss", "images_seen", "images_per_s", "wall_s")


def make_trainable(cfg, study_dir, metas: dict | None = None, runs: list[dict] = ()):
    """The Tune trainable with the resources one trial asks for (fractional GPUs pack small runs;
    a data-parallel run's workers book their own, ``parallel.trial_resources``)."""
    from ray import tune

    from .parallel import trial_resources

    trainable = tune.with_parameters(_trial, cfg_dict=cfg.to_dict(), study_dir=str(study_dir), metas=metas or {},
                                     runs={run_label(r): r for r in runs})
    if cfg.train.workers == 1:
        return tune.with_resources(trainable, trial_resources(cfg, 0))
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    return tune.with_resources(trainable, lambda p: resource_dict_to_pg_factory(
        trial_resources(cfg, int(label_fields(p["run"])["K"]))))


def trial_worker(stage, cfg) -> tuple[str, float, float]:
    """One training trial, or one worker of a data-parallel run (whose workers may sit on
    different nodes)."""
    tc = cfg.train
    if tc.workers > 1:
        return "training worker", tc.cpus_per_trial / tc.workers, tc.gpus_per_trial / tc.workers
    return "training trial", tc.cpus_per_trial, tc.gpus_per_trial


def tune_grid(stage, cfg, study_dir, todo) -> None:
    """Train every (K, seed) in ``todo`` with Ray Tune, one trial per run of the grid (Ray must be
    initialised)."""
    from ray import tune

    from .tracking import callbacks

    study_dir = Path(study_dir).resolve()
    storage = study_dir / "ray_results"
    name = "train-" + stage.meta(cfg, todo[0])["fingerprint"]
    runs = trial_runs(todo)
    trainable = make_trainable(cfg, study_dir, {stage.part(u): stage.meta(cfg, u) for u in todo}, runs)
    tuner = tune.Tuner(
        trainable,
        param_space={"run": tune.grid_search([run_label(r) for r in runs])},
        tune_config=tune.TuneConfig(trial_name_creator=lambda t: t.config["run"],
                                    trial_dirname_creator=lambda t: f"{run_dirname(t.config['run'])}_{t.trial_id}"),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), verbose=progress.tune_verbosity(),
            failure_config=tune.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=[*callbacks(cfg, study_dir, name), _runs_done(len(runs))],
        ),
    )
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    still = [u for u in todo if any(m is None for m in stage.stored_meta(study_dir, u))]
    if still:
        first = f": {type(errors[0]).__name__}: {one_line(errors[0], last=True)}" if errors else ""
        raise TrainingFailed(f"training did not finish for (K, seed) {still}{first}; logs under {storage / name}")


def _runs_done(total: int):
    """A Tune callback with the stage's own line at each finished run: ``[train] 2/6 runs, ...``."""
    from ray import tune

    class RunsDone(tune.Callback):
        def __init__(self):
            self.shown = progress.Progress("train", total, "runs", every_s=0)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.shown.update()

    return RunsDone()


def trial_runs(todo) -> list[dict]:
    """The Tune grid: one entry per run (K, seed, variant, twin) with the snapshots it has to make
    and whether it has to make its final model."""
    runs: dict = {}
    for u in todo:
        a, k, s = u.axis, u.K, u.seed
        r = runs.setdefault((a.variant, a.twin, k, s), {"K": k, "seed": s, "variant": a.variant, "twin": a.twin,
                                                        "snapshots": [], "final": False})
        if a.final:
            r["final"] = True
        else:
            r["snapshots"].append(a.images_seen)
    return list(runs.values())


def train_stored(study_dir, unit) -> list:
    """A final model's unit is its ``runs`` and ``train_log`` parts; a snapshot's its ``runs`` part.
    (Its ``loss_curves`` part is written with them, before ``runs``; a study trained before that
    table existed has none and is complete without it.)"""
    names = ("runs", "train_log") if unit.axis.final else ("runs",)
    return [tables.part_meta(study_dir, t, unit.part) for t in names]


def run_train(stage, cfg, study_dir, todo) -> None:
    """The train stage: the exact memorizer and the Gaussian denoiser need no training (their rows
    say so); finished models
    get their rows; the rest are trained with Ray Tune."""
    fam = family(cfg)
    if not fam.trains:
        for u in todo:
            rec = {"K": u.K, "seed": u.seed, "model": fam.name}  # trained nothing: tables.UNTRAINED
            write_run_parts(study_dir, stage.part(u), rec, [], stage.meta(cfg, u), u.axis)
        return
    left = [u for u in todo if not record_finished(study_dir, u, stage.meta(cfg, u))]
    if left:
        tune_grid(stage, cfg, study_dir, left)


def write_run_parts(study_dir, part: str, record: dict, log, meta: dict, axis=axes.DEFAULT,
                    curves: dict | None = None) -> None:
    """The train stage's table rows for one checkpoint: ``runs`` (one row) and, for a run's final
    model, ``train_log`` and ``loss_curves`` (``curves``: its ``CURVES_FILE``; no rows without)."""
    cols = tables.runs_rows([{**record, "variant": axis.variant, "twin": axis.twin}])
    log = np.asarray(log, dtype=np.float64).reshape(-1, 2)
    k, s = record["K"], record["seed"]
    steps = log[:, 0].astype(np.int64)
    # train_log first: `runs` is what says the unit is complete.
    if axis.final:
        n = len(log)
        tables.write_part(study_dir, "train_log", part, tables.to_table("train_log", {
            "K": np.full(n, k), "seed": np.full(n, s), "variant": np.full(n, axis.variant, dtype=object),
            "twin": np.full(n, axis.twin), "step": steps,
            "images_seen": steps * (cols["images_seen"][0] // max(1, cols["steps"][0])), "loss": log[:, 1]}, meta))
        tables.write_part(study_dir, "loss_curves", part, tables.to_table(
            "loss_curves", curve_rows(k, s, axis, curves), meta))
    tables.write_part(study_dir, "runs", part, tables.to_table("runs", cols, meta))


def record_finished(study_dir, unit, meta: dict) -> bool:
    """Write the table rows of a finished checkpoint (the trial that trained it, or a re-run after
    the driver died before they were written). Returns whether the unit is now complete."""
    axis = unit.axis
    d = model_dir(study_dir, unit.K, unit.seed, axis)
    rec = read_run(d)
    if rec is None:
        return False
    if rec.get("fingerprint") != meta["fingerprint"]:
        raise StudyError(f"{d} was trained with other settings ({changed(rec, json.loads(meta['depends']))}); "
                         f"use a new --study directory")
    if rec.get("params") is None:  # a model saved before runs had the column
        from ..models.unet import load_checkpoint

        rec["params"] = int(sum(p.numel() for p in load_checkpoint(d).parameters()))
    log = json.loads((d / LOG_FILE).read_text()) if (d / LOG_FILE).exists() else []
    curves = json.loads((d / CURVES_FILE).read_text()) if (d / CURVES_FILE).exists() else None
    write_run_parts(study_dir, unit.part, rec, log, meta, axis, curves)
    return True


def curve_rows(k: int, seed: int, axis, curves: dict | None) -> dict:
    """The ``loss_curves`` columns of one run from its ``CURVES_FILE`` record: a row per evaluation
    and noise level."""
    names = tables.SCHEMAS["loss_curves"].names
    if not curves or not curves.get("evals"):
        return {c: [] for c in names}
    ts = curves["timesteps"]
    rows = [(seen, lev, ts[lev], tr[lev], ho[lev]) for seen, tr, ho in curves["evals"] for lev in range(len(ts))]
    n = len(rows)
    return {"K": [k] * n, "seed": [seed] * n, "variant": [axis.variant] * n, "twin": [axis.twin] * n,
            "images_seen": [r[0] for r in rows], "level": [r[1] for r in rows], "timestep": [r[2] for r in rows],
            "train_loss": [float(np.mean(r[3])) for r in rows], "held_out_loss": [float(np.mean(r[4])) for r in rows],
            "n_train": [len(r[3]) for r in rows], "n_held_out": [len(r[4]) for r in rows],
            "train_losses": [r[3] for r in rows], "held_out_losses": [r[4] for r in rows]}
