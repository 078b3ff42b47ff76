"""Run the benchmarks and write their results files.

    python benchmarks/run.py                 # all benchmarks, full sizes
    python benchmarks/run.py --quick         # a smoke run (small sizes)
    python benchmarks/run.py knn --sizes 1000,2000

Each benchmark writes benchmarks/results/<name>-<machine>.md, where <machine> names the
hardware and software, not the host: CPU model, core count, torch version, GPU or "nogpu".
Benchmarks are measurements, not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Before torch or FAISS load OpenMP: idle threads sleep instead of spinning. On a shared
# machine a descheduled thread otherwise keeps its partner spinning at every barrier
# (measured under load: 2-thread embedding 2-3x slower with the default). Both sides of
# every comparison run under the same setting; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import knn  # noqa: E402
from machine import loadavg, machine, machine_slug  # noqa: E402

BENCHMARKS = {"knn": knn}
PARTIAL = ", **partial: still running, sizes done so far**"


def knn_report(res: dict, m: dict, cmd: str, wall: float, load0: str, load1: str,
               partial: bool = False) -> str:
    a = res["args"]
    gpu_note = ("GPU: **not run** -- this machine has no GPU; `--device cuda` runs both sides' "
                "networks on a GPU (our search stays FAISS on the CPU)."
                if m["gpu"] == "no GPU" or res["device"] == "cpu"
                else f"Device: {res['device']} ({m['gpu']}).")
    rows = res["rows"]
    ext = [r for r in rows if not r["full"]]
    ext_note = (" Sizes above " + str(a["paper_full_max"]) + " (" + ", ".join(str(r["n"]) for r in ext)
                + ") are **extrapolated**: the paper's code runs " + str(a["paper_query_blocks"])
                + " full query block(s) of 256 (each against all M references, i.e. every block pair of "
                  "that row), and their mean time is scaled by N / 256 query rows." if ext else "")
    return f"""# kNN under LPIPS: embeddings + FAISS vs the paper's real code

Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}, {m['gpu']}.
Date: {dt.date.today().isoformat()}. Command: `{cmd}` ({wall:.0f} s wall{PARTIAL if partial else ""}).
Load average (1/5/15 min) before: {load0}; after: {load1}. The machine is shared: other
processes slow both sides, which run interleaved (ours before, between and after the
paper's query blocks) so that they see the same machine; compare ratios, not seconds.
OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "")} for both sides.

Setup: N random queries and M = N random references, {a['image_size']}x{a['image_size']} RGB in
[-1, 1]; one `lpips.LPIPS(net="alex", pnet_rand=True)` (random AlexNet backbone, shipped
v0.1 linear weights) used by both sides; top-{a['k']}; device {res['device']}; embedding
dimension {res['dim']} (zero-weight channels dropped).

- **ours**: phi(x) once per image for both sets (`raystudy.metrics.lpips`), then
  `raystudy.metrics.search.knn_search`: FAISS `IndexFlatL2` float32 candidates, float64 distances
  for the candidates that can still be in the top-{a['k']} given float32's error bound. Timed
  in full, best of {a['repeats']}; "search" splits into FAISS + exact ranking.
- **paper**: the reference code's algorithm (github.com/Lemon-cmd/Diffusion-Models-and-Associative-Memory,
  `run_distances.py` `get_top_dists`/`dist_fn` with `lpips.py` `ModifiedLPIPS.forward(..., unsqueeze=True)`),
  re-written from reading it with lpips's own modules: per block of 256 queries, a row of
  distances to all M references is filled 256 references at a time -- the backbone once
  on each of the two blocks, the 256 x 256 normalised feature differences broadcast,
  squared, averaged over H and W, times the lin weights -- then `topk`. Sizes up to
  {a['paper_full_max']} are **measured in full** (every query block).{ext_note}
  Correctness: every query block the paper's code ran is compared with ours (top-{a['k']}
  indices identical, largest LPIPS difference).

{knn.markdown(res)}

How they grow: both sides are O(N M) asymptotically. The paper runs the backbone on
2 N M / 256 images and forms N M C H W feature differences (AlexNet at 32x32: 5,760 per
pair in float32); ours runs the backbone on N + M images, then a float32 matrix product of
N M d multiply-adds (d = {res['dim']}) and about k float64 distances per query. The ratio
therefore settles to a constant as N grows (the paper's feature differences vs a BLAS
matrix product), rather than growing like N.

{gpu_note}
"""


# Benchmarks with their own command line (no Ray; they run unchanged on a GPU box):
# `python benchmarks/run.py throughput --help`, `python benchmarks/run.py precision --help`.
STANDALONE = ("throughput", "precision")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in STANDALONE:
        sys.path.insert(0, str(HERE))
        import precision_check
        import throughput

        return {"throughput": throughput.main, "precision": precision_check.main}[argv[0]](argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmarks", nargs="*", default=[],
                   help=f"which to run (default: all of {', '.join(BENCHMARKS)})")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a minute or so")
    p.add_argument("--out-dir", type=Path, default=HERE / "results",
                   help="where results files go (default: benchmarks/results)")
    p.add_argument("--threads", type=int, default=None, help="torch / FAISS threads (default: all cores)")
    for mod in BENCHMARKS.values():
        mod.add_args(p)
    args = p.parse_args(argv)
    names = args.benchmarks or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if args.threads:
        import faiss
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    if args.quick:
        for n in names:
            BENCHMARKS[n].quick(args)
    m = machine()
    slug = machine_slug(m) + ("-quick" if args.quick else "")
    cmd = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        load0, t0 = loadavg(), time.perf_counter()
        out = args.out_dir / f"{name}-{slug}.md"

        def write(res, partial=False, t0=t0, load0=load0, out=out):
            text = knn_report(res, m, cmd.strip(), time.perf_counter() - t0, load0, loadavg(), partial)
            tmp = out.with_suffix(".md.tmp")
            tmp.write_text(text)
            tmp.replace(out)
            return text

        # The file is rewritten after each size (marked partial), so a long run that is
        # stopped still leaves what it measured.
        res = BENCHMARKS[name].run(args, log=lambda s: print(s, flush=True),
                                   progress=lambda r: write(r, partial=True))
        print(write(res))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
