"""Sampling: per-sample seeds, two independent sets per (K, seed), Ray Data sharding.

Every sample owns a random generator seeded from (study seed, K, seed, set, sample index)
by ``sample_seed``: its initial noise and every step's noise come from it alone, so a
sample's pixels do not depend on the batch it lands in or on how Ray shards the work.
``sample_batch`` is the plain function; ``SampleActor`` wraps it for
``Dataset.map_batches`` and loads each model once per worker.
"""

from __future__ import annotations


import numpy as np
import pyarrow.compute as pc

from . import tables

SETS = ("eval", "ref")


def sample_seed(study_seed: int, k: int, seed: int, set_name: str, i: int) -> int:
    state = np.random.SeedSequence([study_seed, k, seed, SETS.index(set_name), i]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def make_scheduler(gen_cfg, model_cfg):
    """The sampler: DDPM over every training step (the paper's generation) or DDIM with fewer."""
    if gen_cfg.sampler == "em":
        return None
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


def sample_circle(score, seeds, train_points: np.ndarray, model_cfg, steps: int) -> np.ndarray:
    """Euler-Maruyama samples of the VE SDE, one per seed, as (n, 1, 1, 2) float32.

    Each sample's start (a training point blurred by N(0, sigma_max^2), the exact t = 1
    marginal of the K-set) and its step noise come from its own seed alone."""
    from .toy import circle

    seeds = np.asarray(seeds, dtype=np.int64)
    noise = circle.sample_noise(seeds, steps)
    start = circle.marginal_start(train_points.reshape(-1, 2), seeds, noise[:, 0], model_cfg.sigma_max)
    x = circle.em_sample(score, noise, model_cfg.t_min, model_cfg.sigma_max, start=start)
    return x.astype(np.float32).reshape(len(seeds), 1, 1, 2)


def load_model(cfg, study_dir, k: int, seed: int, dataset=None):
    """The model to sample (K, seed) from: the trained EMA network, or the exact memorizer."""
    if cfg.model.type == "empirical":
        from .datasets import load_dataset, training_set

        _, images = training_set(dataset or load_dataset(cfg.data), k, cfg.study.seed)
        if cfg.generate.sampler == "em":
            from .toy.circle import empirical_score

            return empirical_score(images.reshape(-1, 2), cfg.model.sigma_max)
        import torch

        from .empirical import EmpiricalEpsilon
        from .model import build_train_scheduler

        return EmpiricalEpsilon(torch.from_numpy(images), build_train_scheduler(cfg.model).alphas_cumprod)
    from .model import load
    from .train import model_dir

    return load(model_dir(study_dir, k, seed))


class ModelActor:
    """Ray Data actor base: loads each (K, seed) model once per actor and keeps it."""

    def __init__(self, cfg_dict: dict, study_dir: str):
        import torch

        from .config import from_dict
        from .datasets import load_dataset

        self.cfg = from_dict(cfg_dict)
        self.study_dir = study_dir
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dataset = load_dataset(self.cfg.data)
        self.models = {}

    def model(self, k: int, seed: int):
        if (k, seed) not in self.models:
            m = load_model(self.cfg, self.study_dir, k, seed, self.dataset)
            self.models[(k, seed)] = m.to(self.device).eval() if hasattr(m, "to") else m
        return self.models[(k, seed)]


class SampleActor(ModelActor):
    """Ray Data actor: samples shard after shard and writes each as its own part."""

    def __init__(self, cfg_dict: dict, study_dir: str):
        import torch

        from .train import mixed_precision

        super().__init__(cfg_dict, study_dir)
        mp = mixed_precision(self.cfg.train.mixed_precision, self.device == "cuda")
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)
        self.scheduler = make_scheduler(self.cfg.generate, self.cfg.model)

    def sample(self, k: int, seed: int, seeds) -> np.ndarray:
        model = self.model(k, seed)
        if self.cfg.generate.sampler == "em":
            from .datasets import training_set

            _, pts = training_set(self.dataset, k, self.cfg.study.seed)
            return sample_circle(model, seeds, pts, self.cfg.model, self.cfg.generate.steps)
        return sample_images(model, self.scheduler, seeds, self.dataset.shape, self.device, self.autocast)

    def __call__(self, batch: dict, study_dir: str = "", metas: dict | None = None) -> dict:
        """Each row is one shard (K, seed, set, sample ids lo..hi): sample it in batches of
        ``generate.batch_size`` and write its part here, in the actor, so samples never travel
        to the driver. Returns one small row per shard written."""
        bs, written = self.cfg.generate.batch_size, []
        for k, seed, code, lo, hi, shard in zip(*(batch[c].tolist() for c in
                                                  ("K", "seed", "set_code", "lo", "hi", "shard"))):
            set_name = SETS[code]
            ids = np.arange(lo, hi)
            seeds = np.asarray([sample_seed(self.cfg.study.seed, k, seed, set_name, int(i)) for i in ids])
            images = np.concatenate([self.sample(k, seed, seeds[j:j + bs]).reshape(len(seeds[j:j + bs]), -1)
                                     for j in range(0, len(seeds), bs)])
            unit, n, (c, h, w) = f"K{k}-s{seed}", len(ids), self.dataset.shape
            tables.write_part(study_dir or self.study_dir, "samples", f"{unit}-{set_name}-{shard:05d}", tables.to_table(
                "samples", {"K": np.full(n, k), "seed": np.full(n, seed), "set": np.full(n, set_name), "sample_id": ids,
                            "sample_seed": seeds, "channels": np.full(n, c), "height": np.full(n, h),
                            "width": np.full(n, w), "image": images}, meta=metas[unit]))
            written.append(n)
        return {"K": batch["K"], "seed": batch["seed"], "rows": np.asarray(written)}


def read_samples(study_dir, k: int, seed: int, set_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(sample_id, images (n, C, H, W)) of one set, ordered by sample_id."""
    t = tables.read(study_dir, "samples", filters=(pc.field("K") == k) & (pc.field("seed") == seed)
                    & (pc.field("set") == set_name))
    t = t.sort_by("sample_id")
    if t.num_rows == 0:
        raise FileNotFoundError(f"no {set_name} samples for K={k} seed={seed} in {study_dir}: run the generate stage")
    c, h, w = (int(t[col][0].as_py()) for col in ("channels", "height", "width"))
    return t["sample_id"].to_numpy(), tables.list_to_numpy(t["image"]).reshape(-1, c, h, w).astype(np.float32)


def check_models(stage, cfg, study_dir, todo, dataset) -> None:
    """A corrupt saved model is a one-line error here, not a remote traceback in an actor."""
    if cfg.model.type == "empirical":
        return
    from .model import check_checkpoint
    from .train import model_dir, read_run

    for k, s in todo:
        if read_run(model_dir(study_dir, k, s)) is not None:
            check_checkpoint(model_dir(study_dir, k, s))


def run_generate(stage, cfg, study_dir, todo) -> None:
    """Sample every (K, seed) in ``todo``, both sets, streamed shard by shard (raytools.stream)."""
    from .raytools import pool, stream

    g = cfg.generate
    stream(stage, cfg, study_dir, todo, "samples", SETS, SampleActor, {"cfg_dict": cfg.to_dict()},
           pool(g.workers, g.cpus_per_worker, g.gpus_per_worker))
