"""The train stage: Ray Tune over K x seed, one trial per training run.

Tune decides where runs go and retries a failed trial (``FailureConfig``); the training is
``train.train_one``, which resumes from its own state file in the study folder. So a
retried trial, or a re-run after the driver died, continues where the run stopped, and
the experiment's name depends only on what shapes the runs (the train stage's
fingerprint), never on resources or on which K are still missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import tables
from ..errors import StudyError, TrainingFailed, one_line
from ..train import LOG_FILE, model_dir, read_run
from . import changed, part_name


def _trial(params, cfg_dict: dict, study_dir: str, metas: dict):
    """Tune function trainable for one (K, seed). Its one Tune call is ``tune.report`` of the
    metrics at each of ``train_one``'s checkpoints; no Tune ``Checkpoint`` is made or read: a
    retried trial resumes from the run's own state file in the study folder. ``metas`` maps
    each run's part name to the train stage's metadata, made by the driver."""
    from ray import tune

    from ..config import from_dict
    from ..datasets import load_dataset, training_images
    from ..train import state_file, train_one

    cfg = from_dict(cfg_dict)
    unit = (int(params["run"]["K"]), int(params["run"]["seed"]))
    meta = metas[part_name(unit)]
    if cfg.train.workers_for(unit[0]) > 1:
        from .parallel import fit

        fit(cfg, study_dir, unit, meta)  # Ray Train workers run train_one; this trial waits
        record_finished(study_dir, unit, meta)
        return
    images = training_images(load_dataset(cfg.data), unit[0], cfg.study.seed)
    # Reported at every log interval, not only at checkpoints (Tune needs no Checkpoint with a
    # report); timesteps_total is the x axis Tune's logger callbacks plot against.
    train_one(cfg, images, *unit, model_dir(study_dir, *unit), state_file(study_dir, *unit), meta=meta,
              on_log=lambda m: tune.report({**m, "timesteps_total": m["images_seen"]}))
    record_finished(study_dir, unit, meta)


def make_trainable(cfg, study_dir, metas: dict | None = None):
    """The Tune trainable with the resources one trial asks for (fractional GPUs pack small runs;
    a data-parallel run's workers book their own, ``parallel.trial_resources``)."""
    from ray import tune

    from .parallel import trial_resources

    trainable = tune.with_parameters(_trial, cfg_dict=cfg.to_dict(), study_dir=str(study_dir), metas=metas or {})
    if cfg.train.workers == 1:
        return tune.with_resources(trainable, trial_resources(cfg, 0))
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    return tune.with_resources(trainable, lambda p: resource_dict_to_pg_factory(
        trial_resources(cfg, int(p["run"]["K"]))))


def run_sweep(stage, cfg, study_dir, todo) -> None:
    """Train every (K, seed) in ``todo`` with Ray Tune (Ray must be initialised)."""
    from ray import tune

    from .tracking import callbacks

    study_dir = Path(study_dir).resolve()
    storage = study_dir / "ray_results"
    name = "train-" + stage.meta(cfg, todo[0])["fingerprint"]
    trainable = make_trainable(cfg, study_dir, {stage.part(u): stage.meta(cfg, u) for u in todo})
    tuner = tune.Tuner(
        trainable,
        param_space={"run": tune.grid_search([{"K": k, "seed": s} for k, s in todo])},
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), verbose=1,
            failure_config=tune.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=callbacks(cfg, study_dir, name),
        ),
    )
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    still = [u for u in todo if any(m is None for m in stage.stored_meta(study_dir, u))]
    if still:
        first = f": {type(errors[0]).__name__}: {one_line(errors[0], last=True)}" if errors else ""
        raise TrainingFailed(f"training did not finish for (K, seed) {still}{first}; logs under {storage / name}")


def run_train(stage, cfg, study_dir, todo) -> None:
    """The train stage: the exact memorizer needs no training (its rows say so); finished models
    get their rows; the rest are trained with Ray Tune."""
    if cfg.model.type == "empirical":
        for k, s in todo:
            rec = {"K": k, "seed": s, "model": "empirical", "steps": 0, "images_seen": 0,
                   "final_loss": float("nan"), "checkpoint": "", "wall_s": 0.0}
            write_run_parts(study_dir, stage.part((k, s)), rec, [], stage.meta(cfg, (k, s)))
        return
    left = [u for u in todo if not record_finished(study_dir, u, stage.meta(cfg, u))]
    if left:
        run_sweep(stage, cfg, study_dir, left)


def write_run_parts(study_dir, part: str, record: dict, log, meta: dict) -> None:
    """The train stage's table rows for one run: ``runs`` (one row) and ``train_log``."""
    cols = {c: [record[c]] for c in tables.SCHEMAS["runs"].names}
    log = np.asarray(log, dtype=np.float64).reshape(-1, 2)
    k, s = record["K"], record["seed"]
    steps = log[:, 0].astype(np.int64)
    # train_log first: `runs` is what says the unit is complete.
    tables.write_part(study_dir, "train_log", part, tables.to_table("train_log", {
        "K": np.full(len(log), k), "seed": np.full(len(log), s), "step": steps,
        "images_seen": steps * (record["images_seen"] // max(1, record["steps"])), "loss": log[:, 1]}, meta))
    tables.write_part(study_dir, "runs", part, tables.to_table("runs", cols, meta))


def record_finished(study_dir, unit, meta: dict) -> bool:
    """Write the table rows of a finished model (the trial that trained it, or a re-run after
    the driver died before they were written). Returns whether the unit is now complete."""
    d = model_dir(study_dir, *unit)
    rec = read_run(d)
    if rec is None:
        return False
    if rec.get("fingerprint") != meta["fingerprint"]:
        raise StudyError(f"{d} was trained with other settings ({changed(rec, json.loads(meta['depends']))}); "
                         f"use a new --study directory")
    log = json.loads((d / LOG_FILE).read_text()) if (d / LOG_FILE).exists() else []
    write_run_parts(study_dir, part_name(unit), rec, log, meta)
    return True
