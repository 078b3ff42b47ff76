"""Do bf16 LPIPS embeddings change any top-5 neighbour? fp32 vs bf16 autocast of the backbone.

    python benchmarks/embed_precision.py --demo /work/demo1597      # the demo's samples + random CIFAR-sized
    python benchmarks/embed_precision.py --device cuda --net vgg     # the same on a GPU
    python benchmarks/embed_precision.py --help

The embedding is the study's own ``raystudy.metrics.lpips.LpipsEmbedding``; "bf16" runs its
backbone (``features``) under ``torch.autocast(device, bfloat16)`` and the rest (channel
normalisation, sqrt(w)/sqrt(HW) weighting) in fp32, as a GPU knn actor would. For each case,
queries and references are embedded in both precisions and searched exactly (float64 brute
force, so the search adds no error of its own); reported: the fraction of queries whose top-5
index list changes (ordered, and as a set), the largest relative change of any query-reference
squared distance and of the top-5 distances, and the smallest relative gap between the 5th and
6th fp32 neighbours (where a swap happens first).

Cases: the demo study's eval samples (``--demo DIR``, a digits study; read only) as queries
against its K-set and its ref samples, for each K with samples; and uniform random 32x32 RGB
images (CIFAR-sized: ``--queries`` x ``--refs``). Without the torchvision backbone weights
(``--weights-dir``, or torch's hub cache) the backbone is lpips's random initialisation
(``pnet_rand=True``), which the results file says.

Writes benchmarks/results/embed-precision-<machine>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from machine import loadavg, machine, machine_slug, write_results  # noqa: E402  (benchmarks/machine.py)

TOP = 5


def embed(emb, images, bf16: bool):
    """``emb.embed(images)`` with its backbone under bf16 autocast when asked; features are
    handed on in fp32, so only the backbone's arithmetic changes precision."""
    import torch

    if not bf16:
        return emb.embed(images)
    plain = emb.features

    def features(x):
        with torch.autocast(emb.device.type, dtype=torch.bfloat16):
            outs = plain(x)
        return [f.float() for f in outs]

    emb.features = features
    try:
        return emb.embed(images)
    finally:
        del emb.features  # back to the class's method


def sq_dists(q, r):
    import numpy as np

    q, r = q.astype(np.float64), r.astype(np.float64)
    return np.maximum((q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2 * q @ r.T, 0.0)


def compare(name: str, q32, q16, r32, r16) -> dict:
    """Exact top-5 in float64 of both precisions' embeddings, and how far they differ."""
    import numpy as np

    d32, d16 = sq_dists(q32, r32), sq_dists(q16, r16)
    o32, o16 = np.argsort(d32, 1, kind="stable"), np.argsort(d16, 1, kind="stable")
    t32, t16 = o32[:, :TOP], o16[:, :TOP]
    ordered = np.any(t32 != t16, axis=1)
    as_set = np.array([set(a) != set(b) for a, b in zip(t32, t16)])
    first = t32[:, 0] != t16[:, 0]  # the nearest neighbour: what d_train / d_synth and the labels use
    rel_all = np.abs(d16 - d32) / np.maximum(d32, 1e-30)
    k32 = np.take_along_axis(d32, t32, 1)
    k16 = np.take_along_axis(d16, t16, 1)
    rel_top = np.abs(k16 - k32) / np.maximum(k32, 1e-30)
    sixth = np.take_along_axis(d32, o32[:, TOP:TOP + 1], 1)[:, 0] if d32.shape[1] > TOP else np.full(len(d32), np.inf)
    gap = (sixth - k32[:, -1]) / np.maximum(k32[:, -1], 1e-30)
    return {"case": name, "queries": len(q32), "refs": len(r32), "dim": q32.shape[1],
            "ordered": float(ordered.mean()), "n_ordered": int(ordered.sum()),
            "set": float(as_set.mean()), "n_set": int(as_set.sum()), "n_first": int(first.sum()),
            "rel_all_max": float(rel_all.max()), "rel_all_median": float(np.median(rel_all)),
            "rel_top_max": float(rel_top.max()), "gap_min": float(gap.min()), "gap_median": float(np.median(gap))}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Writes benchmarks/results/embed-precision-<machine>.md.")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available, else cpu")
    p.add_argument("--net", choices=["alex", "vgg"], default="alex")
    p.add_argument("--demo", type=Path, default=None, help="a digits study folder with samples (read only)")
    p.add_argument("--demo-ks", type=int, nargs="*", default=None, help="K of the demo to check (default: all)")
    p.add_argument("--queries", type=int, default=300, help="random CIFAR-sized queries (default 300)")
    p.add_argument("--refs", type=int, default=3000, help="random CIFAR-sized references (default 3000)")
    p.add_argument("--weights-dir", default=None, help="folder with the torchvision backbone .pth")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="where the results file goes")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from raystudy.errors import UserError
    from raystudy.metrics.lpips import LpipsEmbedding

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    m = machine(dev)
    t0, load0 = time.time(), loadavg()

    def log(s):
        print(f"[{time.time() - t0:6.0f}s] {s}", flush=True)

    try:
        emb = LpipsEmbedding(args.net, args.weights_dir, device=dev, download=False)
    except UserError as e:
        log(f"no backbone weights ({e}); using lpips's random backbone")
        emb = LpipsEmbedding(args.net, device=dev, pnet_rand=True)
    cases, times = [], {}

    def run(name, queries, refs):
        out = {}
        for prec in ("fp32", "bf16"):
            t = time.time()
            out[prec] = (embed(emb, queries, prec == "bf16"), embed(emb, refs, prec == "bf16"))
            times[name, prec] = time.time() - t
        cases.append(compare(name, out["fp32"][0], out["bf16"][0], out["fp32"][1], out["bf16"][1]))
        log(f"{name}: {cases[-1]}; embed fp32 {times[name, 'fp32']:.1f} s, bf16 {times[name, 'bf16']:.1f} s")

    if args.demo is not None:
        from raystudy import axes, splits
        from raystudy.config import load_config
        from raystudy.datasets import load_dataset
        from raystudy.tables import read_samples

        cfg = load_config(args.demo / "config.yaml")
        data = load_dataset(cfg.data)
        for k in args.demo_ks or cfg.ks:
            try:
                _, ev = read_samples(args.demo, k, 0, "eval")
                _, rf = read_samples(args.demo, k, 0, "ref")
            except FileNotFoundError:
                continue
            train = np.asarray(data.images(splits.kset(cfg, data, axes.Axis(), k)), dtype=np.float32)
            run(f"demo K={k}: eval vs K-set", ev, train)
            run(f"demo K={k}: eval vs ref", ev, rf)
    rng = np.random.default_rng(0)
    q = rng.uniform(-1, 1, size=(args.queries, 3, 32, 32)).astype(np.float32)
    r = rng.uniform(-1, 1, size=(args.refs, 3, 32, 32)).astype(np.float32)
    run("random 32x32 RGB", q, r)
    # Near-duplicates: a reference set holding slightly perturbed queries (the memorised case).
    near = np.clip(q[:, None] + rng.normal(0, 0.02, size=(len(q), 4, 3, 32, 32)), -1, 1).astype(np.float32)
    run("random 32x32 RGB + 4 near-duplicates (sigma 0.02) per query", q,
        np.concatenate([r, near.reshape(-1, 3, 32, 32)]))

    wall, load1 = time.time() - t0, loadavg()
    changed = sum(c["n_set"] for c in cases)
    cmd = "python benchmarks/embed_precision.py " + " ".join(sys.argv[1:] if argv is None else argv)
    L = [f"# LPIPS-{args.net} embedding precision: fp32 vs bf16 autocast backbone -- {m['cpu']}, {m['cores']} cores, "
         f"torch {m['torch']}, device {dev} ({m['gpu']})", "",
         f"- Command: `{cmd.strip()}`",
         f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}; wall {wall / 60:.1f} min; load average "
         f"before / after: {load0} ; {load1} (a shared machine)",
         f"- Backbone weights: {emb.weights_source}.",
         "- bf16 = `torch.autocast(device, bfloat16)` around `LpipsEmbedding.features` (the backbone); normalisation "
         "and weighting in fp32. Search: exact, float64 brute force on each precision's embeddings.", "",
         f"## Verdict: **{'no top-5 changed' if changed == 0 else f'{changed} queries changed their top-5 set'}**", "",
         "| case | queries x refs | dim | top-5 list changed | top-5 set changed | nearest changed "
         "| max rel. change, any distance | median rel. change | max rel. change, top-5 distances "
         "| min rel. gap 5th-6th (fp32) | median gap |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        L.append(f"| {c['case']} | {c['queries']} x {c['refs']} | {c['dim']} | {c['n_ordered']} ({100 * c['ordered']:.1f}%) "
                 f"| {c['n_set']} ({100 * c['set']:.1f}%) | {c['n_first']} | {c['rel_all_max']:.2e} | {c['rel_all_median']:.2e} "
                 f"| {c['rel_top_max']:.2e} | {c['gap_min']:.2e} | {c['gap_median']:.2e} |")
    L += ["", "Embedding time (queries + refs): " + "; ".join(
        f"{n}: fp32 {times[n, 'fp32']:.1f} s, bf16 {times[n, 'bf16']:.1f} s" for n in dict.fromkeys(k for k, _ in times)),
        "", "A top-5 list changes where bf16's distance error exceeds the gap between neighbours: compare the max "
        "relative change with the smallest relative 5th-6th gap."]
    if dev == "cpu":
        L += ["", "On this CPU bf16 autocast gives bf16's numerics (the same rounding as a GPU's bf16 convolutions up to "
              "accumulation order), not a GPU's speed. **The same check on a GPU is still owed** "
              "(`python benchmarks/embed_precision.py --device cuda`)."]
    write_results(args.out_dir, f"embed-precision-{args.net}-{machine_slug(m)}", "\n".join(L) + "\n", log)


if __name__ == "__main__":
    main()
