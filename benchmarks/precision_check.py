"""Does sampling in reduced precision move the study's results? fp32 vs bf16 autocast.

    python benchmarks/precision_check.py                 # K=32 digits, 300 training steps, 400 samples
    python benchmarks/precision_check.py --device cuda   # the same on a GPU
    python benchmarks/precision_check.py --help

A fixed model: the demo UNet (configs/demo.yaml) trained by the real
``raystudy.compute.train.train_one`` for ``--steps`` steps on the K-set of ``--k`` digits (its EMA
weights, loaded back with ``raystudy.models.unet.load_checkpoint``). Then, with the same per-sample seeds
(``raystudy.splits.sample_seed``) and the demo's sampler (DDIM, 50 steps):

* fp32: the eval set and an independent ref set, sampled in fp32;
* bf16: the eval set again (same seeds) under ``torch.autocast(device, bfloat16)``, which
  ``sample_images`` applies on any device (on a CPU: bf16's numerics, not a GPU's speed).

Each eval sample gets its per-pixel RMS distance (``raystudy.metrics.PixelL2``: ||x-y||/sqrt(D)
on [-1, 1]) to the nearest training image (d_train) and to the nearest sample of the fp32 ref set
(d_synth), the same reference for both precisions, by brute force, and is labelled with
``raystudy.compute.classify.label_samples`` at the demo's thresholds (delta_m = delta_s = 0.1).

Because the seeds are shared, the two precisions' samples are paired. The check reports,
per label, the two fractions, the number of samples whose label changed (and between which
labels), McNemar's exact test on the discordant pairs (the paired test), and an unpaired
two-proportion z (which ignores the pairing, and is far more lenient). The verdict:
"equal within sampling error" when no label's McNemar p-value is below 0.05 / 3
(Bonferroni over the three labels) and the fractions differ by less than the unpaired 95%
half-width of a fraction at this N.

Writes benchmarks/results/precision-<machine>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from machine import loadavg, machine, machine_slug, write_results  # noqa: E402  (benchmarks/machine.py)

LABELS = ("memorized", "spurious", "generalized")


def sample(model, scheduler, seeds, shape, device, bf16: bool, batch: int):
    """The study's own sampler (``raystudy.compute.generate.sample_images``) batch by batch, with bf16
    autocast asked for explicitly (on any device)."""
    import numpy as np
    import torch

    from raystudy.compute.generate import sample_images

    dtype = torch.bfloat16 if bf16 else None
    return np.concatenate([sample_images(model, scheduler, seeds[j:j + batch], shape, device, dtype)
                           for j in range(0, len(seeds), batch)])


def nearest_rms(q, refs):
    """Per-pixel RMS distance of each q to its nearest row of refs (brute force, float64)."""
    import numpy as np

    q = q.reshape(len(q), -1).astype(np.float64)
    r = refs.reshape(len(refs), -1).astype(np.float64)
    sq = (q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2 * q @ r.T
    return np.sqrt(np.maximum(sq.min(1), 0) / q.shape[1])


def demo_config(steps: int, sampler: str = "ddim", sample_steps: int = 50):
    """configs/demo.yaml trained ``steps`` steps in fp32, sampled by ``sampler``."""
    from raystudy.config import load_config

    cfg = load_config(ROOT / "configs" / "demo.yaml")
    return cfg.model_copy(update={
        "train": cfg.train.model_copy(update={"images": steps * cfg.train.batch_size, "checkpoint_every": 10**12,
                                              "mixed_precision": "no"}),
        "generate": cfg.generate.model_copy(update={"sampler": sampler, "steps": sample_steps})})


def paired_labels(cfg, k: int, n: int, dev, batch: int, log=print) -> dict:
    """The check's measurement (benchmarks/device.py runs it on a GPU): a model trained on the
    K-set, ``n`` eval samples in fp32 and in bf16 from the same seeds plus ``n`` fp32 ref
    samples, and each precision's d_train, d_synth and labels at the config's l2 thresholds."""
    import numpy as np

    from raystudy import axes, splits
    from raystudy.compute.classify import label_samples
    from raystudy.compute.generate import make_scheduler, sample_seed
    from raystudy.compute.train import train_one
    from raystudy.datasets import load_dataset
    from raystudy.models.unet import load_checkpoint as load_model

    seed = 0
    dataset = load_dataset(cfg.data)
    train = np.ascontiguousarray(dataset.images(splits.kset(cfg, dataset, axes.Axis(), k)), dtype=np.float32)
    with tempfile.TemporaryDirectory() as d:
        rec = train_one(cfg, train, k, seed, Path(d) / "model")
        model = load_model(Path(d) / "model").to(dev).eval()
    log(f"trained K={k}: {rec['steps']} steps, final loss {rec['final_loss']:.4f}, {rec['wall_s']:.0f} s")
    sched = make_scheduler(cfg.generate, cfg.model)
    seeds = {s: np.asarray([sample_seed(cfg.study.seed, k, seed, s, i) for i in range(n)]) for s in ("eval", "ref")}
    imgs, times = {}, {}
    for prec, s in (("fp32", "eval"), ("fp32", "ref"), ("bf16", "eval")):
        t = time.time()
        imgs[prec, s] = sample(model, sched, seeds[s], tuple(train.shape[1:]), dev, prec == "bf16", batch)
        times[prec, s] = time.time() - t
        log(f"sampled {prec} {s}: {n} in {times[prec, s]:.0f} s")
    dm, ds = cfg.classify.delta_m["l2"], cfg.classify.delta_s["l2"]
    res = {}
    for prec in ("fp32", "bf16"):
        d_train = nearest_rms(imgs[prec, "eval"], train)
        d_synth = nearest_rms(imgs[prec, "eval"], imgs["fp32", "ref"])
        res[prec] = {"d_train": d_train, "d_synth": d_synth, "labels": label_samples(d_train, d_synth, dm, ds)}
    return {"train": train, "rec": rec, "sched": sched, "imgs": imgs, "times": times, "res": res}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for discordant counts b, c."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * p)


def two_prop_z(p1: float, p2: float, n: int) -> tuple[float, float]:
    p = (p1 + p2) / 2
    se = math.sqrt(max(p * (1 - p) * 2 / n, 1e-300))
    z = (p1 - p2) / se if se > 0 else 0.0
    return z, math.erfc(abs(z) / math.sqrt(2))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Writes benchmarks/results/precision-<machine>.md.")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available, else cpu")
    p.add_argument("--k", type=int, default=32, help="training-set size K of digits (default 32)")
    p.add_argument("--steps", type=int, default=300, help="training steps of 128 images (default 300)")
    p.add_argument("--n", type=int, default=400, help="samples per set (eval and ref), per precision (default 400)")
    p.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim", help="default ddim (50 steps, the demo's)")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--batch", type=int, default=100, help="sampling batch (default 100)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="where the results file goes")
    p.add_argument("--save", type=Path, default=None, help="also save the training set and all samples (npz) here")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from raystudy.compute.classify import label_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    m = machine(dev)
    t0, load0 = time.time(), loadavg()

    def log(s):
        print(f"[{time.time() - t0:6.0f}s] {s}", flush=True)

    k = args.k
    cfg = demo_config(args.steps, args.sampler, args.sample_steps)
    out = paired_labels(cfg, k, args.n, dev, args.batch, log)
    train, rec, sched, imgs, times, res = (out[x] for x in ("train", "rec", "sched", "imgs", "times", "res"))
    dm, ds = cfg.classify.delta_m["l2"], cfg.classify.delta_s["l2"]
    a, b = res["fp32"]["labels"], res["bf16"]["labels"]
    n = args.n
    pair_rms = np.sqrt(((imgs["fp32", "eval"] - imgs["bf16", "eval"]) ** 2).reshape(n, -1).mean(1))
    changed = np.flatnonzero(a != b)
    rows, ok = [], True
    half = 1.96 * math.sqrt(0.25 / n)  # the widest 95% half-width of a fraction at this N
    for lab in LABELS:
        fa, fb = float(np.mean(a == lab)), float(np.mean(b == lab))
        bb = int(np.sum((a == lab) & (b != lab)))  # lost the label in bf16
        cc = int(np.sum((a != lab) & (b == lab)))  # gained it
        pm = mcnemar_exact(bb, cc)
        z, pz = two_prop_z(fa, fb, n)
        ok &= pm >= 0.05 / 3 and abs(fa - fb) < half
        rows.append((lab, fa, fb, bb, cc, pm, z, pz))
    trans = {}
    for i in changed:
        trans[(a[i], b[i])] = trans.get((a[i], b[i]), 0) + 1
    near = {prec: int(np.sum((np.abs(res[prec]["d_train"] - dm) < 0.01) | (np.abs(res[prec]["d_synth"] - ds) < 0.01)))
            for prec in res}
    # A stress test: thresholds re-set to the fp32 medians of d_train and d_synth, so each cut
    # runs through the middle of the distribution, where a label flips most easily.
    mt, ms = float(np.median(res["fp32"]["d_train"])), float(np.median(res["fp32"]["d_synth"]))
    la = label_samples(res["fp32"]["d_train"], res["fp32"]["d_synth"], mt, ms)
    lb = label_samples(res["bf16"]["d_train"], res["bf16"]["d_synth"], mt, ms)
    stress = []
    for lab in LABELS:
        fa, fb = float(np.mean(la == lab)), float(np.mean(lb == lab))
        bb, cc = int(np.sum((la == lab) & (lb != lab))), int(np.sum((la != lab) & (lb == lab)))
        stress.append((lab, fa, fb, bb, cc, mcnemar_exact(bb, cc)))
    n_stress = int(np.sum(la != lb))
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save / "precision_samples.npz", train=train, **{f"{p_}_{s_}": v for (p_, s_), v in imgs.items()})
    wall, load1 = time.time() - t0, loadavg()

    cmd = "python benchmarks/precision_check.py " + " ".join(sys.argv[1:] if argv is None else argv)
    L = [f"# Sampling precision check: fp32 vs bf16 autocast -- {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
         f"device {dev} ({m['gpu']})", "",
         f"- Command: `{cmd.strip()}`", f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; wall "
         f"{wall / 60:.1f} min; load average before / after: {load0} ; {load1}",
         f"- Model: demo UNet (configs/demo.yaml), trained by `raystudy.compute.train.train_one` (fp32) on K={k} digits for "
         f"{rec['steps']} steps of 128 (final loss {rec['final_loss']:.4f}); its EMA weights.",
         f"- Sampling: {args.sampler.upper()} {len(sched.timesteps)} steps; {n} eval samples in fp32 and the same {n} "
         f"seeds in bf16, plus {n} independent fp32 ref samples; "
         f"per-sample seeds `raystudy.splits.sample_seed` shared by both precisions (so samples are paired); bf16 = "
         f"`torch.autocast('{dev}', dtype=torch.bfloat16)` around the network, scheduler arithmetic in fp32. "
         f"Sampling time for {n}: fp32 {times['fp32', 'eval']:.0f} s, bf16 {times['bf16', 'eval']:.0f} s.",
         f"- Labels: `raystudy.compute.classify.label_samples`, per-pixel RMS distance (brute force, float64) to the K-set "
         f"(d_train) and to the fp32 ref set (d_synth), delta_m = {dm}, delta_s = {ds}.", "",
         f"## Verdict: **{'equal within sampling error' if ok else 'NOT equal within sampling error'}**", "",
         f"{len(changed)} of {n} samples ({100 * len(changed) / n:.1f}%) changed label between fp32 and bf16"
         + (": " + ", ".join(f"{x} -> {y}: {c}" for (x, y), c in sorted(trans.items())) if trans else "") + ".", "",
         "| label | fp32 fraction | bf16 fraction | difference | lost in bf16 | gained in bf16 | McNemar exact p "
         "| unpaired z | unpaired p |", "|---|---|---|---|---|---|---|---|---|"]
    for lab, fa, fb, bb, cc, pm, z, pz in rows:
        L.append(f"| {lab} | {fa:.4f} | {fb:.4f} | {fb - fa:+.4f} | {bb} | {cc} | {pm:.3g} | {z:+.2f} | {pz:.3g} |")
    L += ["", "How it is judged: the samples are paired (same seed, same initial and step noise), so the paired test "
          "is McNemar's exact test on the samples that changed label (null: changes in either direction are equally "
          "likely); equal within sampling error = no label with p < 0.05/3 (Bonferroni over the three labels) and every "
          f"fraction difference below the 95% half-width of a fraction at N = {n} ({half:.3f}). The unpaired two-"
          "proportion z is shown for reference (it ignores the pairing).", "",
          "Paired samples, fp32 vs bf16 (per-pixel RMS on [-1, 1]): "
          f"median {np.median(pair_rms):.4f}, 90th percentile {np.quantile(pair_rms, 0.9):.4f}, max {pair_rms.max():.4f}. "
          f"d_train shift |bf16 - fp32|: median {np.median(np.abs(res['bf16']['d_train'] - res['fp32']['d_train'])):.4f}, "
          f"max {np.max(np.abs(res['bf16']['d_train'] - res['fp32']['d_train'])):.4f}.",
          f"Samples within 0.01 of a threshold (where a label can flip): fp32 {near['fp32']}, bf16 {near['bf16']}.",
          f"d_train median: fp32 {np.median(res['fp32']['d_train']):.4f}, bf16 {np.median(res['bf16']['d_train']):.4f}; "
          f"d_synth median: fp32 {np.median(res['fp32']['d_synth']):.4f}, bf16 {np.median(res['bf16']['d_synth']):.4f}."]
    L += ["", f"Stress test: the same distances with both thresholds moved to the fp32 medians (delta_m = {mt:.4f}, "
          f"delta_s = {ms:.4f}), where the cuts run through the middle of the distributions: {n_stress} of {n} samples "
          f"changed label.", "", "| label | fp32 | bf16 | lost | gained | McNemar exact p |", "|---|---|---|---|---|---|"]
    for lab, fa, fb, bb, cc, pm in stress:
        L.append(f"| {lab} | {fa:.4f} | {fb:.4f} | {bb} | {cc} | {pm:.3g} |")
    if not (0.05 < np.mean(a == "generalized") < 0.95):
        L += ["", "Note: at this training length nearly every sample has one label at the study's thresholds, so the "
              "check at those thresholds cannot flip many labels; the stress test above is the informative part. "
              "A run with `--steps 800` (the demo's length) puts samples on both sides."]
    if dev == "cpu":
        L += ["", "On this CPU bf16 autocast runs the convolutions and matmuls in bf16 (emulated without AVX512-BF16): "
              "the numerics are bf16's, the speed is not a GPU's. **The same check on a GPU is still owed** "
              "(`python benchmarks/precision_check.py --device cuda`)."]
    write_results(args.out_dir, f"precision-{machine_slug(m)}", "\n".join(L) + "\n", log)


if __name__ == "__main__":
    main()
