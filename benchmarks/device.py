"""One prepared device check: what a GPU box does with raystudy's own code, in one results file.

    python benchmarks/device.py --wheels ../wheels            # on the GPU box (cuda), ~5-8 min
    python benchmarks/device.py --device cpu --small          # anywhere, in seconds (tests run this)

The box is expected to have Python 3.12 with torch, torchvision and accelerate. Whatever
else the check imports and the box lacks (diffusers, faiss-cpu, lpips, pyarrow, pydantic,
pyyaml, scikit-learn, ...) is installed from the wheels in ``--wheels DIR`` (a folder carried
beside the checkout: ``pip install --no-index --find-links DIR --target TARGET``, versions
pinned by constraints.txt) into ``--target`` and put on sys.path; nothing is fetched.
Ray is not needed: every part calls the package's functions directly.

Parts (each timed; a part that fails writes its error into the file and the rest go on):

* train: images/s of ``raystudy.compute.train.train_one`` on the UNet of configs/cifar10.yaml (random
  images), fp32 vs bf16 (``train.mixed_precision``) vs bf16 + channels-last
  (``train.channels_last``), the rate taken between two runs of
  different lengths (so start-up and the first steps' autotuning cancel), and the model
  FLOP utilisation against the device's dense bf16 peak (FLOPs of one training step by
  ``torch.utils.flop_counter``, peaks from benchmarks/throughput.py's table);
* sample: DDIM-50 samples/s of ``raystudy.compute.generate.sample_images`` with that UNet, fp32 and
  bf16 autocast;
* lpips: LPIPS-alex exact top-5 (``raystudy.metrics.lpips`` on the device, then
  ``raystudy.metrics.search.knn_search(backend="torch")`` on the device): embed and search time of
  ``--lpips-queries`` samples against ``--lpips-refs`` training images (random images).
  Against the CPU path on a subset (``--agree``) queries: the FAISS search of the same
  embeddings (must be identical) and the CPU embedding + FAISS (top-5 agreement; the
  backbone's convolutions round differently on the two devices), with the CPU's times;
* precision: bf16 sampling's label changes, as benchmarks/precision_check.py (demo UNet
  trained by ``train_one`` on K = 32 digits, eval samples in fp32 and bf16 from the same
  seeds, labelled by ``raystudy.compute.classify.label_samples`` against the K-set and an fp32 ref
  set; ``precision_check.paired_labels`` itself).

LPIPS weights: with ``--weights-dir`` holding torchvision's alexnet-owt-7be5be79.pth (or it
in torch's hub cache) the real backbone is used; otherwise ``pnet_rand=True`` (random
backbone: the same cost, other distances) and the file says so.

``--small`` shrinks every part to seconds (tiny UNet, few steps and samples), for a test.
Writes benchmarks/results/device-<machine>[-small].md (``--out-dir``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# import name -> distribution, for what the check imports beyond torch/torchvision/accelerate.
NEEDED = {"numpy": "numpy", "yaml": "pyyaml", "pydantic": "pydantic", "pyarrow": "pyarrow", "diffusers": "diffusers",
          "faiss": "faiss-cpu", "lpips": "lpips", "scipy": "scipy", "sklearn": "scikit-learn", "tqdm": "tqdm",
          "pandas": "pandas", "matplotlib": "matplotlib"}


def bootstrap(wheels: Path | None, target: Path, log) -> list[str]:
    """Install the missing distributions from ``wheels`` into ``target``; returns what was installed.

    A folder made by benchmarks/wheels.py names its wheels in ``requirements.txt`` (the whole
    closure but the box's torch stack): the ones the box lacks are installed with ``--no-deps``,
    since a resolving pip would go after torch (lpips requires it) with no index to find it in."""
    from importlib import metadata

    missing = [dist for mod, dist in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if not missing:
        return []
    if wheels is None:
        raise SystemExit(f"missing {', '.join(missing)}: pass --wheels DIR (a folder of their wheels, "
                         f"made by benchmarks/wheels.py)")
    listed = wheels / "requirements.txt"
    if listed.exists():
        reqs = []
        for line in listed.read_text().split():
            try:
                metadata.distribution(line.split("==")[0])
            except metadata.PackageNotFoundError:
                reqs.append(line)
        no_deps = ["--no-deps"]
    else:
        pins = {}
        for line in (ROOT / "constraints.txt").read_text().splitlines():
            if "==" in line and not line.lstrip().startswith("#"):
                name, ver = line.split("==", 1)
                pins[name.strip().lower()] = ver.strip()
        reqs, no_deps = [f"{d}=={pins[d]}" if d in pins else d for d in missing], []
    log(f"installing from {wheels}: {' '.join(reqs)}")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
                    "--target", str(target), "--no-warn-script-location", *no_deps, *reqs], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    return reqs


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


# -- parts ---------------------------------------------------------------------------------

def cifar_cfg(small: bool, batch: int | None):
    from raystudy.config import load_config

    over = ["data.name=digits"]  # the data section is not used: train_one gets the images
    if small:
        over += ["model.block_out_channels=[16,32]", "model.attention=[false,true]", "model.layers_per_block=1",
                 "model.norm_num_groups=8"]
    cfg = load_config(ROOT / "configs" / "cifar10.yaml", over)
    return cfg, (batch or (4 if small else cfg.train.batch_size)), ((3, 16, 16) if small else (3, 32, 32))


def part_train(dev, args, log) -> dict:
    import numpy as np
    import torch
    from accelerate.state import AcceleratorState
    from torch.utils.flop_counter import FlopCounterMode

    from raystudy.compute.train import train_one
    from raystudy.models import unet

    cfg, batch, shape = cifar_cfg(args.small, args.train_batch)
    images = np.random.default_rng(0).uniform(-1, 1, size=(256, *shape)).astype(np.float32)
    s1, s2 = (1, 3) if args.small else (5, args.train_steps)
    out = {"batch": batch, "shape": shape, "steps": (s1, s2), "params": None, "variants": {}}
    for name, mp, cl in (("fp32", "no", False), ("bf16", "bf16", False), ("bf16 + channels-last", "bf16", True)):
        walls = []
        for steps in (s1, s2):
            c = cfg.model_copy(update={"train": cfg.train.model_copy(update={
                "images": steps * batch, "batch_size": batch, "mixed_precision": mp, "channels_last": cl,
                "checkpoint_every": 10 ** 12})})
            # Accelerate keeps one process-wide state whose mixed precision cannot change:
            # clear it so this run's Accelerator is built from its own config.
            AcceleratorState._reset_state(True)
            with tempfile.TemporaryDirectory() as d:
                walls.append(train_one(c, images, 2, 0, Path(d) / "m")["wall_s"])
        rate = (s2 - s1) * batch / max(walls[1] - walls[0], 1e-9)
        out["variants"][name] = {"images_per_s": rate, "walls": walls}
        log(f"[train] {name}: {rate:.1f} images/s ({s1} and {s2} steps: {walls[0]:.2f} s, {walls[1]:.2f} s)")
    net = unet.build(cfg.model, shape, seed=0).to(dev)
    out["params"] = sum(p.numel() for p in net.parameters())
    alphas = unet.build_train_scheduler(cfg.model).alphas_cumprod.to(dev)
    x0 = torch.from_numpy(images[:batch]).to(dev)
    fc = FlopCounterMode(display=False)
    with fc:
        unet.loss(cfg.model, net, x0, torch.Generator().manual_seed(0), alphas, contextlib.nullcontext).backward()
    out["flops_per_image"] = fc.get_total_flops() / batch
    return out


def part_sample(dev, args, log) -> dict:
    import torch

    from raystudy.compute.generate import make_scheduler, sample_images
    from raystudy.models import unet

    cfg, _, shape = cifar_cfg(args.small, None)
    gen_cfg = cfg.generate.model_copy(update={"sampler": "ddim", "steps": 3 if args.small else 50})
    sched = make_scheduler(gen_cfg, cfg.model)
    net = unet.build(cfg.model, shape, seed=0).to(dev).eval()
    n = 2 if args.small else args.sample_batch
    out = {"n": n, "steps": len(sched.timesteps)}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        sample_images(net, sched, range(min(n, 2)), shape, dev, dtype)  # warm-up
        sync(dev)
        t0 = time.perf_counter()
        sample_images(net, sched, range(n), shape, dev, dtype)
        sync(dev)
        wall = time.perf_counter() - t0
        out[name] = n / wall
        log(f"[sample] DDIM-{out['steps']} {name}: {n / wall:.2f} samples/s ({n} in {wall:.2f} s)")
    return out


def part_lpips(dev, args, log) -> dict:
    import numpy as np
    import torch

    from raystudy.errors import WeightsMissing
    from raystudy.metrics.lpips import LpipsEmbedding
    from raystudy.metrics.search import knn_search

    try:
        emb = LpipsEmbedding("alex", weights_dir=args.weights_dir, device=dev, download=False)
    except WeightsMissing:
        torch.manual_seed(0)
        emb = LpipsEmbedding("alex", device=dev, pnet_rand=True)
    n_r, n_q = (300, 200) if args.small else (args.lpips_refs, args.lpips_queries)
    agree = min(n_q, 64 if args.small else args.agree)
    rng = np.random.default_rng(1)
    refs = rng.uniform(-1, 1, size=(n_r, 3, 32, 32)).astype(np.float32)
    qs = rng.uniform(-1, 1, size=(n_q, 3, 32, 32)).astype(np.float32)
    emb.embed(qs[:8])  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    er, eq = emb.embed(refs), emb.embed(qs)
    sync(dev)
    t1 = time.perf_counter()
    cache: dict = {}
    st: dict = {}
    d, i = knn_search(eq, er, 5, backend="torch", device=dev, cache=cache, stats=st)
    sync(dev)
    t2 = time.perf_counter()
    out = {"weights": emb.weights_source, "refs": n_r, "queries": n_q, "dim": er.shape[1],
           "embed_s": t1 - t0, "search_s": t2 - t1, "stats": st, "agree_n": agree}
    log(f"[lpips] {dev}: embed {n_r + n_q} images {t1 - t0:.2f} s, search {n_q} x {n_r} {t2 - t1:.2f} s {st}")
    # The CPU path on a subset: FAISS on the same embeddings, then CPU embeddings + FAISS.
    knn_search(eq[:2], er[:10], 5)  # FAISS's import and thread pool, not timed
    t0 = time.perf_counter()
    d_f, i_f = knn_search(eq[:agree], er, 5)
    out["faiss_same_emb_s"] = time.perf_counter() - t0
    out["same_emb_identical"] = bool(np.array_equal(i_f, i[:agree]) and np.array_equal(d_f, d[:agree]))
    cpu = emb if dev.type == "cpu" else LpipsEmbedding("alex", device="cpu", pnet_rand=True)
    if cpu is not emb:
        cpu.model.load_state_dict(emb.model.state_dict())
    t0 = time.perf_counter()
    er_c, eq_c = cpu.embed(refs), cpu.embed(qs[:agree])
    t1 = time.perf_counter()
    d_c, i_c = knn_search(eq_c, er_c, 5)
    t2 = time.perf_counter()
    out.update(cpu_embed_s=t1 - t0, cpu_search_s=t2 - t1,
               top5_identical=float(np.mean((i_c == i[:agree]).all(1))),
               top5_same_set=float(np.mean([set(a) == set(b) for a, b in zip(i_c, i[:agree])])),
               top1_identical=float(np.mean(i_c[:, 0] == i[:agree, 0])),
               max_abs_dlpips=float(np.abs(d_c - d[:agree]).max()))
    log(f"[lpips] cpu path on {agree} queries: embed {t1 - t0:.2f} s, FAISS {t2 - t1:.2f} s; top-5 identical "
        f"{out['top5_identical']:.3f}; same embeddings identical: {out['same_emb_identical']}")
    return out


def part_precision(dev, args, log) -> dict:
    import numpy as np
    from accelerate.state import AcceleratorState
    from precision_check import LABELS, demo_config, paired_labels

    steps, n = (3, 16) if args.small else (args.precision_steps, args.precision_n)
    cfg = demo_config(steps, "ddim", 3 if args.small else 50)
    AcceleratorState._reset_state(True)
    r = paired_labels(cfg, 32, n, dev, batch=n, log=lambda s: log(f"[precision] {s}"))
    a, b = r["res"]["fp32"]["labels"], r["res"]["bf16"]["labels"]
    ev32, ev16 = r["imgs"]["fp32", "eval"], r["imgs"]["bf16", "eval"]
    out = {"n": n, "train_steps": steps, "changed": int((a != b).sum()),
           "fractions": {lab: (float(np.mean(a == lab)), float(np.mean(b == lab))) for lab in LABELS},
           "max_pixel_diff": float(np.abs(ev32 - ev16).max())}
    log(f"[precision] {out['changed']} of {n} labels changed fp32 -> bf16")
    return out


# -- report --------------------------------------------------------------------------------

def report(res: dict, m: dict, args, cmd: str, wall: float, installed: list[str]) -> str:
    sys.path.insert(0, str(HERE))
    from throughput import PEAKS

    peak = next((p for p in PEAKS if p[0].lower() in m["gpu"].lower()), None) if m["device"] == "cuda" else None
    L = [f"# Device check: {m['device']} ({m['gpu'] if m['device'] == 'cuda' else m['cpu']})", "",
         f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, GPU: {m['gpu']}; device used: **{m['device']}**.",
         f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}. Command: `{cmd}` ({wall:.0f} s wall)."
         + (" **--small: tiny sizes, a smoke run, not a measurement.**" if args.small else ""),
         f"Installed from wheels: {', '.join(installed) if installed else 'nothing (all present)'}.", ""]
    for part, r in res.items():
        if "error" in r:
            L += [f"## {part}: FAILED", "", "```", r["error"].strip()[-2000:], "```", ""]
    t = res.get("train", {})
    if "variants" in t:
        L += ["## Training (raystudy.compute.train.train_one, UNet of configs/cifar10.yaml)", "",
              f"{t['params']:,} parameters, images {t['shape']}, batch {t['batch']}; rate between runs of "
              f"{t['steps'][0]} and {t['steps'][1]} steps; {t['flops_per_image'] / 1e9:.2f} GFLOP per image "
              "(forward + backward). MFU against the dense bf16 peak"
              + (f" of {peak[0]} ({peak[1]:.0f} TFLOP/s)." if peak else ": peak unknown on this device."), "",
              "| variant | images/s | x fp32 | achieved TFLOP/s | MFU (bf16 peak) |", "|---|---:|---:|---:|---:|"]
        base = t["variants"]["fp32"]["images_per_s"]
        for name, v in t["variants"].items():
            tf = v["images_per_s"] * t["flops_per_image"] / 1e12
            L.append(f"| {name} | {v['images_per_s']:.1f} | {v['images_per_s'] / base:.2f} | {tf:.3f} | "
                     + (f"{100 * tf / peak[1]:.1f}% |" if peak else "- |"))
        L.append("")
    s = res.get("sample", {})
    if "fp32" in s:
        L += ["## Sampling (raystudy.compute.generate.sample_images, same UNet)", "",
              f"DDIM-{s['steps']}, {s['n']} samples per call: fp32 **{s['fp32']:.2f}** samples/s, bf16 autocast "
              f"**{s['bf16']:.2f}** samples/s" + (" (autocast on a CPU: bf16's numerics, not a GPU's speed)"
                                                 if m.get("device") == "cpu" else "") + ".", ""]
    lp = res.get("lpips", {})
    if "embed_s" in lp:
        L += ["## LPIPS-alex exact top-5 (raystudy.metrics.lpips + knn_search backend=torch)", "",
              f"Backbone weights: {lp['weights']}"
              + (" -- **random backbone: timing only, not LPIPS's distances.**" if "random" in lp["weights"] else "."),
              f"{lp['queries']} queries x {lp['refs']} references, d = {lp['dim']}, random 32x32 RGB images.", "",
              f"| on {m['device']} | seconds |", "|---|---:|",
              f"| embed {lp['refs'] + lp['queries']} images | {lp['embed_s']:.2f} |",
              f"| search (float32 candidates {lp['stats']['faiss_s']:.2f} s, float64 ranking "
              f"{lp['stats']['exact_s']:.2f} s, crowds {lp['stats']['crowd_s']:.2f} s) | {lp['search_s']:.2f} |",
              f"| total | **{lp['embed_s'] + lp['search_s']:.2f}** |", "",
              f"CPU path on {lp['agree_n']} of the queries (against all {lp['refs']} references): CPU embedding of "
              f"{lp['refs'] + lp['agree_n']} images {lp['cpu_embed_s']:.2f} s, FAISS search {lp['cpu_search_s']:.2f} s; "
              f"FAISS on the device's embeddings: {lp['faiss_same_emb_s']:.2f} s and "
              f"**{'identical' if lp['same_emb_identical'] else 'NOT identical'}** to the torch search (indices and "
              f"distances). CPU embeddings vs the device's: top-5 identical for {100 * lp['top5_identical']:.1f}% of "
              f"queries, same top-5 set {100 * lp['top5_same_set']:.1f}%, top-1 {100 * lp['top1_identical']:.1f}%, "
              f"max |dLPIPS| {lp['max_abs_dlpips']:.2e}.", ""]
    pr = res.get("precision", {})
    if "changed" in pr:
        L += ["## bf16 sampling's label changes (as benchmarks/precision_check.py)", "",
              f"Demo UNet trained {pr['train_steps']} steps on K = 32 digits; {pr['n']} eval samples in fp32 and bf16 "
              f"from the same seeds (bf16: autocast, on a CPU too): **{pr['changed']} of {pr['n']}** labels "
              f"changed; largest pixel difference {pr['max_pixel_diff']:.3g}.", "",
              "| label | fp32 | bf16 |", "|---|---:|---:|"]
        L += [f"| {lab} | {a:.3f} | {b:.3f} |" for lab, (a, b) in pr["fractions"].items()]
        L.append("")
    return "\n".join(L)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    p.add_argument("--small", action="store_true", help="tiny sizes: a smoke run of seconds")
    p.add_argument("--wheels", type=Path, default=None, help="folder of wheels for what the box lacks")
    p.add_argument("--target", type=Path, default=Path(tempfile.gettempdir()) / "raystudy-device-site",
                   help="where those wheels are installed (default: %(default)s)")
    p.add_argument("--parts", default="train,sample,lpips,precision", help="which parts (%(default)s)")
    p.add_argument("--train-batch", type=int, default=None, help="training batch (default: the config's)")
    p.add_argument("--train-steps", type=int, default=30, help="steps of the longer training run (%(default)s)")
    p.add_argument("--sample-batch", type=int, default=256, help="DDIM samples per call (%(default)s)")
    p.add_argument("--lpips-refs", type=int, default=50000, help="LPIPS references (%(default)s)")
    p.add_argument("--lpips-queries", type=int, default=51200, help="LPIPS queries (%(default)s)")
    p.add_argument("--agree", type=int, default=1024, help="queries checked against the CPU path (%(default)s)")
    p.add_argument("--precision-steps", type=int, default=300, help="demo UNet training steps (%(default)s)")
    p.add_argument("--precision-n", type=int, default=400, help="samples per set (%(default)s)")
    p.add_argument("--weights-dir", default=None, help="folder with alexnet-owt-7be5be79.pth (else random)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    t_all = time.time()

    def log(s):
        print(f"[{time.time() - t_all:6.1f}s] {s}", flush=True)

    installed = bootstrap(args.wheels, args.target, log)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    import torch
    from machine import machine, machine_slug, write_results

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    m = machine(dev.type)
    parts = {"train": part_train, "sample": part_sample, "lpips": part_lpips, "precision": part_precision}
    res = {}
    for name in args.parts.split(","):
        t0 = time.time()
        try:
            res[name] = parts[name](dev, args, log)
        except Exception:  # noqa: BLE001 - one failing part must not lose the others' numbers
            res[name] = {"error": traceback.format_exc()}
            log(f"[{name}] FAILED:\n{res[name]['error']}")
        log(f"[{name}] {time.time() - t0:.1f} s")
    cmd = "python benchmarks/device.py " + " ".join(argv)
    text = report(res, m, args, cmd.strip(), time.time() - t_all, installed)
    write_results(args.out_dir, f"device-{machine_slug(m)}{'-small' if args.small else ''}", text, log)
    if any("error" in r for r in res.values()):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
