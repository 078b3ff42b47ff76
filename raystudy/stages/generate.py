"""The generate stage: two independent sample sets per (K, seed), streamed shard by shard
through an elastic pool of Ray Data actors that sample with ``raystudy.compute.generate`` and write
their own parts (so samples never gather in the driver)."""

from __future__ import annotations

import numpy as np

from .. import axes, tables
from ..cluster import pool
from ..compute.generate import load_model, make_scheduler, sample_circle, sample_images
from ..models import family
from ..splits import SETS, kset, sample_seed
from .shards import stream, task_axis


class ModelActor:
    """Ray Data actor base: loads each (K, seed, axis) model once per actor and keeps it."""

    def __init__(self, cfg_dict: dict, study_dir: str):
        import torch

        from ..config import from_dict
        from ..datasets import load_dataset

        self.cfg = from_dict(cfg_dict)
        self.family = family(self.cfg)
        self.study_dir = study_dir
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dataset = load_dataset(self.cfg.data)
        self.models = {}

    def model(self, k: int, seed: int, axis=axes.DEFAULT):
        if (k, seed, axis) not in self.models:
            while len(self.models) >= 4:  # units come one after another: keep memory flat over many axes
                self.models.pop(next(iter(self.models)))
            m = load_model(self.cfg, self.study_dir, k, seed, self.dataset, axis)
            self.models[(k, seed, axis)] = m.to(self.device).eval() if hasattr(m, "to") else m
        return self.models[(k, seed, axis)]


class SampleActor(ModelActor):
    """Ray Data actor: samples shard after shard and writes each as its own part."""

    def __init__(self, cfg_dict: dict, study_dir: str):
        import torch

        from ..compute.train import mixed_precision

        super().__init__(cfg_dict, study_dir)
        mp = mixed_precision(self.cfg.train.mixed_precision, self.device == "cuda")
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)
        # One sampler per variant (a variant may train on another noise schedule); the circle's VE
        # score model is sampled by Euler-Maruyama, with no scheduler.
        self.schedulers = {} if self.family.ve else {
            v: make_scheduler(self.cfg.generate, axes.for_axis(self.cfg, axes.Axis(v)).model)
            for v in axes.variants(self.cfg)}

    def sample(self, k: int, seed: int, seeds, axis=axes.DEFAULT) -> np.ndarray:
        model = self.model(k, seed, axis)
        if self.family.ve:
            pts = self.dataset.get(kset(self.cfg, self.dataset, axis, k))
            return sample_circle(model, seeds, pts, axes.for_axis(self.cfg, axis).model, self.cfg.generate.steps)
        return sample_images(model, self.schedulers[axis.variant], seeds, self.dataset.shape, self.device,
                             self.autocast)

    def __call__(self, batch: dict, study_dir: str = "", metas: dict | None = None) -> dict:
        """Each row is one shard (K, seed, set, sample ids lo..hi): sample it in batches of
        ``generate.batch_size`` and write its part here, in the actor, so samples never travel
        to the driver. Returns one small row per shard written."""
        bs, written = self.cfg.generate.batch_size, []
        for k, seed, code, lo, hi, shard, unit, *ax in zip(*(batch[c].tolist() for c in (
                "K", "seed", "set_code", "lo", "hi", "shard", "base", "variant", "twin", "snap"))):
            set_name, axis = SETS[code], task_axis(*ax)
            ids = np.arange(lo, hi)
            # The same seeds on every axis: a twin, a variant and a snapshot start from the same noise.
            seeds = np.asarray([sample_seed(self.cfg.study.seed, k, seed, set_name, int(i)) for i in ids])
            n = len(ids)
            images = np.concatenate([self.sample(k, seed, seeds[j:j + bs], axis).reshape(len(seeds[j:j + bs]), -1)
                                     for j in range(0, len(seeds), bs)]).reshape(n, *self.dataset.shape)
            tables.write_part(study_dir or self.study_dir, "samples", f"{unit}-{set_name}-{shard:05d}", tables.to_table(
                "samples", tables.samples_rows(k, seed, set_name, ids, seeds, images, axes.columns(self.cfg, axis, n)),
                meta=metas[unit]))
            written.append(n)
        return {"K": batch["K"], "seed": batch["seed"], "rows": np.asarray(written)}


def model_worker(stage, cfg) -> tuple[str, float, float]:
    """An actor that holds a model (generate, basins, energy): ``generate.cpus_per_worker`` CPUs
    and ``generate.gpus_per_worker`` GPUs."""
    return f"{stage.name} worker", cfg.generate.cpus_per_worker, cfg.generate.gpus_per_worker


def check_models(stage, cfg, study_dir, todo, dataset) -> None:
    """A corrupt saved model is a one-line error here, not a remote traceback in an actor."""
    if not family(cfg).trains:  # a closed-form model has no checkpoint
        return
    from ..compute.train import read_run
    from ..models import model_dir
    from ..models.unet import check_checkpoint

    for u in todo:
        d = model_dir(study_dir, u.K, u.seed, u.axis)
        if read_run(d) is not None:
            check_checkpoint(d)


def run_generate(stage, cfg, study_dir, todo) -> None:
    """Sample every (K, seed) in ``todo``, both sets, streamed shard by shard (``shards.stream``)."""
    g = cfg.generate
    stream(stage, cfg, study_dir, todo, "samples", SETS, SampleActor, {"cfg_dict": cfg.to_dict()},
           pool(g.workers, g.cpus_per_worker, g.gpus_per_worker))
