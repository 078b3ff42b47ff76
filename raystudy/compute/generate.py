"""Sampling a model: the sampler, one generator per sample, the model a (K, seed) samples from.

Every sample owns a random generator seeded by ``splits.sample_seed`` (study seed, K, seed,
set, sample index): its initial noise and every step's noise come from it alone, so a
sample's pixels do not depend on the batch it lands in or on how the work is sharded.
Plain functions, no Ray: the generate stage (``stages/generate.py``) calls them from its
actors, a test or a GPU box calls them directly.
"""

from __future__ import annotations

import numpy as np

from ..splits import SETS, sample_seed

__all__ = ["SETS", "load_model", "make_scheduler", "sample_circle", "sample_images", "sample_seed"]


def make_scheduler(gen_cfg, model_cfg):
    """The sampler of a DDPM epsilon model: DDPM over every training step (the paper's generation)
    or DDIM with fewer. (The circle's VE score model has none: ``sample_circle``.)"""
    if gen_cfg.sampler not in ("ddpm", "ddim"):
        raise ValueError(f"generate.sampler {gen_cfg.sampler!r} has no diffusers scheduler")
    from diffusers import DDIMScheduler

    from ..models.unet import build_train_scheduler

    train = build_train_scheduler(model_cfg)
    if gen_cfg.sampler == "ddpm":
        train.set_timesteps(model_cfg.num_train_timesteps)
        return train
    ddim = DDIMScheduler.from_config(train.config)
    ddim.set_timesteps(min(gen_cfg.steps, model_cfg.num_train_timesteps))
    return ddim


def sample_images(model, scheduler, seeds, shape, device=None, autocast_dtype=None) -> np.ndarray:
    """Denoise one image per seed; returns float32 (n, C, H, W) in [-1, 1].

    ``autocast_dtype`` (e.g. torch.bfloat16) runs the model's calls under autocast on any
    device; the caller decides (``train.mixed_precision``: "auto" means bf16 only on a GPU,
    since bf16 is ~10x slower than fp32 on the CPUs we have)."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    device = torch.device(device or "cpu")
    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    x = randn_tensor((len(seeds), *shape), generator=gens, device=device, dtype=torch.float32)
    x = x * scheduler.init_noise_sigma
    with torch.no_grad(), torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(x, t), t).sample.float()
            x = scheduler.step(eps, t, x, generator=gens).prev_sample
    return x.clamp(-1, 1).cpu().numpy().astype(np.float32)


def sample_circle(score, seeds, train_points: np.ndarray, model_cfg, steps: int) -> np.ndarray:
    """Euler-Maruyama samples of the VE SDE, one per seed, as (n, 1, 1, 2) float32.

    Each sample's start (a training point blurred by N(0, sigma_max^2), the exact t = 1
    marginal of the K-set) and its step noise come from its own seed alone."""
    from ..datasets.toy import circle

    seeds = np.asarray(seeds, dtype=np.int64)
    noise = circle.sample_noise(seeds, steps)
    start = circle.marginal_start(train_points.reshape(-1, 2), seeds, noise[:, 0], model_cfg.sigma_max)
    x = circle.em_sample(score, noise, model_cfg.t_min, model_cfg.sigma_max, start=start)
    return x.astype(np.float32).reshape(len(seeds), 1, 1, 2)


def load_model(cfg, study_dir, k: int, seed: int, dataset=None, axis=None):
    """The model to sample (K, seed) from, as the study's model family builds it
    (``raystudy.models.family``): the trained EMA network of checkpoint ``axis`` (raystudy.axes;
    default: the base model's final one), or the closed-form model of its K-set."""
    from ..axes import DEFAULT, for_axis
    from ..models import family, model_dir
    from ..splits import kset

    axis = axis or DEFAULT

    def kset_images():  # read only by a closed-form model
        from ..datasets import load_dataset

        data = dataset or load_dataset(cfg.data)
        return data.get(kset(cfg, data, axis, k))

    return family(cfg).build(for_axis(cfg, axis).model, model_dir(study_dir, k, seed, axis), kset_images)
