"""What the loss curves cost: the share of a run's training time that its ``train.gap_evals``
evaluations take (raystudy.onset, ``compute.losses.LossProbe``), on a config's settings.

    .venv/bin/python benchmarks/onset.py                  # the demo's settings, K = 8
    .venv/bin/python benchmarks/onset.py --full           # and two whole runs, with and without

Two measurements on one machine, side by side:

* **parts**: the mean time of a training step (``compute.train.train_step`` on the config's
  network, batch and optimiser, after a warm-up) and of one evaluation of the EMA weights
  (``compute.losses.ema_losses``), then ``gap_evals x evaluation / (steps x step)``;
* **whole runs** (``--full``): ``train_one`` of the config's run with its loss curves and with
  ``train.gap_evals=0``, in that order and again in the other order, so a drift of the
  machine's speed does not favour either side.

Writes benchmarks/results/onset-<machine>.md (``--out-dir``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import loadavg, machine, machine_slug, write_results  # noqa: E402  (benchmarks/machine.py)


def parts(cfg, images, held, k: int, n_steps: int, n_evals: int) -> dict:
    """Seconds per training step and per evaluation of the loss curves, measured in turn."""
    from raystudy.compute.losses import LossProbe, ema_losses
    from raystudy.compute.train import build_trainer
    from raystudy.splits import run_seed

    tc = cfg.train
    total = math.ceil(tc.images / tc.batch_size)
    tr = build_trainer(cfg, tuple(images.shape[1:]), k, 0, total)
    tr.prepare()
    import torch

    data = torch.from_numpy(np.ascontiguousarray(images))
    probe = LossProbe(images, held, tr.alphas.cpu(), tc.gap_images, tc.gap_levels, seed=run_seed(cfg.study.seed, k, 0))

    def step():
        idx = torch.randint(0, len(images), (tc.batch_size,), generator=tr.gen)
        tr.step(data[idx])

    for _ in range(10):  # warm-up: first calls allocate
        step()
    ema_losses(probe, tr.acc.unwrap_model(tr.net), tr.ema)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        step()
    per_step = (time.perf_counter() - t0) / n_steps
    t0 = time.perf_counter()
    for _ in range(n_evals):
        ema_losses(probe, tr.acc.unwrap_model(tr.net), tr.ema)
    per_eval = (time.perf_counter() - t0) / n_evals
    return {"per_step": per_step, "per_eval": per_eval, "steps": total, "evals": tc.gap_evals,
            "share": tc.gap_evals * per_eval / (total * per_step), "items": 2 * probe.n_train * tc.gap_levels}


def whole(cfg, images, held, k: int) -> dict:
    """Wall seconds of the run with its loss curves and without, in the order with, without,
    without, with."""
    from raystudy.compute.train import train_one

    off = cfg.model_copy(update={"train": cfg.train.model_copy(update={"gap_evals": 0})})
    walls = {"with": [], "without": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, c) in enumerate((("with", cfg), ("without", off), ("without", off), ("with", cfg))):
            t0 = time.perf_counter()
            train_one(c, images, k, 0, Path(tmp) / f"run{i}", held_out=held if name == "with" else None)
            walls[name].append(time.perf_counter() - t0)
    w, wo = sum(walls["with"]), sum(walls["without"])
    return {"with": walls["with"], "without": walls["without"], "share": (w - wo) / wo}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="demo", help="the study config whose training settings are measured (default: demo)")
    p.add_argument("--k", type=int, default=8, help="the run's K (default 8)")
    p.add_argument("--steps", type=int, default=100, help="training steps timed for the parts (default 100)")
    p.add_argument("--evals", type=int, default=10, help="evaluations timed for the parts (default 10)")
    p.add_argument("--full", action="store_true", help="also time whole runs with and without the loss curves (4 runs)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="where the results file goes")
    args = p.parse_args(argv)

    from raystudy.axes import DEFAULT
    from raystudy.compute.losses import held_out_images
    from raystudy.config import load_config
    from raystudy.datasets import load_dataset
    from raystudy.splits import kset

    cfg = load_config(args.config)
    dataset = load_dataset(cfg.data)
    images = np.asarray(dataset.images(kset(cfg, dataset, DEFAULT, args.k)))
    held = held_out_images(cfg, dataset)
    m = machine()
    load0, t0 = loadavg(), time.time()
    res = parts(cfg, images, held, args.k, args.steps, args.evals)
    full = whole(cfg, images, held, args.k) if args.full else None
    tc = cfg.train
    lines = [f"# The loss curves' cost ({args.config}, K = {args.k})", "",
             f"- machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['gpu']}, "
             f"{m['torch_threads']} torch threads",
             "- command: `" + " ".join([".venv/bin/python benchmarks/onset.py",
                                        *(argv if argv is not None else sys.argv[1:])]) + "`",
             f"- date: {dt.date.today().isoformat()}; load average before {load0}, after {loadavg()}; "
             f"{time.time() - t0:.0f} s in all", "",
             f"Settings: batch {tc.batch_size}, {res['steps']} steps, `gap_evals` {tc.gap_evals}, `gap_images` "
             f"{tc.gap_images}, `gap_levels` {tc.gap_levels} ({res['items']} model inputs per evaluation).", "",
             "| measurement | value |", "|---|---:|",
             f"| training step (mean of {args.steps}) | {res['per_step'] * 1e3:.1f} ms |",
             f"| one evaluation of the loss curves (mean of {args.evals}) | {res['per_eval'] * 1e3:.1f} ms |",
             f"| **share of training time** (evals x evaluation / steps x step) | **{100 * res['share']:.1f}%** |"]
    if full is not None:
        lines += [f"| whole run with the curves (two runs) | {' s, '.join(f'{w:.1f}' for w in full['with'])} s |",
                  f"| whole run without (two runs) | {' s, '.join(f'{w:.1f}' for w in full['without'])} s |",
                  f"| **share, whole runs** (with - without) / without | **{100 * full['share']:.1f}%** |"]
    write_results(args.out_dir, f"onset-{machine_slug(m)}", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
