"""One training run: a UNet2DModel on a K-image training set, DDPM epsilon loss.

Plain function, no Ray: Tune calls it from ``sweep.py``, a test or a GPU box
calls it directly. Length is counted in images seen (EDM's habit), so changing
the batch size does not silently change how long a model trains.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

STATE_FILE = "state.pt"
RUN_FILE = "run.json"


def mixed_precision(setting: str, cuda: bool) -> str:
    # bf16 on this CPU is ~10x slower than fp32, so "auto" means bf16 only on a GPU.
    if setting == "auto":
        return "bf16" if cuda else "no"
    return setting


def run_seed(study_seed: int, k: int, seed: int) -> int:
    return int(np.random.SeedSequence([study_seed, k, seed, 0x7EA1]).generate_state(1)[0])


def model_dir(study_dir, k: int, seed: int) -> Path:
    return Path(study_dir).resolve() / "models" / f"K{k}-s{seed}"


def read_run(final_dir) -> Optional[dict]:
    """The finished run's record, or None if the run is not complete."""
    p = Path(final_dir) / RUN_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def train_one(cfg, images: np.ndarray, k: int, seed: int, final_dir,
              resume_dir: Optional[str] = None,
              on_checkpoint: Optional[Callable[[str, dict], None]] = None,
              work_dir: Optional[str] = None) -> dict:
    """Train one model on ``images`` (an array (K, C, H, W), or ``data.LazyImages``) and save
    its EMA weights to ``final_dir`` (atomically).

    ``resume_dir`` holds a state written by an earlier checkpoint; ``on_checkpoint``
    receives a directory with the current state every ``train.checkpoint_every``
    images (Tune turns it into a ``ray.tune.Checkpoint``).
    """
    import torch
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from .model import build_train_scheduler, build_unet

    tc, mc = cfg.train, cfg.model
    # Ray hides GPUs from a trial that asked for none, so this follows the trial's resources.
    cuda = torch.cuda.is_available()
    acc = Accelerator(mixed_precision=mixed_precision(tc.mixed_precision, cuda), cpu=not cuda)
    torch.manual_seed(run_seed(cfg.study.seed, k, seed))
    gen = torch.Generator().manual_seed(run_seed(cfg.study.seed, k, seed) + 1)

    model = build_unet(mc, tuple(images.shape[1:]))
    scheduler = build_train_scheduler(mc)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    ema = EMAModel(model.parameters(), decay=tc.ema_decay)
    total_steps = math.ceil(tc.images / tc.batch_size)
    ckpt_steps = max(1, math.ceil(tc.checkpoint_every / tc.batch_size))
    step, wall_before, losses = 0, 0.0, []
    resumed_from = 0

    if resume_dir is not None:
        state = torch.load(Path(resume_dir) / STATE_FILE, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        ema.load_state_dict(state["ema"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        step, wall_before, losses = state["step"], state["wall_s"], state["losses"]
        resumed_from = step

    model, opt = acc.prepare(model, opt)
    ema.to(acc.device)
    # A lazy K-set (LazyImages) is rendered batch by batch; an array is moved to the device once.
    data = torch.from_numpy(np.ascontiguousarray(images)).to(acc.device) if isinstance(images, np.ndarray) else None
    alphas = scheduler.alphas_cumprod.to(acc.device)
    t0 = time.time()
    bar = tqdm(total=total_steps, initial=step, desc=f"train K={k} seed={seed}", mininterval=5,
               disable=None, file=sys.stderr)
    model.train()
    while step < total_steps:
        idx = torch.randint(0, len(images), (tc.batch_size,), generator=gen)
        x0 = data[idx.to(acc.device)] if data is not None else torch.from_numpy(images[idx.numpy()]).to(acc.device)
        noise = torch.randn(x0.shape, generator=gen).to(acc.device)
        t = torch.randint(0, mc.num_train_timesteps, (len(x0),), generator=gen).to(acc.device)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with acc.autocast():
            pred = model(xt, t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        ema.step(acc.unwrap_model(model).parameters())
        losses = (losses + [loss.detach().item()])[-100:]
        step += 1
        bar.update(1)
        if on_checkpoint is not None and (step % ckpt_steps == 0 or step == total_steps):
            metrics = _metrics(step, tc.batch_size, losses, wall_before + time.time() - t0)
            state_dir = Path(work_dir or final_dir).parent / f".ckpt-K{k}-s{seed}-{step}"
            _save_state(state_dir, acc.unwrap_model(model), opt, ema, gen, step, metrics["wall_s"], losses)
            on_checkpoint(str(state_dir), metrics)
            shutil.rmtree(state_dir, ignore_errors=True)
    bar.close()

    metrics = _metrics(step, tc.batch_size, losses, wall_before + time.time() - t0)
    unet = acc.unwrap_model(model)
    ema.copy_to(unet.parameters())
    _save_final(unet, Path(final_dir), {"K": k, "seed": seed, "resumed_from_step": resumed_from, **metrics})
    return metrics


def _metrics(step, batch_size, losses, wall_s) -> dict:
    return {"steps": step, "images_seen": step * batch_size,
            "final_loss": float(np.mean(losses[-50:])) if losses else float("nan"), "wall_s": wall_s}


def _save_state(state_dir: Path, model, opt, ema, gen, step, wall_s, losses):
    import torch

    state_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict(),
                "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                "wall_s": wall_s, "losses": losses}, state_dir / STATE_FILE)


def _save_final(unet, final_dir: Path, record: dict):
    """Write the EMA model and its run record under a temporary name, then rename."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_dir.with_name(f".{final_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    unet.to("cpu").float().save_pretrained(tmp)
    (tmp / RUN_FILE).write_text(json.dumps({**record, "checkpoint": str(final_dir)}, indent=1))
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp, final_dir)
