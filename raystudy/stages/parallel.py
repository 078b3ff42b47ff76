"""One training run on several workers: Ray Train's ``TorchTrainer`` launched from inside the
run's Tune trial (``train.workers`` > 1, for K >= ``train.workers_min_k``).

Why Ray Train and not Accelerate's own launcher: Ray already places every process of the study,
so the workers are Ray actors in a placement group Ray Train reserves (``ScalingConfig``), on any
node, with the process group (gloo on CPU, NCCL on GPU) set up by Ray; Accelerate, which the
one-process path already uses, then finds that process group and wraps the network in DDP
(``Accelerator.prepare``). ``accelerate launch`` would start its own processes outside Ray's
scheduling, on one node. The training itself is ``compute.train.train_one`` on every worker: it resumes
from the same state file, draws the same global batches (each worker keeps its share) and rank 0
saves the same model folder (so a run could resume with another number of workers; untested).

The Tune trial of a data-parallel run holds only ``DRIVER_CPU`` (it waits on the Train
controller); the workers' resources are the Train run's placement group, each worker
``cpus_per_trial / workers`` and ``gpus_per_trial / workers``. Tune does not count the workers'
resources when it starts trials: a trial whose workers do not fit yet waits in Ray Train for its
placement group, and Ray reserves a placement group whole, so trials queue rather than deadlock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# What the Tune trial of a data-parallel run asks for itself: it only waits on the Train run.
DRIVER_CPU = 0.05
# How often Ray Train's controller looks at the workers (Ray's default: every 2 s). A worker's
# ``ray.train.report`` blocks until the controller has taken its previous report, so a run
# reporting at each of its log intervals (up to 200) would wait up to that long at every one
# of them. Ray Train propagates this variable from the trial's process to its controller; a
# value set in the environment wins.
HEALTH_CHECK_INTERVAL_S = "0.1"


def trial_resources(cfg, k: int) -> dict:
    """What the Tune trial of run K books: the whole trial (one process), one worker's share
    (small K of a data-parallel sweep), or only the driver (the workers book their own)."""
    tc = cfg.train
    if tc.workers == 1:
        return {"cpu": tc.cpus_per_trial, "gpu": tc.gpus_per_trial}
    if tc.workers_for(k) == 1:
        return {"cpu": tc.cpus_per_trial / tc.workers, "gpu": tc.gpus_per_trial / tc.workers}
    return {"cpu": DRIVER_CPU, "gpu": 0.0}


def fit(cfg, study_dir, axis, k: int, seed: int, final_dir, state_path, kw: dict) -> None:
    """Train checkpoint ``axis`` of run (K, seed) on ``cfg.train.workers`` Ray Train workers, from
    inside its Tune trial: every worker calls ``train_one(..., **kw)`` (the trial's snapshots,
    stop and twin, decided once here so that every rank runs the same steps); their metrics reach
    the trial's Tune loggers through ``TuneReportCallback``. A failure fails the trial: Tune's
    retry (``train.max_failures``) resumes from the state file."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from .. import axes

    tc = cfg.train
    n = tc.workers_for(k)
    gpus = tc.gpus_per_trial / n
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    trainer = TorchTrainer(
        _train_loop_per_worker,
        train_loop_config={"cfg": cfg.to_dict(), "axis": axis, "k": k, "seed": seed, "final_dir": str(final_dir),
                           "state_path": str(state_path) if state_path else None, "kw": kw},
        scaling_config=ScalingConfig(num_workers=n, use_gpu=gpus > 0,
                                     resources_per_worker={"CPU": tc.cpus_per_trial / n, "GPU": gpus}),
        run_config=RunConfig(
            # A fresh name per attempt: the run's state is the state file, not a Train checkpoint.
            name=f"dp-{axes.Unit(k, seed, axis=axis).part}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(Path(study_dir) / "ray_results"),
            failure_config=FailureConfig(max_failures=0),
            callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _train_loop_per_worker(config: dict) -> None:
    """One Ray Train worker: ``train_one`` on its share of every batch (Accelerate reads the
    process group Ray Train set up). ``ray.train.report`` is a barrier across the workers,
    and every worker reports at the same steps."""
    import ray.train

    from .. import axes
    from ..compute.losses import held_out_images
    from ..compute.train import train_one
    from ..config import from_dict
    from ..datasets import load_dataset
    from ..splits import kset

    cfg, axis, k = from_dict(config["cfg"]), config["axis"], config["k"]
    dataset = load_dataset(cfg.data)
    images = dataset.images(kset(cfg, dataset, axis, k))
    train_one(axes.for_axis(cfg, axis), images, k, config["seed"], config["final_dir"], config["state_path"],
              on_log=lambda m: ray.train.report({**m, "timesteps_total": m["images_seen"]}),
              held_out=held_out_images(cfg, dataset), **config["kw"])
