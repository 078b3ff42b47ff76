"""Training and sampling throughput of the study's UNets, without Ray.

    python benchmarks/throughput.py --device cuda            # on a GPU machine: the full table
    python benchmarks/throughput.py --device cpu --quick     # a smoke run on a laptop
    python benchmarks/throughput.py --help                   # every option

For two models -- the paper's CIFAR-10 UNet (block_out_channels 128,256,256,256, 2 res
blocks per level, attention at 16x16, 35.7M parameters, 32x32x3) and the demo's UNet
(configs/demo.yaml: 32,64, 8x8x1) -- and for each precision variant, measured in ONE run
with the variants interleaved round by round (so a busy machine slows all of them alike):

* training images/s of the real training step (``raystudy.model.loss``, backward, grad-norm
  clip, AdamW, EMA, ``loss.item()`` -- the body of ``raystudy.train.train_one``'s loop);
* the step's FLOPs (``torch.utils.flop_counter.FlopCounterMode`` on one forward+backward),
  the achieved FLOP/s and, on a known GPU, the fraction of the device's dense peak;
* sampling samples/s for DDPM (1,000 steps) and DDIM (50 steps), schedulers from
  ``raystudy.generate.make_scheduler``, the loop of ``raystudy.generate.sample_images``
  (autocast forced on any device, optional channels-last). When ``--sample-steps`` caps the
  steps timed (the CPU default), the time per step is extrapolated to all steps, and the
  table says so.

Variants: ``fp32`` (TF32 off: true fp32), ``bf16`` (bf16 autocast, TF32 off), ``fast``
(bf16 autocast + channels-last + TF32 + fused AdamW + foreach EMA), ``compile`` (``fast``
+ ``torch.compile``; its compile time is measured separately and not in the rate).

On a CPU, ``--demo-cpu`` (default there) adds the demo training-step study: where the time
of one step goes (phases and op classes, at the threads a Ray trial gets), and the real
``raystudy.train.train_one`` against a variant loop, side by side.

Writes benchmarks/results/throughput-<machine>.md (``-quick`` suffix for --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning (same as benchmarks/run.py): on a shared
# machine spinning partners distort every comparison. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# Dense peak TFLOP/s (no sparsity), from NVIDIA's datasheets. Matched against
# torch.cuda.get_device_name() in order; the first pattern found wins.
PEAKS = [
    # pattern,        bf16,  tf32,  fp32
    ("H200 NVL",      835.0, 417.5, 60.0),
    ("H200",          989.4, 494.7, 66.9),   # SXM
    ("H100 NVL",      835.0, 417.5, 60.0),
    ("H100 PCIe",     756.0, 378.0, 51.2),
    ("H100",          989.4, 494.7, 66.9),   # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("A100",          312.0, 156.0, 19.5),
]

VARIANTS = {
    # name: (autocast bf16, channels_last, tf32, fused AdamW + foreach EMA, torch.compile)
    "fp32":    (False, False, False, False, False),
    "bf16":    (True,  False, False, False, False),
    "tf32":    (False, True,  True,  True,  False),
    "fast":    (True,  True,  True,  True,  False),
    "compile": (True,  True,  True,  True,  True),
}
VARIANT_TEXT = {
    "fp32": "fp32 (TF32 off)",
    "bf16": "bf16 autocast",
    "tf32": "fp32 with TF32 + channels-last + fused AdamW (no bf16; on a CPU TF32 means nothing: fp32)",
    "fast": "bf16 + channels-last + TF32 + fused AdamW (+ foreach EMA and grad clipping)",
    "compile": "`fast` + torch.compile",
}


# -- machine ------------------------------------------------------------------------------

from machine import loadavg, machine, machine_slug, write_results  # noqa: E402  (benchmarks/machine.py)


def device_peaks(m: dict) -> dict | None:
    """{'bf16', 'tf32', 'fp32'} dense TFLOP/s of the device, or None (CPU, unknown GPU)."""
    if m["device"] != "cuda":
        return None
    for pat, bf16, tf32, fp32 in PEAKS:
        if pat.lower() in m["gpu"].lower():
            return {"name": pat, "bf16": bf16, "tf32": tf32, "fp32": fp32}
    return None


def variant_peak(peaks: dict | None, variant: str) -> tuple[str, float | None]:
    if peaks is None:
        return "peak unknown", None
    bf16, _, tf32, _, _ = VARIANTS[variant]
    key = "bf16" if bf16 else ("tf32" if tf32 else "fp32")
    return key, peaks[key]


# -- models -------------------------------------------------------------------------------

def model_specs():
    from raystudy.config import from_dict, load

    demo = load(ROOT / "configs" / "demo.yaml")
    cifar = from_dict({"model": {"type": "unet", "block_out_channels": [128, 256, 256, 256],
                                 "layers_per_block": 2, "attention": [False, True, False, False],
                                 "norm_num_groups": 32},
                       "train": {"batch_size": 128, "lr": 2e-4, "ema_decay": 0.9999}})
    return {
        "cifar": {"title": "CIFAR-10 UNet (paper)", "cfg": cifar, "shape": (3, 32, 32)},
        "demo": {"title": "demo UNet (configs/demo.yaml)", "cfg": demo, "shape": (1, 8, 8)},
    }


def set_tf32(on: bool) -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


class Trainer:
    """One variant's model, optimizer and EMA; ``step()`` is train_one's loop body."""

    def __init__(self, cfg, shape, variant: str, device, batch: int, seed: int = 0):
        import torch
        from diffusers.training_utils import EMAModel

        from raystudy import model as models

        self.bf16, self.cl, self.tf32, self.fused, self.compiled = VARIANTS[variant]
        self.variant, self.cfg, self.device, self.batch = variant, cfg, torch.device(device), batch
        torch.manual_seed(seed)
        self.net = models.build_unet(cfg.model, shape).to(self.device)
        if self.cl:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.fwd = torch.compile(self.net) if self.compiled else self.net
        self.alphas = models.build_train_scheduler(cfg.model).alphas_cumprod.to(self.device)
        opt_kw = {"fused": True} if self.fused else {}
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.train.lr,
                                     weight_decay=cfg.train.weight_decay, **opt_kw)
        self.ema = EMAModel(self.net.parameters(), decay=cfg.train.ema_decay, foreach=self.fused)
        self.ema.to(self.device)
        g = torch.Generator().manual_seed(seed + 1)
        self.data = (torch.rand((max(batch, 512), *shape), generator=g) * 2 - 1).to(self.device)
        self.gen = torch.Generator().manual_seed(seed + 2)

    def autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def batch_x0(self):
        import torch

        idx = torch.randint(0, len(self.data), (self.batch,), generator=self.gen)
        x0 = self.data[idx.to(self.device)]
        return x0.contiguous(memory_format=torch.channels_last) if self.cl else x0

    def loss(self, x0):
        from raystudy import model as models

        return models.loss(self.cfg.model, self.fwd, x0, self.gen, self.alphas, self.autocast)

    def step(self) -> float:
        import torch

        set_tf32(self.tf32)
        loss = self.loss(self.batch_x0())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.train.grad_clip,
                                           foreach=True if self.fused else None)
        self.opt.step()
        self.ema.step(self.net.parameters())
        return loss.detach().item()  # a sync point, as in train_one

    def flops(self) -> int:
        """FLOPs of one forward+backward of a training batch (uncompiled module)."""
        from torch.utils.flop_counter import FlopCounterMode

        from raystudy import model as models

        fc = FlopCounterMode(display=False)
        with fc:
            models.loss(self.cfg.model, self.net, self.batch_x0(), self.gen, self.alphas, self.autocast).backward()
        self.opt.zero_grad(set_to_none=True)
        return fc.get_total_flops()


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def sample_loop(model, scheduler, seeds, shape, device, bf16: bool, channels_last: bool, max_steps=None):
    """raystudy.generate.sample_images's loop, with autocast on any device (sample_images only
    enables it on CUDA), optional channels-last input, and at most ``max_steps`` steps."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    device = torch.device(device)
    gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    x = randn_tensor((len(seeds), *shape), generator=gens, device=device, dtype=torch.float32)
    x = x * scheduler.init_noise_sigma
    steps = scheduler.timesteps if max_steps is None else scheduler.timesteps[:max_steps]
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for t in steps:
            inp = scheduler.scale_model_input(x, t)
            if channels_last:
                inp = inp.contiguous(memory_format=torch.channels_last)
            eps = model(inp, t).sample.float()
            x = scheduler.step(eps, t, x, generator=gens).prev_sample
    return x.clamp(-1, 1)


# -- the measurement ------------------------------------------------------------------------

def bench_model(name: str, spec: dict, args, m: dict, log) -> dict:
    import torch

    from raystudy.generate import make_scheduler

    dev = args.device
    cfg, shape = spec["cfg"], spec["shape"]
    batch = args.cifar_batch if name == "cifar" else args.demo_batch
    sbatch = args.cifar_sample_batch if name == "cifar" else args.demo_sample_batch
    variants = [v for v in args.variants if (v != "compile" or name in args.compile_models)
                and (not VARIANTS[v][0] or name in args.bf16_models)]
    res = {"name": name, "title": spec["title"], "batch": batch, "sample_batch": sbatch, "rows": {}, "notes": []}
    if "compile" in args.variants and name not in args.compile_models:
        res["notes"].append(f"torch.compile not run for this model on {dev} (see --compile-models)")
    if name not in args.bf16_models:
        res["notes"].append(f"bf16 variants not run for this model on {dev} (see --bf16-models): on a CPU without "
                            "AVX512-BF16/AMX, bf16 autocast is emulated; one CIFAR training step at batch 2 took "
                            "107 s in bf16 vs 1.8 s in fp32 on the 2-core AMD EPYC (Zen 3) of the committed results")

    trainers = {}
    for v in variants:
        trainers[v] = Trainer(cfg, shape, v, dev, batch)
    res["params"] = sum(p.numel() for p in trainers[variants[0]].net.parameters())
    log(f"[{name}] {res['params']:,} parameters, train batch {batch}, variants {variants}")
    res["flops_step"] = trainers[variants[0]].flops()
    log(f"[{name}] {res['flops_step'] / 1e9:.1f} GFLOP per training step (forward+backward)")

    # Warm-up (and compile, timed on its own).
    for v, tr in trainers.items():
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        try:
            tr.step()
            sync(dev)
        except Exception as e:  # noqa: BLE001 - a variant that does not work here is reported, not fatal
            res["rows"][v] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
            log(f"[{name}] {v}: FAILED {res['rows'][v]['error']}")
            continue
        first = time.perf_counter() - t
        for _ in range(args.warmup - 1):
            tr.step()
        sync(dev)
        res["rows"][v] = {"first_step_s": first, "rounds": []}
        log(f"[{name}] {v}: first step {first:.1f} s")
    ok = [v for v in variants if "error" not in res["rows"][v]]

    # Training: rounds of `train_steps` steps, variants interleaved.
    for r in range(args.rounds):
        for v in ok:
            tr = trainers[v]
            sync(dev)
            t = time.perf_counter()
            for _ in range(args.train_steps):
                tr.step()
            sync(dev)
            res["rows"][v]["rounds"].append((time.perf_counter() - t) / args.train_steps)
        log(f"[{name}] train round {r + 1}/{args.rounds}: " + ", ".join(
            f"{v} {res['rows'][v]['rounds'][-1] * 1e3:.0f} ms/step" for v in ok))
    peaks = device_peaks(m)
    for v in ok:
        row = res["rows"][v]
        step_s = statistics.median(row["rounds"])
        row["step_s"] = step_s
        row["images_s"] = batch / step_s
        row["tflops"] = res["flops_step"] / step_s / 1e12
        key, peak = variant_peak(peaks, v)
        row["peak_key"], row["peak"] = key, peak
        row["util"] = row["tflops"] / peak if peak else None
        if dev == "cuda":
            row["mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    for tr in trainers.values():
        tr.opt.zero_grad(set_to_none=True)

    # Sampling: the EMA-free network in eval mode, each variant's own precision/layout.
    from raystudy.config import from_dict

    for sampler, total in (("ddim", 50), ("ddpm", cfg.model.num_train_timesteps)):
        gen_cfg = from_dict({"generate": {"sampler": sampler, "steps": total}}).generate
        sched = make_scheduler(gen_cfg, cfg.model)
        n_steps = len(sched.timesteps)
        timed = n_steps if args.sample_steps is None else min(n_steps, args.sample_steps)
        seeds = list(range(sbatch))
        for v in ok:
            tr = trainers[v]
            tr.net.eval()
            set_tf32(tr.tf32)
            model = tr.fwd
            try:
                t = time.perf_counter()
                sample_loop(model, sched, seeds, shape, dev, tr.bf16, tr.cl, max_steps=1)  # warm-up / compile
                sync(dev)
                warm = time.perf_counter() - t
                times = []
                for _ in range(args.sample_rounds):
                    t = time.perf_counter()
                    sample_loop(model, sched, seeds, shape, dev, tr.bf16, tr.cl, max_steps=timed)
                    sync(dev)
                    times.append((time.perf_counter() - t) / timed)
                per_step = statistics.median(times)
                res["rows"][v][f"{sampler}_samples_s"] = sbatch / (per_step * n_steps)
                res["rows"][v][f"{sampler}_timed"] = timed
                res["rows"][v][f"{sampler}_total"] = n_steps
                log(f"[{name}] {sampler} {v}: {per_step * 1e3:.1f} ms/step x {n_steps} steps "
                    f"({'measured' if timed == n_steps else f'extrapolated from {timed}'}; warm-up {warm:.1f} s)"
                    f" -> {sbatch / (per_step * n_steps):.2f} samples/s")
            except Exception as e:  # noqa: BLE001
                res["rows"][v][f"{sampler}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                log(f"[{name}] {sampler} {v}: FAILED {res['rows'][v][f'{sampler}_error']}")
            tr.net.train()
    del trainers
    return res


# -- the demo's CPU training step -----------------------------------------------------------

def demo_new_step_factory(cfg, images, threads: int, seed: int = 0, channels_last: bool = False):
    """The proposed loop: train_one's loop with fused AdamW, foreach grad clipping and foreach
    EMA (see the report). Returns (step, net)."""
    import torch
    from diffusers.training_utils import EMAModel

    from raystudy import model as models

    torch.manual_seed(seed)
    net = models.build(cfg.model, tuple(images.shape[1:]))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    alphas = models.build_train_scheduler(cfg.model).alphas_cumprod
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay, fused=True)
    ema = EMAModel(net.parameters(), decay=cfg.train.ema_decay, foreach=True)
    gen = torch.Generator().manual_seed(seed + 1)
    data = torch.from_numpy(images)
    net.train()

    def step():
        idx = torch.randint(0, len(images), (cfg.train.batch_size,), generator=gen)
        x0 = data[idx].contiguous(memory_format=torch.channels_last) if channels_last else data[idx]
        loss = models.loss(cfg.model, net, x0, gen, alphas, contextlib.nullcontext)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip, foreach=True)
        opt.step()
        ema.step(net.parameters())
        return loss.detach().item()

    return step, net


def demo_cpu(args, log) -> dict:
    """Where a demo training step's time goes on this CPU, and old vs new side by side."""
    import numpy as np
    import torch
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel

    from raystudy import model as models
    from raystudy.config import load
    from raystudy.datasets import load_dataset, training_images

    cfg = load(ROOT / "configs" / "demo.yaml")
    out = {"threads": args.demo_threads}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.demo_threads)
    images = np.ascontiguousarray(training_images(load_dataset(cfg.data), 128, cfg.study.seed), dtype=np.float32)
    mc, tc = cfg.model, cfg.train

    # 1. Phases of train_one's loop body, built exactly as train_one builds it.
    acc = Accelerator(mixed_precision="no", cpu=True)
    torch.manual_seed(0)
    net = models.build(mc, tuple(images.shape[1:]))
    alphas = models.build_train_scheduler(mc).alphas_cumprod.to(acc.device)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    ema = EMAModel(net.parameters(), decay=tc.ema_decay)
    net, opt = acc.prepare(net, opt)
    ema.to(acc.device)
    data = torch.from_numpy(images).to(acc.device)
    gen = torch.Generator().manual_seed(1)
    phases = ["batch", "forward+loss", "backward", "clip", "AdamW", "EMA", "item"]
    T = {p: [] for p in phases}
    net.train()
    for i in range(args.demo_profile_steps + 2):
        t = [time.perf_counter()]
        idx = torch.randint(0, len(images), (tc.batch_size,), generator=gen)
        x0 = data[idx.to(acc.device)]
        t.append(time.perf_counter())
        loss = models.loss(mc, net, x0, gen, alphas, acc.autocast)
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        t.append(time.perf_counter())
        acc.clip_grad_norm_(net.parameters(), tc.grad_clip)
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        ema.step(acc.unwrap_model(net).parameters())
        t.append(time.perf_counter())
        loss.detach().item()
        t.append(time.perf_counter())
        if i >= 2:
            for p, a, b in zip(phases, t, t[1:]):
                T[p].append(b - a)
    out["phases"] = {p: statistics.median(v) for p, v in T.items()}
    out["flops_step"] = None
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    with fc:
        acc.backward(models.loss(mc, net, x0, gen, alphas, acc.autocast))
    opt.zero_grad(set_to_none=True)
    out["flops_step"] = fc.get_total_flops()
    out["flops_by_op"] = {str(k): v for k, v in fc.get_flop_counts()["Global"].items()}
    out["n_params"] = sum(p.numel() for p in net.parameters())
    out["n_tensors"] = len(list(net.parameters()))

    # 2. Op classes (torch.profiler self CPU time over a few steps).
    from torch.profiler import ProfilerActivity, profile

    def one():
        idx = torch.randint(0, len(images), (tc.batch_size,), generator=gen)
        loss = models.loss(mc, net, data[idx], gen, alphas, acc.autocast)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(net.parameters(), tc.grad_clip)
        opt.step()
        ema.step(acc.unwrap_model(net).parameters())
        loss.item()

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            one()
    classes = {"convolution forward": ("mkldnn_convolution", "slow_conv", "thnn_conv"),
               "convolution backward": ("convolution_backward",),
               "group norm (fwd+bwd)": ("group_norm",),
               "matmul (linear, attention proj.)": ("aten::mm", "aten::addmm", "aten::bmm"),
               "attention (SDPA)": ("scaled_dot_product",),
               "SiLU (fwd+bwd)": ("silu",)}
    agg = {c: 0.0 for c in classes}
    total = 0.0
    for e in prof.key_averages():
        total += e.self_cpu_time_total
        for c, keys in classes.items():
            if any(k in e.key for k in keys):
                agg[c] += e.self_cpu_time_total
                break
    agg["everything else (elementwise, optimizer, EMA, copies, autograd)"] = total - sum(agg.values())
    out["op_classes"] = {c: v / total for c, v in agg.items()}

    # 3. Old (the real raystudy.train.train_one) vs new (variant loop), and layout/thread probes,
    # interleaved round by round.
    from raystudy.train import train_one

    steps = args.demo_steps
    ocfg = cfg.model_copy(update={"train": tc.model_copy(update={"images": steps * tc.batch_size,
                                                                  "checkpoint_every": 10**9})})
    new_step, _ = demo_new_step_factory(ocfg, images, args.demo_threads)

    def run_train_one():
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            train_one(ocfg, images, 128, 0, Path(d) / "m")
            return (time.perf_counter() - t) / steps

    # train_one's loop body, built as train_one builds it (Accelerator, default AdamW, EMAModel).
    acc = Accelerator(mixed_precision="no", cpu=True)
    torch.manual_seed(0)
    o_net = models.build(mc, tuple(images.shape[1:]))
    o_opt = torch.optim.AdamW(o_net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    o_ema = EMAModel(o_net.parameters(), decay=tc.ema_decay)
    o_net, o_opt = acc.prepare(o_net, o_opt)
    o_gen = torch.Generator().manual_seed(1)
    o_net.train()

    def old_step():
        idx = torch.randint(0, len(images), (tc.batch_size,), generator=o_gen)
        loss = models.loss(mc, o_net, data[idx.to(acc.device)], o_gen, alphas, acc.autocast)
        o_opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(o_net.parameters(), tc.grad_clip)
        o_opt.step()
        o_ema.step(acc.unwrap_model(o_net).parameters())
        loss.detach().item()

    new_cl_step, _ = demo_new_step_factory(ocfg, images, args.demo_threads, channels_last=True)

    def run_new():
        t = time.perf_counter()
        for _ in range(steps):
            new_step()
        return (time.perf_counter() - t) / steps

    # Interleaved step by step (old, new, probe, old, new, probe, ...): on a shared machine
    # whose load swings within seconds, each step of one loop has a neighbour of the others.
    runs = {"old: train_one's loop body": old_step, "new: fused AdamW + foreach clip/EMA": new_step,
            "probe: new + channels-last": new_cl_step}
    for f in runs.values():
        for _ in range(3):
            f()  # warm-up
    res = {k: [] for k in runs}
    n_total = steps * args.demo_rounds
    for i in range(n_total):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            res[k].append(time.perf_counter() - t)
        if (i + 1) % steps == 0:
            log(f"[demo-cpu] {i + 1}/{n_total} interleaved steps: " + ", ".join(
                f"{k.split(':')[0]} {statistics.median(v) * 1e3:.0f} ms/step (median so far)" for k, v in res.items()))
    old = res["old: train_one's loop body"]
    out["old_new"] = {k: {"median": statistics.median(v), "min": min(v), "mean": statistics.fmean(v),
                          "paired_ratio": statistics.median([o / x for o, x in zip(old, v)]),
                          "q": [statistics.quantiles([o / x for o, x in zip(old, v)], n=4)[i] for i in (0, 2)]}
                      for k, v in res.items()}
    out["steps"] = n_total
    out["rounds"] = args.demo_rounds
    # The real train_one, for reference (its fixed costs spread over `steps` steps; not interleaved).
    out["train_one_ref"] = run_train_one()

    # 4. Threads: one step at 1 and 2 threads (a Ray trial with cpus_per_trial=1 gets 1).
    thr = {}
    for n in sorted({1, 2, args.demo_threads}):
        torch.set_num_threads(n)
        thr[n] = min(run_new() for _ in range(2))
    out["threads_probe"] = thr
    torch.set_num_threads(old_threads)
    return out


# -- report ---------------------------------------------------------------------------------

def fmt(x, spec=".1f", none="-"):
    return none if x is None else format(x, spec)


def report(results, demo, m, args, cmd, wall, load0, load1) -> str:
    peaks = device_peaks(m)
    L = [f"# Training and sampling throughput: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
         f"device {m['device']} ({m['gpu']})", ""]
    L += [f"- Command: `{cmd}`", f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; "
          f"wall {wall / 60:.1f} min", f"- Load average before / after: {load0} ; {load1}",
          f"- torch threads: {m['torch_threads']}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
          "- Peak table: " + (f"{peaks['name']}: bf16 {peaks['bf16']:.0f}, TF32 {peaks['tf32']:.0f}, fp32 "
                               f"{peaks['fp32']:.1f} TFLOP/s dense" if peaks else "peak unknown (CPU or a GPU not in "
                               "the table): no utilisation figure"), ""]
    if m["device"] == "cpu":
        L += ["**No GPU here: the GPU run is still owed** (`python benchmarks/throughput.py --device cuda` on an "
              "H100/H200). CPU numbers use small batches (below) and are for the ratios; bf16 on a CPU without "
              "AVX512-BF16/AMX is emulated and slow, which says nothing about a GPU.", ""]
    L += ["Variants (measured in one run, interleaved round by round; rate = median round):", ""]
    for v in args.variants:
        L.append(f"- `{v}`: {VARIANT_TEXT[v]}")
    L += ["", "Training step = `raystudy.model.loss` + backward + grad-norm clip (1.0) + AdamW + EMA + "
          "`loss.item()` (train_one's loop body). FLOPs: `FlopCounterMode`, one forward+backward "
          "(optimizer/EMA not counted). DDPM/DDIM: the loop of `raystudy.generate.sample_images`, "
          "schedulers from `make_scheduler`.", ""]
    for r in results:
        L += [f"## {r['title']}: {r['params']:,} parameters", "",
              f"Training batch {r['batch']}, {r['flops_step'] / 1e9:.1f} GFLOP per step "
              f"({r['flops_step'] / r['batch'] / 1e9:.2f} GFLOP per image, forward+backward); sampling batch "
              f"{r['sample_batch']}.", ""]
        for n in r["notes"]:
            L.append(f"- {n}")
        L += ["", "| variant | train img/s | x fp32 | ms/step | achieved TFLOP/s | peak used | "
              "utilisation | DDIM-50 samples/s | x fp32 | DDPM-1000 samples/s | x fp32 | first step (s) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        base = r["rows"].get("fp32", {})
        for v, row in r["rows"].items():
            if "error" in row:
                L.append(f"| {v} | failed: {row['error']} |" + " |" * 11)
                continue

            def ratio(key):
                return fmt(row.get(key) / base[key], ".2f") if base.get(key) and row.get(key) else "-"

            def samp(s):
                if f"{s}_error" in row:
                    return "failed"
                x = row.get(f"{s}_samples_s")
                if x is None:
                    return "-"
                ext = "" if row[f"{s}_timed"] == row[f"{s}_total"] else f" (extrap. from {row[f'{s}_timed']} steps)"
                return f"{x:.3g}{ext}"
            util = "peak unknown" if row["util"] is None else f"{100 * row['util']:.1f}%"
            peak = "-" if row["peak"] is None else f"{row['peak_key']} {row['peak']:.0f}"
            L.append(f"| {v} | {row['images_s']:.1f} | {ratio('images_s')} | {row['step_s'] * 1e3:.0f} | "
                     f"{row['tflops']:.3f} | {peak} | {util} | {samp('ddim')} | {ratio('ddim_samples_s')} | "
                     f"{samp('ddpm')} | {ratio('ddpm_samples_s')} | {row['first_step_s']:.1f} |")
        if m["device"] == "cuda":
            L += ["", "Peak GPU memory (training, all variants so far): " + ", ".join(
                f"{v} {row['mem_gib']:.1f} GiB" for v, row in r["rows"].items() if "mem_gib" in row)]
        L += ["", "Per-round ms/step: " + "; ".join(
            f"{v}: " + ", ".join(f"{x * 1e3:.0f}" for x in row["rounds"])
            for v, row in r["rows"].items() if "rounds" in row), ""]
    if demo:
        L += demo_report(demo)
    return "\n".join(L) + "\n"


def demo_report(d) -> list[str]:
    ph = d["phases"]
    tot = sum(ph.values())
    L = [f"## The demo's CPU training step ({d['threads']} thread(s), as a Ray trial with cpus_per_trial=1 gets)",
         "", f"Model: {d['n_params']:,} parameters in {d['n_tensors']} tensors; batch 128 of 8x8x1; "
         f"{d['flops_step'] / 1e9:.1f} GFLOP per step forward+backward ("
         + ", ".join(f"{k.replace('aten.', '')} {v / 1e9:.2f}" for k, v in d["flops_by_op"].items())
         + f"): {d['flops_step'] / tot / 1e9:.0f} GFLOP/s achieved at the median step.", "",
         "Phases of train_one's loop body (median over steps, Accelerator(cpu=True, mixed_precision='no') "
         "as train_one builds it):", "", "| phase | ms | share |", "|---|---|---|"]
    for p, v in ph.items():
        L.append(f"| {p} | {v * 1e3:.1f} | {100 * v / tot:.0f}% |")
    L += [f"| total | {tot * 1e3:.1f} | 100% |", "", "Op classes (torch.profiler, self CPU time, 3 steps):", "",
          "| ops | share |", "|---|---|"]
    for c, v in d["op_classes"].items():
        L.append(f"| {c} | {100 * v:.0f}% |")
    L += ["", f"Side by side: {d['steps']} steps of each loop, interleaved step by step (old, new, probe, old, ...)"
          f", 1 thread; ms per step:", "",
          "| loop | median | mean | min | speed-up vs old: ratio of medians | median of paired ratios "
          "(quartiles) |", "|---|---|---|---|---|---|"]
    old = d["old_new"]["old: train_one's loop body"]["median"]
    for k, v in d["old_new"].items():
        L.append(f"| {k} | {v['median'] * 1e3:.0f} | {v['mean'] * 1e3:.0f} | {v['min'] * 1e3:.0f} | "
                 f"{old / v['median']:.2f} | {v['paired_ratio']:.2f} ({v['q'][0]:.2f}-{v['q'][1]:.2f}) |")
    L += ["", "`old` is train_one's loop body built as train_one builds it (Accelerator(cpu=True), AdamW default, "
          "diffusers EMAModel default, acc.clip_grad_norm_); `new` the same body with AdamW(fused=True), "
          "EMAModel(foreach=True) and torch's foreach grad clipping. For reference, the real "
          f"`raystudy.train.train_one` for {d['steps'] // max(1, d.get('rounds', 1))} steps, fixed costs included, "
          f"ran at {d['train_one_ref'] * 1e3:.0f} ms/step (measured once, not interleaved).", "",
          "Threads (the `new` loop, best of 2): " + ", ".join(f"{n} thread(s) {v * 1e3:.0f} ms/step"
                                                              for n, v in d["threads_probe"].items()), ""]
    return L


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Writes benchmarks/results/throughput-<machine>.md. Nothing here asserts a speed.")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where to run (default: cuda if available, else cpu)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny batches, 1 round, few sampling steps")
    p.add_argument("--models", default="cifar,demo", help="comma list of cifar, demo (default: both)")
    p.add_argument("--variants", default="fp32,bf16,tf32,fast,compile",
                   help="comma list of fp32 (TF32 off), bf16 (autocast), tf32 (fp32 + TF32 + channels-last + fused "
                        "AdamW), fast (bf16 + channels-last + TF32 + fused AdamW), compile (fast + torch.compile) "
                        "(default: all)")
    p.add_argument("--bf16-models", default=None,
                   help="models the bf16 variants (bf16, fast, compile) run for (default: cifar,demo on cuda; demo "
                        "on cpu, where bf16 is emulated and a CIFAR step takes minutes)")
    p.add_argument("--compile-models", default=None,
                   help="models the compile variant runs for (default: cifar,demo on cuda; none on cpu, where "
                        "inductor takes minutes to compile a UNet's backward on 2 cores)")
    p.add_argument("--cifar-batch", type=int, default=None, help="CIFAR training batch (default: 128 cuda, 4 cpu)")
    p.add_argument("--demo-batch", type=int, default=128, help="demo training batch (default 128, the demo's)")
    p.add_argument("--cifar-sample-batch", type=int, default=None,
                   help="CIFAR sampling batch (default: 256 cuda, 8 cpu)")
    p.add_argument("--demo-sample-batch", type=int, default=None,
                   help="demo sampling batch (default: 1000 cuda, 100 cpu (the demo's generate.batch_size))")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per variant (default 3 cuda, 1 cpu)")
    p.add_argument("--train-steps", type=int, default=None, help="steps per timed round (default 20 cuda, 2 cpu)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per variant (default 3)")
    p.add_argument("--sample-steps", type=int, default=None,
                   help="sampling steps timed per run; fewer than the sampler's steps are extrapolated and the "
                        "table says so (default: all on cuda, 3 on cpu)")
    p.add_argument("--sample-rounds", type=int, default=None, help="timed sampling runs per variant (default 2 cuda, 1 cpu)")
    p.add_argument("--demo-cpu", choices=["auto", "yes", "no"], default="auto",
                   help="the demo CPU-step profile and old-vs-new comparison (default: on when --device cpu)")
    p.add_argument("--demo-threads", type=int, default=1,
                   help="torch threads for --demo-cpu (default 1: what a Ray trial with cpus_per_trial=1 gets)")
    p.add_argument("--demo-steps", type=int, default=None, help="--demo-cpu: steps per round (default 30)")
    p.add_argument("--demo-rounds", type=int, default=None, help="--demo-cpu: interleaved rounds (default 3)")
    p.add_argument("--demo-profile-steps", type=int, default=None, help="--demo-cpu: steps in the phase profile (default 20)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the model table (default: torch's)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="where the results file goes")
    args = p.parse_args(argv)

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no GPU visible to torch")
    cuda = args.device == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    args.models = [s for s in args.models.split(",") if s]
    args.variants = [s for s in args.variants.split(",") if s]
    bad = [v for v in args.variants if v not in VARIANTS] + [s for s in args.models if s not in ("cifar", "demo")]
    if bad:
        p.error(f"unknown model/variant {bad}")
    args.compile_models = (args.compile_models.split(",") if args.compile_models is not None
                           else (["cifar", "demo"] if cuda else []))
    args.bf16_models = (args.bf16_models.split(",") if args.bf16_models is not None
                        else (["cifar", "demo"] if cuda else ["demo"]))
    d = lambda x, gpu, cpu, quick=None: x if x is not None else (quick if q and quick is not None else (gpu if cuda else cpu))  # noqa: E731
    args.cifar_batch = d(args.cifar_batch, 128, 4, 2 if not cuda else 32)
    args.cifar_sample_batch = d(args.cifar_sample_batch, 256, 8, 4 if not cuda else 64)
    args.demo_sample_batch = d(args.demo_sample_batch, 1000, 100)
    args.warmup = d(args.warmup, 3, 1)
    args.train_steps = d(args.train_steps, 20, 2, 5 if cuda else 1)
    args.rounds = d(args.rounds, 3, 3, 1)
    args.sample_steps = args.sample_steps if args.sample_steps is not None else (
        (20 if q else None) if cuda else (2 if q else 3))
    args.sample_rounds = d(args.sample_rounds, 2, 1, 1)
    args.demo_steps = d(args.demo_steps, 30, 30, 5)
    args.demo_rounds = d(args.demo_rounds, 3, 3, 1)
    args.demo_profile_steps = d(args.demo_profile_steps, 20, 20, 4)
    run_demo = args.demo_cpu == "yes" or (args.demo_cpu == "auto" and not cuda)

    m = machine(args.device)
    t0, load0 = time.time(), loadavg()

    def log(s):
        print(f"[{time.time() - t0:6.0f}s] {s}", flush=True)

    log(f"{m}")
    specs = model_specs()
    results = [bench_model(n, specs[n], args, m, log) for n in args.models]
    demo = demo_cpu(args, log) if run_demo else None
    wall, load1 = time.time() - t0, loadavg()
    cmd = "python benchmarks/throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(results, demo, m, args, cmd.strip(), wall, load0, load1)
    write_results(args.out_dir, f"throughput-{machine_slug(m)}{'-quick' if q else ''}", text, log)


if __name__ == "__main__":
    main()
