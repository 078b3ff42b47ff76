"""One training run on several workers: Ray Train's ``TorchTrainer`` launched from inside the
run's Tune trial (``train.workers`` > 1, for K >= ``train.workers_min_k``).

Why Ray Train and not Accelerate's own launcher: Ray already places every process of the study,
so the workers are Ray actors in a placement group Ray Train reserves (``ScalingConfig``), on any
node, with the process group (gloo on CPU, NCCL on GPU) set up by Ray; Accelerate, which the
one-process path already uses, then finds that process group and wraps the network in DDP
(``Accelerator.prepare``). ``accelerate launch`` would start its own processes outside Ray's
scheduling, on one node. The training itself is ``train.train_one`` on every worker: it resumes
from the same state file, draws the same global batches (each worker keeps its share) and rank 0
saves the same model folder (so a run could resume with another number of workers; untested).

The Tune trial of a data-parallel run holds only ``DRIVER_CPU`` (it waits on the Train
controller); the workers' resources are the Train run's placement group, each worker
``cpus_per_trial / workers`` and ``gpus_per_trial / workers``. Tune does not count the workers'
resources when it starts trials: a trial whose workers do not fit yet waits in Ray Train for its
placement group, and Ray reserves a placement group whole, so trials queue rather than deadlock.
"""

from __future__ import annotations

import time
from pathlib import Path

# What the Tune trial of a data-parallel run asks for itself: it only waits on the Train run.
DRIVER_CPU = 0.05


def trial_resources(cfg, k: int) -> dict:
    """What the Tune trial of run K books: the whole trial (one process), one worker's share
    (small K of a data-parallel sweep), or only the driver (the workers book their own)."""
    tc = cfg.train
    if tc.workers == 1:
        return {"cpu": tc.cpus_per_trial, "gpu": tc.gpus_per_trial}
    if tc.workers_for(k) == 1:
        return {"cpu": tc.cpus_per_trial / tc.workers, "gpu": tc.gpus_per_trial / tc.workers}
    return {"cpu": DRIVER_CPU, "gpu": 0.0}


def fit(cfg, study_dir, unit: tuple[int, int], meta: dict) -> None:
    """Train run ``unit`` = (K, seed) on ``cfg.train.workers`` Ray Train workers, from inside its
    Tune trial; their metrics reach the trial's Tune loggers through ``TuneReportCallback``. A
    failure fails the trial: Tune's retry (``train.max_failures``) resumes from the state file."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    tc = cfg.train
    n = tc.workers_for(unit[0])
    gpus = tc.gpus_per_trial / n
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"cfg": cfg.to_dict(), "study_dir": str(study_dir), "unit": list(unit), "meta": meta},
        scaling_config=ScalingConfig(num_workers=n, use_gpu=gpus > 0,
                                     resources_per_worker={"CPU": tc.cpus_per_trial / n, "GPU": gpus}),
        run_config=RunConfig(
            # A fresh name per attempt: the run's state is the state file, not a Train checkpoint.
            name=f"dp-K{unit[0]}-s{unit[1]}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(Path(study_dir) / "ray_results"),
            failure_config=FailureConfig(max_failures=0),
            callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _worker(config: dict) -> None:
    """One Ray Train worker: ``train_one`` on its share of every batch (Accelerate reads the
    process group Ray Train set up). ``ray.train.report`` is a barrier across the workers,
    and every worker reports at the same steps."""
    import ray.train

    from ..config import from_dict
    from ..datasets import load_dataset, training_images
    from ..train import model_dir, state_file, train_one

    cfg = from_dict(config["cfg"])
    study_dir, (k, seed) = config["study_dir"], config["unit"]
    images = training_images(load_dataset(cfg.data), k, cfg.study.seed)
    train_one(cfg, images, k, seed, model_dir(study_dir, k, seed), state_file(study_dir, k, seed),
              meta=config["meta"], on_log=lambda m: ray.train.report({**m, "timesteps_total": m["images_seen"]}))
