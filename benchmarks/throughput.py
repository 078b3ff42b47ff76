"""Training and sampling throughput of the study's UNets, timing the code a study runs.

    python benchmarks/throughput.py --device cuda            # on a GPU machine: the full table
    python benchmarks/throughput.py --device cpu --quick     # a smoke run on a laptop

For the paper's CIFAR-10 UNet (block_out_channels 128,256,256,256, 2 res blocks per level,
attention at 16x16, 35.7M parameters, 32x32x3) and the demo's UNet (configs/demo.yaml:
32,64, 8x8x1), and for each variant (a set of ``train`` config options):

* training images/s of ``raystudy.compute.train.Trainer.step`` (``train_step``: loss, backward,
  grad-norm clip, AdamW, EMA) built by ``train.build_trainer`` from the config, timed with
  ``torch.utils.benchmark.Timer.blocked_autorange`` after warm-up steps (so compile time is
  excluded and reported separately as the first step's time);
* the step's FLOPs (``torch.utils.flop_counter.FlopCounterMode``, one forward+backward), the
  achieved FLOP/s and, on a known GPU, the fraction of its dense peak (MFU);
* DDIM sampling samples/s through ``raystudy.compute.generate.sample_images`` with the variant's
  autocast; ``--sample-steps`` steps are timed and the per-step time gives DDIM-50 and
  DDPM-1000 rates (both are one UNet call per step).

Writes benchmarks/results/throughput-<machine>.md (``-quick`` for --quick).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as benchmarks/run.py: no spinning partners on a shared box

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from machine import loadavg, machine, machine_slug, write_results  # noqa: E402

# Dense peak TFLOP/s (no sparsity), NVIDIA datasheets; first pattern found in the device name wins.
PEAKS = [("H200 NVL", 835.0, 60.0), ("H200", 989.4, 66.9), ("H100 NVL", 835.0, 60.0),
         ("H100 PCIe", 756.0, 51.2), ("H100", 989.4, 66.9), ("A100", 312.0, 19.5)]

# name: train config overrides (the options a study sets in its YAML).
VARIANTS = {
    "fp32": ["train.mixed_precision='no'"],
    "bf16": ["train.mixed_precision=bf16"],
    "bf16-cl": ["train.mixed_precision=bf16", "train.channels_last=true", "train.tf32=true", "train.fused_adam=true"],
    "compile": ["train.mixed_precision=bf16", "train.channels_last=true", "train.tf32=true", "train.fused_adam=true",
                "train.compile=true"],
}


def model_cfgs():
    from raystudy.config import from_dict, load_config

    cifar = {"model": {"type": "unet", "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
                       "attention": [False, True, False, False], "norm_num_groups": 32}}
    return {"cifar": ("CIFAR-10 UNet (paper)", lambda o: from_dict(cifar, o), (3, 32, 32)),
            "demo": ("demo UNet (configs/demo.yaml)", lambda o: load_config(ROOT / "configs" / "demo.yaml", o), (1, 8, 8))}


def peak_tflops(m: dict, variant: str) -> float | None:
    if m["device"] != "cuda":
        return None
    for pat, bf16, fp32 in PEAKS:
        if pat.lower() in m["gpu"].lower():
            return bf16 if variant != "fp32" else fp32
    return None


def train_rate(cfg, shape, device: str, batch: int, min_time: float) -> dict:
    """Images/s of the study's own training step for ``cfg`` at ``batch`` images."""
    import torch
    from torch.utils import benchmark
    from torch.utils.flop_counter import FlopCounterMode

    from raystudy.compute.train import build_trainer
    from raystudy.models import unet

    tr = build_trainer(cfg, shape, 2, 0, total_steps=10 ** 6)
    tr.prepare()
    x0 = torch.randn((batch, *shape), device=tr.acc.device)
    with FlopCounterMode(display=False) as fc:
        unet.loss(cfg.model, tr.net, x0, tr.gen, tr.alphas, tr.acc.autocast).backward()
    tr.opt.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    tr.step(x0)  # the first step pays for compilation, cuDNN autotuning, allocations
    first = time.perf_counter() - t0
    tr.step(x0)
    m = benchmark.Timer("tr.step(x0)", globals={"tr": tr, "x0": x0}).blocked_autorange(min_run_time=min_time)
    return {"img_s": batch / m.median, "ms_step": 1e3 * m.median, "first_s": first, "gflop_step": fc.get_total_flops() / 1e9,
            "runs": len(m.times)}


def sample_rate(cfg, shape, device: str, batch: int, steps: int) -> float:
    """Seconds per sampling step for ``batch`` samples (one UNet call per step)."""
    import torch
    from diffusers import DDIMScheduler

    from raystudy.compute.generate import sample_images
    from raystudy.compute.train import mixed_precision
    from raystudy.models import unet

    net = unet.build_unet(cfg.model, shape).to(device).eval()
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last)
    sched = DDIMScheduler.from_config(unet.build_train_scheduler(cfg.model).config)
    sched.set_timesteps(steps)
    dtype = torch.bfloat16 if mixed_precision(cfg.train.mixed_precision, device == "cuda") == "bf16" else None
    seeds = list(range(batch))
    sample_images(net, sched, seeds, shape, device, dtype)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    sample_images(net, sched, seeds, shape, device, dtype)
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--models", default="cifar,demo", help="comma-separated: cifar, demo")
    p.add_argument("--variants", default=None, help=f"comma-separated of {', '.join(VARIANTS)} "
                   "(default: all on cuda; fp32 on cpu, where bf16 is emulated and ~10x slower)")
    p.add_argument("--batch", type=int, default=None, help="training batch (default 128 on cuda, 4 on cpu)")
    p.add_argument("--sample-batch", type=int, default=None, help="sampling batch (default 256 on cuda, 8 on cpu)")
    p.add_argument("--sample-steps", type=int, default=None, help="DDIM steps timed (default 50 on cuda, 3 on cpu)")
    p.add_argument("--min-time", type=float, default=None, help="seconds of timed training steps per variant")
    p.add_argument("--quick", action="store_true", help="demo model, fp32, tiny sizes: a smoke run")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for the results file")
    a = p.parse_args(argv)
    import torch

    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev == "cuda"
    variants = (a.variants.split(",") if a.variants else list(VARIANTS) if cuda else ["fp32"])
    models = ["demo"] if a.quick else a.models.split(",")
    batch = a.batch or (128 if cuda else 4)
    sbatch = a.sample_batch or (256 if cuda else 8)
    ssteps = a.sample_steps or (50 if cuda else (2 if a.quick else 3))
    min_time = a.min_time or (2.0 if cuda else (0.5 if a.quick else 5.0))
    m = machine(dev)
    load0, t_all = loadavg(), time.time()
    lines = [f"# Training and sampling throughput: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['gpu']}",
             "", f"- Command: `python benchmarks/throughput.py {' '.join(argv or sys.argv[1:])}`",
             f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; device {dev}",
             f"- Training: `raystudy.compute.train.Trainer.step` built by `train.build_trainer` (the study's code), batch "
             f"{batch}, `torch.utils.benchmark` blocked_autorange (median); sampling: `raystudy.compute.generate.sample_images`"
             f" (DDIM), batch {sbatch}, {ssteps} steps timed, per-step time x 50 / x 1000.", ""]
    for name in models:
        title, make, shape = model_cfgs()[name]
        lines += [f"## {title}", "", "| variant | options | train img/s | x fp32 | ms/step | GFLOP/step | TFLOP/s | MFU "
                  "| first step (s) | DDIM-50 samples/s | DDPM-1000 samples/s |", "|" + "---|" * 11]
        base = None
        for v in variants:
            cfg = make(VARIANTS[v])
            r = train_rate(cfg, shape, dev, batch, min_time)
            s_step = sample_rate(cfg, shape, dev, sbatch, ssteps)
            base = base or r["img_s"]
            tflops = r["gflop_step"] * 1e-3 / (r["ms_step"] * 1e-3)
            peak = peak_tflops(m, v)
            mfu = f"{tflops / peak:.1%}" if peak else "peak unknown"
            lines.append(f"| {v} | {' '.join(o.split('.', 1)[1] for o in VARIANTS[v])} | {r['img_s']:.1f} | "
                         f"{r['img_s'] / base:.2f} | {r['ms_step']:.1f} | {r['gflop_step']:.1f} | {tflops:.3f} | {mfu} | "
                         f"{r['first_s']:.1f} | {sbatch / (50 * s_step):.2f} | {sbatch / (1000 * s_step):.3f} |")
            print(lines[-1], flush=True)
        lines.append("")
    lines += [f"Load average before / after: {load0} ; {loadavg()}; wall {time.time() - t_all:.0f} s.", ""]
    name = f"throughput-{machine_slug(m)}" + ("-quick" if a.quick else "")
    write_results(a.out, name, "\n".join(lines))


if __name__ == "__main__":
    main()
