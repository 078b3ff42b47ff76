"""Sampling: per-sample seeds, two independent sets per (K, seed), Ray Data sharding.

Every sample owns a ``torch.Generator`` seeded from (study seed, K, seed, set,
sample index): its initial noise and, for DDPM, every step's noise come from
it alone, so a sample's pixels do not depend on the batch it lands in or on how
Ray shards the work. ``sample_images`` is the plain function; ``SampleActor``
wraps it for ``Dataset.map_batches`` and loads each model once per worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import tables
from .raytools import pool_size, stream_groups

SETS = ("eval", "ref")


def sample_seed(study_seed: int, k: int, seed: int, set_name: str, i: int) -> int:
    state = np.random.SeedSequence([study_seed, k, seed, SETS.index(set_name), i]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def make_scheduler(gen_cfg, model_cfg):
    """The sampler: DDPM over every training step (the paper's generation) or DDIM with fewer."""
    from diffusers import DDIMScheduler, DDPMScheduler

    train = DDPMScheduler(num_train_timesteps=model_cfg.num_train_timesteps, prediction_type="epsilon")
    if gen_cfg.sampler == "ddpm":
        train.set_timesteps(model_cfg.num_train_timesteps)
        return train
    ddim = DDIMScheduler.from_config(train.config)
    ddim.set_timesteps(min(gen_cfg.steps, model_cfg.num_train_timesteps))
    return ddim


def sample_images(model, scheduler, seeds, shape, device=None, autocast_dtype=None) -> np.ndarray:
    """Denoise one image per seed; returns float32 (n, C, H, W) in [-1, 1]."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    device = torch.device(device or "cpu")
    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    x = randn_tensor((len(seeds), *shape), generator=gens, device=device, dtype=torch.float32)
    x = x * scheduler.init_noise_sigma
    use_autocast = autocast_dtype is not None and device.type == "cuda"
    with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=use_autocast):
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(x, t), t).sample.float()
            x = scheduler.step(eps, t, x, generator=gens).prev_sample
    return x.clamp(-1, 1).cpu().numpy().astype(np.float32)


def load_model(cfg, study_dir, k: int, seed: int, dataset=None):
    """The model to sample (K, seed) from: the trained EMA UNet, or the exact memorizer."""
    if cfg.model.type == "empirical":
        import torch

        from .data import load_dataset, training_set
        from .empirical import EmpiricalEpsilon
        from .model import build_train_scheduler

        _, images = training_set(dataset or load_dataset(cfg.data), k, cfg.study.seed)
        return EmpiricalEpsilon(torch.from_numpy(images), build_train_scheduler(cfg.model).alphas_cumprod)
    from .model import load_unet
    from .train import model_dir

    return load_unet(model_dir(study_dir, k, seed))


class SampleActor:
    """Ray Data actor: loads each (K, seed) model once, then samples batch after batch."""

    def __init__(self, cfg_dict: dict, study_dir: str):
        import torch

        from .config import from_dict
        from .data import load_dataset
        from .train import mixed_precision

        self.cfg = from_dict(cfg_dict)
        self.study_dir = study_dir
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dataset = load_dataset(self.cfg.data)
        self.shape = tuple(self.dataset.shape)
        mp = mixed_precision(self.cfg.train.mixed_precision, self.device == "cuda")
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)
        self.scheduler = make_scheduler(self.cfg.generate, self.cfg.model)
        self.models = {}

    def _model(self, k: int, seed: int):
        if (k, seed) not in self.models:
            self.models[(k, seed)] = load_model(self.cfg, self.study_dir, k, seed, self.dataset).to(self.device).eval()
        return self.models[(k, seed)]

    def __call__(self, batch: dict) -> dict:
        images = np.zeros((len(batch["K"]), int(np.prod(self.shape))), dtype=np.float32)
        groups = set(zip(batch["K"].tolist(), batch["seed"].tolist()))
        for k, seed in sorted(groups):
            rows = np.flatnonzero((batch["K"] == k) & (batch["seed"] == seed))
            x = sample_images(self._model(k, seed), self.scheduler, batch["sample_seed"][rows], self.shape,
                              self.device, self.autocast)
            images[rows] = x.reshape(len(rows), -1)
        return {**batch, "image": images}


def sample_plan(cfg, groups) -> dict[str, np.ndarray]:
    """Rows to sample: every (K, seed) in ``groups`` x both sets x n_samples."""
    # The set travels as an integer code: Ray Data's block concatenation mishandles numpy string columns.
    cols = {"K": [], "seed": [], "set_code": [], "sample_id": [], "sample_seed": []}
    for k, seed in groups:
        for code, set_name in enumerate(SETS):
            for i in range(cfg.generate.n_samples):
                cols["K"].append(k); cols["seed"].append(seed); cols["set_code"].append(code)
                cols["sample_id"].append(i)
                cols["sample_seed"].append(sample_seed(cfg.study.seed, k, seed, set_name, i))
    return {c: np.asarray(v) for c, v in cols.items()}


def part_name(k: int, seed: int) -> str:
    return f"K{k}-s{seed}"


def missing_groups(cfg, study_dir) -> list[tuple[int, int]]:
    return [(k, s) for k in cfg.ks for s in cfg.seeds
            if not tables.has_part(study_dir, "samples", part_name(k, s))]


def write_group(cfg, study_dir, cols: dict, shape) -> None:
    order = np.lexsort((cols["sample_id"], cols["set_code"]))
    cols = {c: np.asarray(v)[order] for c, v in cols.items()}
    n = len(order)
    c, h, w = shape
    table = tables.to_table("samples", {
        "K": cols["K"], "seed": cols["seed"], "set": np.asarray(SETS)[cols["set_code"]], "sample_id": cols["sample_id"],
        "sample_seed": cols["sample_seed"], "channels": np.full(n, c), "height": np.full(n, h),
        "width": np.full(n, w), "image": cols["image"],
    }, meta=tables.dumps_meta(study=cfg.study.name, config_hash=cfg.section_hash("study", "data", "model", "train",
                                                                                   "generate")))
    tables.write_part(study_dir, "samples", part_name(int(cols["K"][0]), int(cols["seed"][0])), table)


def run_generate(cfg, study_dir) -> None:
    """Sample every missing (K, seed) with Ray Data; each group's part is written as soon as it is whole."""
    import ray
    from ray.data import ActorPoolStrategy

    from .data import load_dataset

    groups = missing_groups(cfg, study_dir)
    if not groups:
        return
    shape = load_dataset(cfg.data).shape
    plan = sample_plan(cfg, groups)
    ds = ray.data.from_items([dict(zip(plan, vals)) for vals in zip(*(v.tolist() for v in plan.values()))])
    ds = ds.map_batches(
        SampleActor, fn_constructor_kwargs={"cfg_dict": cfg.to_dict(), "study_dir": str(Path(study_dir).resolve())},
        compute=ActorPoolStrategy(size=pool_size(
            cfg.generate.workers, cfg.generate.cpus_per_worker, cfg.generate.gpus_per_worker)), batch_size=cfg.generate.batch_size,
        num_cpus=cfg.generate.cpus_per_worker, num_gpus=cfg.generate.gpus_per_worker or None,
    )
    stream_groups(ds.iter_batches(batch_size=None, batch_format="numpy"), 2 * cfg.generate.n_samples,
                  lambda cols: write_group(cfg, study_dir, cols, shape))
