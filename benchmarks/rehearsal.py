"""One K of the paper's CIFAR-10 sweep through every stage after training, at full size, on CPU,
with a known answer.

    .venv/bin/python benchmarks/rehearsal.py                 # K = 50,000, 2 x 51,200 samples (~7 min, 2 cores)
    .venv/bin/python benchmarks/rehearsal.py --k 2000 --samples 2048 --files 4 --paper-refs 512   # ~2 min

The paper's largest CIFAR-10 unit: 50,000 training images of 3x32x32, 51,200 samples per set in
100 ``.npz`` files of 512 (its ``run_generate.py``), LPIPS-alex and L2, top-5, against the
training set (d_train) and between two sample sets (d_synth). Real CIFAR-10 cannot be fetched
here, so the training set is the known-manifold world's soft discs (six latents each) rendered at
32x32 RGB into a uint8 ``.npy`` (``data.name: array``), held in memory as the CIFAR-10 loader
holds its batches; the manifold diagnostic of ``data.name: manifold``, which CIFAR-10 lacks, does
not run. For timing it is a fair stand-in: every stage after training
costs the same per image whatever the pixels hold (the LPIPS backbone's convolutions, a dense
exact search, Parquet bytes), except the float64 re-rank, whose candidate count depends on how
close the k-th and (k+1)-th neighbours are; the results file gives that count.

The samples are built so that every label is known before the run, with margins far wider
than either metric's rounding:
- memorized (``--memorized``, 30%): a K-set image plus N(0, 0.005^2) pixel noise (L2 RMS <= 0.006,
  LPIPS < 1e-4 from it);
- spurious (``--spurious``, 20%): an off-manifold image (uniform pixel noise) whose near-copy
  (its own N(0, 0.005^2) noise) sits at a random place in the ref set;
- generalized (the rest): an off-manifold image of its own. Two independent uniform-noise images
  are >= 0.69 apart in L2 RMS and ~0.085 +- 0.006 in LPIPS (random backbone), and >= 0.7 / 0.1
  from every disc.
Thresholds: l2 delta_m = delta_s = 0.1 (the config's default); lpips-alex 0.01, because the
backbone is lpips's random AlexNet (its weights are written by this script as torchvision's
file, the way a user puts the real one into ``knn.weights_dir``): its distances are about a
third of the trained network's, and timing does not depend on the weights.

Measured per step (import, each stage, report): wall time, the driver's peak memory (VmHWM where
the step raised it, else the largest VmRSS sample) and the largest Ray worker (VmRSS, which
counts the object-store pages it maps). The labels are compared with the known answer sample by
sample, for both metrics; the null's l2 fractions with a brute force written here. Beside it, the
paper's distance algorithm (``benchmarks/knn.py``'s transcription of its ``run_distances.py`` +
``lpips.py``) runs one block of 256 queries against ``--paper-refs`` training images and is
extrapolated by its N x M cost to the whole unit.
Writes benchmarks/results/rehearsal-<machine>.md (``--out-dir``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

NOISE = 0.005
FILE_ROWS = 512
LPIPS_DELTA = 0.01
LABELS = ("memorized", "spurious", "generalized")


def config_text(work: Path, k: int, n: int, held_out: int = 200) -> str:
    return f"""# The rehearsal's study (benchmarks/rehearsal.py): one K, imported samples.
study: {{name: rehearsal, seed: 0}}
data: {{name: array, path: {work / "images.npy"}, held_out: {held_out}}}
ks: [{k}]
seeds: [0]
generate: {{n_samples: {n}}}
knn:
  metrics: [l2, lpips-alex]
  k: 5
  weights_dir: {work / "weights"}
classify:
  delta_m: {{l2: 0.1, lpips-alex: {LPIPS_DELTA}}}
  delta_s: {{l2: 0.1, lpips-alex: {LPIPS_DELTA}}}
ray: {{num_cpus: 2}}
"""


def make_world(work: Path, k: int, n: int, files: int, memorized: float = 0.3, spurious: float = 0.2,
               seed: int = 0) -> np.ndarray:
    """Write the config, random AlexNet weights, and the eval/ and ref/ folders of ``files`` .npz
    files each (key ``samples``, (rows, 3, 32, 32) float32 in [-1, 1]); return the eval set's
    true labels by sample id."""
    import torch
    import torchvision

    from raystudy import axes, splits
    from raystudy.config import load_config
    from raystudy.datasets import load_dataset
    from raystudy.datasets.manifold import latents, render
    from raystudy.metrics.lpips import BACKBONE_FILES

    work.mkdir(parents=True, exist_ok=True)
    held_out = 200
    images = np.empty((k + held_out, 3, 32, 32), np.uint8)
    for lo in range(0, len(images), 4096):
        idx = np.arange(lo, min(len(images), lo + 4096))
        images[idx] = np.round((render(latents(idx, seed), 32) + 1) * 127.5).astype(np.uint8)
    np.save(work / "images.npy", images)
    del images
    (work / "rehearsal.yaml").write_text(config_text(work, k, n, held_out))
    (work / "weights").mkdir(exist_ok=True)
    torch.manual_seed(seed)
    torch.save(torchvision.models.alexnet().state_dict(), work / "weights" / BACKBONE_FILES["alex"])
    cfg = load_config(work / "rehearsal.yaml")
    dataset = load_dataset(cfg.data)
    kset = splits.kset(cfg, dataset, axes.DEFAULT, k)
    rng = np.random.default_rng(seed)
    n_m, n_s = round(memorized * n), round(spurious * n)
    truth = np.array(["memorized"] * n_m + ["spurious"] * n_s + ["generalized"] * (n - n_m - n_s), object)
    rng.shuffle(truth)
    ref_kind = np.array(["memorized"] * n_m + ["partner"] * n_s + ["generalized"] * (n - n_m - n_s), object)
    rng.shuffle(ref_kind)
    # Spurious eval sample j and its ref partner draw one noise image from the pair's own seed.
    pair_of_eval = np.full(n, -1)
    pair_of_eval[truth == "spurious"] = np.arange(n_s)
    pair_of_ref = np.full(n, -1)
    pair_of_ref[ref_kind == "partner"] = rng.permutation(n_s)
    copies = {"eval": rng.choice(kset, n), "ref": rng.choice(kset, n)}
    shape = (3, 32, 32)

    def image(set_name: str, i: int, kind: str, pair: int) -> np.ndarray | None:
        own = np.random.default_rng([seed, 0 if set_name == "eval" else 1, i])
        if kind == "memorized":
            return None  # rendered per file, below
        base = (np.random.default_rng([seed, 2, pair]) if pair >= 0 else own).uniform(-1, 1, shape)
        return base + (own.normal(0, NOISE, shape) if pair >= 0 else 0.0)

    rows = -(-n // files)
    for set_name, kinds, pairs in (("eval", truth, pair_of_eval), ("ref", ref_kind, pair_of_ref)):
        folder = work / set_name
        folder.mkdir(exist_ok=True)
        for f, lo in enumerate(range(0, n, rows)):
            hi = min(n, lo + rows)
            x = np.empty((hi - lo, *shape), np.float32)
            mem = [i for i in range(lo, hi) if kinds[i] == "memorized"]
            if mem:
                noise = np.stack([np.random.default_rng([seed, 3 if set_name == "eval" else 4, i]).normal(0, NOISE, shape)
                                  for i in mem])
                x[np.array(mem) - lo] = dataset.get(copies[set_name][mem]) + noise
            for i in range(lo, hi):
                if kinds[i] != "memorized":
                    x[i - lo] = image(set_name, i, kinds[i], pairs[i])
            np.savez(folder / f"{f:03d}.npz", samples=np.clip(x, -1, 1))
    np.save(work / "truth.npy", truth.astype(str))
    return truth


def timed(cmd: list[str], log) -> dict:
    """Run a command under GNU time: wall seconds and its peak resident memory (MB)."""
    t0 = time.time()
    with tempfile.NamedTemporaryFile("r", suffix=".time") as f:
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f.name, *cmd], capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        peak = int(f.read().split()[-1]) / 1024
    log(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "")
    return {"wall_s": round(time.time() - t0, 1), "driver_mb": round(peak)}


def study_child(work: Path) -> dict:
    """The study's stages in this process, with the driver's and the workers' memory per stage."""
    from driver_memory import StageMemory, status_mb

    from raystudy import study
    from raystudy.config import load_config

    cfg = load_config(work / "rehearsal.yaml")
    with StageMemory(workers=True) as mem:
        study.run(cfg, work / "study", echo=lambda line: (mem.echo(line), print(line, flush=True)))
    times = json.loads((work / "study" / "stages.json").read_text())
    return {"peak_mb": {s: round(v) for s, v in mem.peaks.items()},
            "worker_mb": {s: [w, round(v)] for s, (w, v) in mem.worker_peak.items()},
            "stage_s": {s: v["wall_s"] for s, v in times.items()}, "hwm_run_mb": round(status_mb("VmHWM"))}


def check(work: Path, truth: np.ndarray) -> dict:
    """Labels against the known answer, per metric; the null's l2 fractions against a brute force."""
    import pandas as pd

    from raystudy.config import load_config
    from raystudy.datasets import load_dataset

    lab = pd.read_parquet(work / "study" / "tables" / "labels", columns=["metric", "sample_id", "label", "d_train",
                                                                          "d_synth"])
    out = {}
    for metric, g in lab.groupby("metric"):
        g = g.sort_values("sample_id")
        want = truth[g.sample_id.to_numpy()]
        out[metric] = {"n": len(g), "wrong": int((g.label.to_numpy() != want).sum()),
                       "counts": {name: int((g.label == name).sum()) for name in LABELS},
                       "margins": {"memorized d_train max": float(g.d_train[want == "memorized"].max()),
                                   "others d_train min": float(g.d_train[want != "memorized"].min()),
                                   "spurious d_synth max": float(g.d_synth[want == "spurious"].max()),
                                   "generalized d_synth min": float(g.d_synth[want == "generalized"].min())}}
    out["truth"] = {name: int((truth == name).sum()) for name in LABELS}
    cfg = load_config(work / "rehearsal.yaml")
    dataset = load_dataset(cfg.data)
    from raystudy import axes, splits

    # Every held-out image is a query; its references are the other held-out images.
    q_idx = splits.held_out(cfg, dataset)
    q = dataset.get(q_idx).reshape(len(q_idx), -1).astype(np.float64)

    def nearest(idx, own=None):
        best = np.full(len(q), np.inf)
        for s in range(0, len(idx), 2048):
            r = dataset.get(idx[s:s + 2048]).reshape(-1, q.shape[1]).astype(np.float64)
            d = np.stack([np.sqrt(((r - qi) ** 2).mean(1)) for qi in q])
            if own is not None:  # the query itself, by position
                rows = np.arange(len(q))
                at = own - s
                inside = (at >= 0) & (at < len(r))
                d[rows[inside], at[inside]] = np.inf
            best = np.minimum(best, d.min(1))
        return best

    d_train = nearest(splits.kset(cfg, dataset, axes.DEFAULT, cfg.ks[0]))
    d_synth = nearest(q_idx, own=np.arange(len(q)))
    mem = d_train <= cfg.classify.delta_m["l2"]
    spur = ~mem & (d_synth <= cfg.classify.delta_s["l2"])
    nf = pd.read_parquet(work / "study" / "tables" / "null_fractions")
    nf = nf[nf.metric == "l2"].iloc[0]
    out["null_l2"] = {"n": len(q), "memorized": float(mem.mean()), "spurious": float(spur.mean()),
                      "stored_memorized": float(nf.memorized), "stored_spurious": float(nf.spurious)}
    return out


def paper_slice(work: Path, n_refs: int, k: int, n: int) -> dict:
    """The paper's LPIPS algorithm on 256 eval samples x ``n_refs`` training images, against ours on
    the same slice, extrapolated by N x M to the unit (d_train: n x K pairs, d_synth: n x n)."""
    import torch
    from knn import BLOCK, ours_topk, paper_rows

    from raystudy import axes, splits
    from raystudy.config import load_config
    from raystudy.datasets import load_dataset
    from raystudy.importing import ImageSource
    from raystudy.metrics.lpips import LpipsEmbedding

    cfg = load_config(work / "rehearsal.yaml")
    dataset = load_dataset(cfg.data)
    queries = next(ImageSource(work / "eval", dataset.shape).batches(BLOCK))
    refs = dataset.get(splits.kset(cfg, dataset, axes.DEFAULT, k)[:n_refs]).astype(np.float32)
    emb = LpipsEmbedding("alex", weights_dir=work / "weights", device="cpu", download=False)
    _, idx_ours, t_ours = ours_topk(emb, queries, refs, 5)
    _, idx_paper, times = paper_rows(emb.model, torch.from_numpy(queries), torch.from_numpy(refs), 5, [0])
    pairs = len(queries) * n_refs
    unit_pairs = n * k + n * n
    return {"slice": f"{len(queries)} x {n_refs}", "paper_s": round(times[0], 1), "ours_s": round(t_ours["total"], 2),
            "same_top5": bool((idx_ours == idx_paper).all()), "unit_pairs": unit_pairs,
            "paper_unit_h": round(times[0] * unit_pairs / pairs / 3600, 1)}


def gemm_rate(d: int = 3490, n: int = 4096) -> float:
    """Float32 matrix-product rate (multiply-adds per second) of this CPU at the search's shape."""
    import torch

    a, b = torch.randn(n, d), torch.randn(n, d)
    a @ b.T
    t0 = time.perf_counter()
    for _ in range(3):
        a @ b.T
    return 3 * n * n * d / (time.perf_counter() - t0)


def markdown(args, m, res) -> str:
    k, n = args.k, args.samples
    steps = ["import", *res["study"]["stage_s"], "report"]
    peak = {"import": res["import"]["driver_mb"], **res["study"]["peak_mb"], "report": res["report"]["driver_mb"]}
    wall = {"import": res["import"]["wall_s"], **res["study"]["stage_s"], "report": res["report"]["wall_s"]}
    total = sum(wall.values())
    L = [f"# Rehearsal: one K of the paper's CIFAR-10 sweep at full size (K = {k:,}, 2 x {n:,} samples)", "",
         f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['gpu']}. Date: {dt.date.today().isoformat()}.",
         f"Command: `{res['command']}`. Load average before: {res['load0']}; after: {res['load1']}.",
         "", "The world (benchmarks/rehearsal.py's docstring): 50,000 known-manifold discs at 32x32 RGB as the K-set; "
         f"eval and ref sets of {n:,} each in {args.files} .npz files, 30% K-set copies + noise, 20% off-manifold "
         "images with a near-copy in the other set, the rest off-manifold images of their own; l2 and lpips-alex "
         "(lpips's random AlexNet backbone), top-5, d_train and d_synth; `raystudy import-samples`, "
         "`raystudy.study.run` (knn, classify, figures), `raystudy report`.", "",
         "| step | wall | driver peak (MB) | largest Ray worker (MB) |", "|---|---:|---:|---|"]
    for s in steps:
        w = res["study"]["worker_mb"].get(s)
        L.append(f"| {s} | {wall[s]:.0f} s | {peak.get(s, '-')} | {f'{w[1]} ({w[0]})' if w else '-'} |")
    L += [f"| **all** | **{total / 60:.1f} min** | {max(v for v in peak.values() if isinstance(v, (int, float)))} | |",
          "", "## The known answer", ""]
    c = res["check"]
    L.append(f"Truth by construction: {', '.join(f'{v:,} {s}' for s, v in c['truth'].items())}.")
    L.append("")
    L.append("| metric | samples | labels wrong | memorized / spurious / generalized | memorized d_train max | "
             "others d_train min | spurious d_synth max | generalized d_synth min |")
    L.append("|---|---:|---:|---|---:|---:|---:|---:|")
    for metric in ("l2", "lpips-alex"):
        if metric in c:
            r, g = c[metric], c[metric]["margins"]
            counts = " / ".join(f"{r['counts'][s]:,}" for s in LABELS)
            L.append(f"| {metric} | {r['n']:,} | **{r['wrong']}** | {counts} | "
                     f"{g['memorized d_train max']:.3g} | {g['others d_train min']:.3g} | "
                     f"{g['spurious d_synth max']:.3g} | {g['generalized d_synth min']:.3g} |")
    nl = c["null_l2"]
    L += ["", f"Null (l2, {nl['n']} held-out queries): memorized {nl['stored_memorized']:.3f}, spurious "
          f"{nl['stored_spurious']:.3f} in `null_fractions`; a brute force here (direct differences, float64): "
          f"{nl['memorized']:.3f} / {nl['spurious']:.3f}."]
    if "paper" in res:
        p = res["paper"]
        L += ["", "## The paper's distance algorithm", "",
              f"`benchmarks/knn.py`'s transcription of the reference's `run_distances.py` `get_top_dists`/`dist_fn` "
              f"with `lpips.py` `ModifiedLPIPS.forward(x, y, unsqueeze=True)`, on one block of {p['slice']} "
              f"(eval samples x training images): {p['paper_s']} s; ours on the same slice (embed both + search) "
              f"{p['ours_s']} s; top-5 identical: {'yes' if p['same_top5'] else 'NO'}. The unit's LPIPS has "
              f"{p['unit_pairs']:,} pairs (d_train + d_synth): the paper's algorithm, by its N x M cost, "
              f"**{p['paper_unit_h']} h** on this machine; ours: the knn stage's lpips share of "
              f"{res['study']['stage_s'].get('knn', 0):.0f} s (both metrics).",
              "", f"The search's physical limit here: float32 GEMM at {res['gemm'] / 1e9:.0f} G multiply-adds/s "
              f"(torch, one {4096} x 3490 product), so LPIPS d_train + d_synth ({res['lpips_dim']} dims) cannot take "
              f"less than {p['unit_pairs'] * res['lpips_dim'] / res['gemm']:.0f} s and l2 (3072 dims) "
              f"{p['unit_pairs'] * 3072 / res['gemm']:.0f} s."]
    return "\n".join(L) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=50_000, help="training images (%(default)s)")
    p.add_argument("--samples", type=int, default=51_200, help="samples per set (%(default)s)")
    p.add_argument("--files", type=int, default=100, help=".npz files per set (%(default)s)")
    p.add_argument("--paper-refs", type=int, default=2048, help="training images in the paper's timed block "
                   "(0: skip it; %(default)s)")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one, removed)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(study_child(args.child)), flush=True)
        return
    from machine import loadavg, machine, machine_slug, write_results

    m, res = machine(), {"load0": loadavg()}
    res["command"] = "python benchmarks/rehearsal.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = args.work or Path(tempfile.mkdtemp(prefix="rehearsal-"))
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    try:
        t0 = time.time()
        truth = make_world(work, args.k, args.samples, args.files)
        print(f"world written in {time.time() - t0:.0f} s", flush=True)
        cli = [py, "-m", "raystudy.cli"]
        res["import"] = timed([*cli, "import-samples", str(work / "rehearsal.yaml"), str(work / "eval"), "--ref",
                               str(work / "ref"), "--study", str(work / "study"), "--k", str(args.k)], print)
        out = subprocess.run([py, __file__, "--child", str(work)], capture_output=True, text=True, env=env)
        got = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if not got:
            sys.exit(out.stdout[-3000:] + out.stderr[-3000:])
        print("\n".join(line for line in out.stdout.splitlines() if not line.startswith("RESULT ")), flush=True)
        res["study"] = json.loads(got[0][7:])
        res["report"] = timed([*cli, "report", str(work / "study")], print)
        res["check"] = check(work, truth)
        print(json.dumps(res["check"], indent=1), flush=True)
        res["gemm"] = gemm_rate()
        res["lpips_dim"] = 3490
        if args.paper_refs:
            res["paper"] = paper_slice(work, args.paper_refs, args.k, args.samples)
        res["load1"] = loadavg()
        slug = machine_slug(m) + ("" if (args.k, args.samples) == (50_000, 51_200) else f"-k{args.k}-n{args.samples}")
        write_results(args.out_dir, f"rehearsal-{slug}", markdown(args, m, res))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
