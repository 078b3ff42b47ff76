"""One training run, and the train stage's output (the model folder, its ``runs`` row and
its ``train_log`` rows).

``train_one`` is a plain function, no Ray: Tune calls it from ``stages/train.py``, a test or a
GPU box calls it directly. Length is counted in images seen (EDM's habit), so changing the
batch size does not silently change how long a model trains. Its resumable state is a
single file in the study folder, written atomically at every checkpoint, so a run that
dies (a killed driver, a lost node, a Tune retry) continues from there wherever it is
rescheduled, as long as the study folder is on storage every node sees.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .. import tables
from ..onset import GapWatch
from ..splits import run_seed

RUN_FILE = "run.json"
LOG_FILE = "log.json"
CURVES_FILE = "loss_curves.json"


def mixed_precision(setting: str, cuda: bool) -> str:
    # bf16 on this CPU is ~10x slower than fp32, so "auto" means bf16 only on a GPU.
    if setting == "auto":
        return "bf16" if cuda else "no"
    return setting


def read_run(final_dir) -> Optional[dict]:
    """The finished run's record, or None if the run is not complete."""
    try:
        return json.loads((Path(final_dir) / RUN_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def train_one(cfg, images, k: int, seed: int, final_dir, state_path=None,
              on_checkpoint: Optional[Callable[[dict], None]] = None, meta: Optional[dict] = None,
              on_log: Optional[Callable[[dict], None]] = None, snapshots: Optional[dict] = None,
              stop_at: Optional[int] = None, twin: int = 0, held_out=None) -> dict:
    """Train one model on ``images`` (an array (K, C, H, W), or ``datasets.LazyImages``) and save
    its EMA weights to ``final_dir`` (atomically); returns the run record.

    ``snapshots`` maps images seen (multiples of the batch size) to ``(folder, meta)``: when the
    run has seen that many, the EMA weights are saved there as a model folder of their own (with
    its ``run.json``); nothing else changes, so the final weights are those of a run without
    snapshots. ``stop_at`` (images seen): stop there without saving a final model (to make
    snapshots a finished run lacks: the same seeded run, so the same weights). ``twin`` seeds
    the run as the twin's (``splits.run_seed``).

    ``held_out`` (the study's held-out images, an array or ``LazyImages``): the loss curves
    (``train.gap_evals`` evaluations of the EMA model on fixed batches of ``images`` and of these,
    ``compute.losses``) are measured and saved with the model (``CURVES_FILE``), and their gap
    followed (``raystudy.onset.GapWatch``): its opening is printed once and, with
    ``train.stop_on_gap``, ends the run there with its model saved as the final one.

    If ``state_path`` exists the run resumes from it; every ``train.checkpoint_every`` images
    the state is written there and ``on_checkpoint(metrics)`` is called. Every log interval
    (the ``train_log`` rows) ``on_log(metrics)`` gets the run's metrics plus that interval's mean
    ``loss`` and ``images_per_s`` (Tune reports it to its logger callbacks).
    """
    import torch
    from tqdm.auto import tqdm

    tc, mc = cfg.train, cfg.model
    total_steps = math.ceil(tc.images / tc.batch_size)
    tr = build_trainer(cfg, tuple(images.shape[1:]), k, seed, total_steps, twin=twin)
    snapshots = {int(s) // tc.batch_size: v for s, v in (snapshots or {}).items()}
    last_step = total_steps if stop_at is None else min(total_steps, int(stop_at) // tc.batch_size)
    acc, net, opt, ema, sched, gen = tr.acc, tr.net, tr.opt, tr.ema, tr.lr_sched, tr.gen
    # Data-parallel (Ray Train workers, DDP through Accelerate): every worker draws the whole
    # global batch's indices, noise and timesteps from the same generator and keeps its share,
    # so the run does not depend on the number of workers beyond float rounding.
    world, rank = acc.num_processes, acc.process_index
    share = tc.batch_size // world
    part = (rank * share, tc.batch_size) if world > 1 else None
    ckpt_steps = max(1, math.ceil(tc.checkpoint_every / tc.batch_size))
    log_steps = max(1, total_steps // 200)
    step, wall_before, losses, log = 0, 0.0, [], []
    resumed_from = 0
    probe = None
    if held_out is not None and tc.gap_evals > 0:
        from .losses import LossProbe, ema_losses

        probe = LossProbe(images, held_out, tr.alphas.cpu(), tc.gap_images, tc.gap_levels,
                          seed=run_seed(cfg.study.seed, k, seed, twin))
        probe_steps = eval_steps(total_steps, tc.gap_evals, snapshots)

    # The loss curves' evaluations (none without a probe), carried in the resume state.
    watch = GapWatch()
    state_path = Path(state_path) if state_path else None
    if state_path is not None:
        # A writer killed mid-checkpoint (a lost node) leaves its temporary file behind.
        for t in state_path.parent.glob(f".{state_path.name}.*.tmp"):
            t.unlink(missing_ok=True)
    if state_path is not None and state_path.exists():
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - a torn or foreign file: start over rather than fail
            state = None
        if state is not None:
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            ema.load_state_dict(state["ema"])
            if sched is not None:
                sched.load_state_dict(state["sched"])
            gen.set_state(state["gen"])
            torch.set_rng_state(state["torch_rng"])
            step, wall_before, losses, log = state["step"], state["wall_s"], state["losses"], state["log"]
            for seen, trl, hol in state.get("curves", []):
                watch.add(seen, trl, hol)
            resumed_from = step
    # A run resumed from a state saved at its confirmed onset stops there again.
    gap_stop = step if tc.stop_on_gap and watch.onset is not None else None

    tr.prepare()
    net, opt = tr.net, tr.opt
    # A lazy K-set (LazyImages) is read batch by batch; an array is moved to the device once.
    data = torch.from_numpy(np.ascontiguousarray(images)).to(acc.device) if isinstance(images, np.ndarray) else None
    t0 = time.time()
    bar = tqdm(total=total_steps, initial=step, desc=f"train K={k} seed={seed}", mininterval=5,
               disable=None, file=sys.stderr)
    net.train()
    window, window_t0 = [], time.time()
    gap_now: dict = {}
    while step < last_step and gap_stop is None:
        idx = torch.randint(0, len(images), (tc.batch_size,), generator=gen)
        if part is not None:
            idx = idx[part[0]:part[0] + share]
        x0 = data[idx.to(acc.device)] if data is not None else torch.from_numpy(images[idx.numpy()]).to(acc.device)
        value = tr.step(x0, part)
        losses = (losses + [value])[-100:]
        window.append(value)
        step += 1
        bar.update(1)
        if probe is not None and step in probe_steps:
            trl, hol = ema_losses(probe, acc.unwrap_model(net), ema)
            had = watch.onset
            if watch.add(step * tc.batch_size, trl, hol) is not None and had is None:
                if rank == 0:
                    print(f"[train] K={k} seed={seed}: {watch.message()}", file=sys.stderr, flush=True)
                if tc.stop_on_gap:
                    gap_stop = step
            gap_now = {"gap_train_loss": float(trl.mean()), "gap_held_out_loss": float(hol.mean()),
                       "gap_z": watch.last_z()}
        if step % log_steps == 0 or step == total_steps:
            log.append([step, float(np.mean(window))])
            if on_log is not None:
                now = time.time()
                on_log({**_metrics(step, tc.batch_size, losses, wall_before + now - t0), "loss": log[-1][1],
                        "images_per_s": len(window) * tc.batch_size / max(now - window_t0, 1e-9), **gap_now})
            window, window_t0 = [], time.time()
        if step in snapshots and rank == 0:
            folder, snap_meta = snapshots[step]
            save_ema(acc, net, ema, tr.network.save, mc, folder, {
                "K": k, "seed": seed, "model": mc.type, "resumed_from_step": resumed_from,
                **_metrics(step, tc.batch_size, losses, wall_before + time.time() - t0), "checkpoint": str(folder),
                "params": count_params(net), **(snap_meta or {})}, log)
        if step % ckpt_steps == 0 or step == total_steps:
            metrics = _metrics(step, tc.batch_size, losses, wall_before + time.time() - t0)
            if state_path is not None and step < total_steps and rank == 0:
                with tables.atomic_path(state_path) as tmp:
                    torch.save({"model": acc.unwrap_model(net).state_dict(), "opt": opt.state_dict(),
                                "ema": ema.state_dict(), "sched": sched.state_dict() if sched else None,
                                "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                                "wall_s": metrics["wall_s"], "losses": losses, "log": log, "curves": watch.evals()}, tmp)
            if on_checkpoint is not None:
                on_checkpoint(metrics)
    bar.close()
    if last_step < total_steps and gap_stop is None:
        if state_path is not None:
            state_path.unlink(missing_ok=True)
        return {"K": k, "seed": seed, "stopped_at_step": step}

    record = {"K": k, "seed": seed, "model": mc.type, "resumed_from_step": resumed_from,
              **_metrics(step, tc.batch_size, losses, wall_before + time.time() - t0),
              "checkpoint": str(final_dir), "params": count_params(net), **(meta or {})}
    if watch.onset is not None:
        record["tau_gap"] = watch.onset["tau_gap"]
    if gap_stop is not None:
        record["stopped_on_gap"] = True
    if rank != 0:  # rank 0 saves the (identical) model
        return record
    save_ema(acc, net, ema, tr.network.save, mc, final_dir, record, log,
             curves_record(probe, watch) if probe is not None else None)
    if state_path is not None:
        state_path.unlink(missing_ok=True)
    return record


def count_params(net) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def save_ema(acc, net, ema, save, model_cfg, folder, record: dict, log, curves: Optional[dict] = None) -> None:
    """Save the EMA weights as a model folder now (``save``: the network's, ``unet.save`` or
    ``circle_mlp.save``), leaving the training network and the EMA as they are (a copy of the
    network takes the EMA weights)."""
    import copy

    import torch

    snap = copy.deepcopy(acc.unwrap_model(net))
    ema.copy_to(snap.parameters())
    snap = snap.to(memory_format=torch.contiguous_format)
    with tables.atomic_path(folder) as tmp:
        save(snap, tmp, model_cfg)
        (tmp / LOG_FILE).write_text(json.dumps(log))
        if curves is not None:
            (tmp / CURVES_FILE).write_text(json.dumps(curves))
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=1))


def eval_steps(total_steps: int, n: int, snapshots=()) -> set:
    """The steps at which the loss curves are measured: ``n`` log-spaced from total / 100 to the
    last step, and every snapshot's."""
    first = max(1, total_steps // 100)
    steps = np.unique(np.rint(np.geomspace(first, total_steps, max(1, n))).astype(int)) if n else []
    return {int(s) for s in steps} | {int(s) for s in snapshots}


def curves_record(probe, watch: GapWatch) -> dict:
    """What ``CURVES_FILE`` holds: the probe's levels and batch sizes and each evaluation the
    watch saw (images seen, per-item training losses, per-item held-out losses), per level."""
    return {"timesteps": [int(t) for t in probe.timesteps], "n_train": probe.n_train, "n_held_out": probe.n_held,
            "evals": watch.evals()}


@dataclass
class Trainer:
    """Everything one training step touches, built once from the config (``build_trainer``)."""
    acc: Any
    net: Any
    opt: Any
    ema: Any
    alphas: Any
    lr_sched: Any
    gen: Any
    model_cfg: Any
    network: Any  # the module with the network's build, loss and save (raystudy.models.family)
    grad_clip: Optional[float]
    compile: bool = False  # the loss calls a torch.compile'd net (``forward``, made in ``prepare``)
    forward: Any = None

    def prepare(self) -> None:
        """Hand the network and optimiser to Accelerate (after any resume) and compile if asked."""
        self.net, self.opt = self.acc.prepare(self.net, self.opt)
        self.ema.to(self.acc.device)
        if self.compile:
            import torch

            self.forward = torch.compile(self.net)
        else:
            self.forward = self.net

    def step(self, x0, part=None) -> float:
        return train_step(self.acc, self.net, self.opt, self.ema, self.network.loss, self.model_cfg, x0, self.gen,
                          self.alphas, self.grad_clip, self.lr_sched, forward=self.forward, part=part)


def build_trainer(cfg, shape: tuple, k: int, seed: int, total_steps: int, twin: int = 0) -> Trainer:
    """The network, optimiser, EMA, schedule and generators of run (K, seed), seeded from
    ``splits.run_seed``, with the speed options of ``train`` (bf16 autocast, channels-last,
    TF32, fused AdamW, torch.compile; defaults keep the CPU path plain fp32)."""
    import torch
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    from ..models import family, unet

    tc, mc = cfg.train, cfg.model
    fam = family(cfg)
    if not fam.trains:
        raise ValueError(f"model.type {mc.type!r} has nothing to train")
    network = fam.network()
    # Ray hides GPUs from a trial that asked for none, so this follows the trial's resources.
    cuda = torch.cuda.is_available()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(tc.tf32)
    acc = Accelerator(mixed_precision=mixed_precision(tc.mixed_precision, cuda), cpu=not cuda)
    rs = run_seed(cfg.study.seed, k, seed, twin)
    torch.manual_seed(rs)
    gen = torch.Generator().manual_seed(rs + 1)
    net = network.build(mc, tuple(shape), seed=rs % 2**31)
    if tc.channels_last and not fam.ve:  # the circle's MLP has no image channels
        net = net.to(memory_format=torch.channels_last)
    alphas = unet.build_train_scheduler(mc).alphas_cumprod.to(acc.device)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                            **({"fused": True} if tc.fused_adam and cuda else {}))
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, total_steps, eta_min=tc.lr * 0.05)
             if tc.lr_schedule == "cosine" else None)
    ema = EMAModel(net.parameters(), decay=tc.ema_decay)
    return Trainer(acc, net, opt, ema, alphas, sched, gen, mc, network, tc.grad_clip,
                   compile=tc.compile)


def train_step(acc, net, opt, ema, loss_fn, model_cfg, x0, gen, alphas_cumprod, grad_clip=None, lr_sched=None,
               forward=None, part=None) -> float:
    """One optimisation step on the batch ``x0``: loss (``loss_fn``, the network's: ``unet.loss`` or
    ``circle_mlp.loss``, calling ``forward``, default ``net``), backward, clipping, AdamW, the
    learning-rate schedule and the EMA update; returns the batch's loss. What ``train_one``'s loop
    runs, and what the benchmarks time. ``part``: this worker's share of a data-parallel batch
    (``raystudy.models.batch_share``); the loss returned is then the mean over the workers, the
    global batch's loss."""
    loss = loss_fn(model_cfg, forward or net, x0, gen, alphas_cumprod, acc.autocast, part=part)
    opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    if grad_clip is not None:
        acc.clip_grad_norm_(net.parameters(), grad_clip)
    opt.step()
    if lr_sched is not None:
        lr_sched.step()
    ema.step(acc.unwrap_model(net).parameters())
    if part is not None:
        return acc.reduce(loss.detach(), reduction="mean").item()
    return loss.detach().item()


def _metrics(step, batch_size, losses, wall_s) -> dict:
    return {"steps": step, "images_seen": step * batch_size,
            "final_loss": float(np.mean(losses[-50:])) if losses else float("nan"), "wall_s": wall_s}
