"""Ray Tune over K x seed: one trial per training run, resumable.

Tune only decides where runs go and keeps their checkpoints; the training
itself is ``train.train_one``. Each trial reports a ``ray.tune.Checkpoint``
every ``train.checkpoint_every`` images, so a failed trial restarts from its
last checkpoint (``FailureConfig``) and an interrupted study restores the Tune
experiment (``Tuner.restore``) instead of starting over.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .train import model_dir, read_run

log = logging.getLogger(__name__)


def missing_runs(cfg, study_dir) -> list[tuple[int, int]]:
    return [(k, s) for k in cfg.ks for s in cfg.seeds if read_run(model_dir(study_dir, k, s)) is None]


def _trial(params, cfg_dict: dict, study_dir: str):
    """Tune function trainable for one (K, seed): only ray.tune.report/get_checkpoint/Checkpoint here."""
    from ray import tune

    from .config import from_dict
    from .data import load_dataset, training_images
    from .train import train_one

    cfg = from_dict(cfg_dict)
    k, seed = int(params["run"]["K"]), int(params["run"]["seed"])
    final = model_dir(study_dir, k, seed)
    done = read_run(final)
    if done is not None:
        tune.report({k_: done[k_] for k_ in ("steps", "images_seen", "final_loss", "wall_s")})
        return
    images = training_images(load_dataset(cfg.data), k, cfg.study.seed)

    def on_checkpoint(state_dir: str, metrics: dict):
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(state_dir))

    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as resume_dir:
            train_one(cfg, images, k, seed, final, resume_dir=resume_dir, on_checkpoint=on_checkpoint)
    else:
        train_one(cfg, images, k, seed, final, on_checkpoint=on_checkpoint)


def run_sweep(cfg, study_dir) -> None:
    """Train every missing (K, seed) with Ray Tune (Ray must be initialised)."""
    from ray import tune

    study_dir = Path(study_dir).resolve()
    if not missing_runs(cfg, study_dir):
        return
    storage = study_dir / "ray_results"
    # The experiment is named by everything that shapes the runs, so a re-run with the
    # same config restores it, and a changed config never resumes a stale one.
    name = "train-" + cfg.section_hash("study", "data", "model", "train") + "-" + \
        _grid_hash(cfg.ks, cfg.seeds)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, cfg_dict=cfg.to_dict(), study_dir=str(study_dir)),
        {"cpu": cfg.train.cpus_per_trial, "gpu": cfg.train.gpus_per_trial},
    )
    path = storage / name
    if tune.Tuner.can_restore(str(path)):
        log.info("restoring Tune experiment %s", path)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        grid = [{"K": k, "seed": s} for k in cfg.ks for s in cfg.seeds]
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search(grid)},
            run_config=tune.RunConfig(
                name=name, storage_path=str(storage), verbose=1,
                failure_config=tune.FailureConfig(max_failures=cfg.train.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    still = missing_runs(cfg, study_dir)
    if still:
        first = f": {type(errors[0]).__name__}: {str(errors[0]).splitlines()[-1][:200]}" if errors else ""
        raise RuntimeError(f"training did not finish for (K, seed) {still}{first}; "
                           f"logs under {path}")


def _grid_hash(ks, seeds) -> str:
    import hashlib

    return hashlib.sha256(repr((tuple(ks), tuple(seeds))).encode()).hexdigest()[:8]
