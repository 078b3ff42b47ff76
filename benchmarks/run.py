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
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import knn  # noqa: E402

BENCHMARKS = {"knn": knn}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine() -> dict:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return {"cpu": cpu_model(), "cores": cores, "torch": torch.__version__, "gpu": gpu,
            "torch_threads": torch.get_num_threads()}


def machine_slug(m: dict) -> str:
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|@.*$|processor", "", m["cpu"], flags=re.I)
    gpu = "nogpu" if m["gpu"] == "no GPU" else m["gpu"]
    parts = [cpu, f"{m['cores']}core", f"torch{m['torch'].split('+')[0]}", gpu]
    return re.sub(r"[^a-z0-9.]+", "-", "-".join(parts).lower()).strip("-")


def loadavg() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def knn_report(res: dict, m: dict, cmd: str, wall: float, load0: str, load1: str) -> str:
    a = res["args"]
    gpu_note = ("GPU: **not run** -- this machine has no GPU; `--device cuda` runs both networks "
                "on a GPU (the search stays FAISS on the CPU)." if m["gpu"] == "no GPU" or res["device"] == "cpu"
                else f"Device: {res['device']} ({m['gpu']}).")
    rows = res["rows"]
    ext = ", ".join(f"N={r['n']}: from {r['nb']} full 256x256 block pair(s) of {r['block_pairs']} "
                    f"in the full run" for r in rows)
    return f"""# kNN under LPIPS: embeddings + FAISS vs the paper's pairwise evaluation

Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}, {m['gpu']}.
Date: {dt.date.today().isoformat()}. Command: `{cmd}` ({wall:.0f} s wall).
Load average (1/5/15 min) before: {load0}; after: {load1} (other processes on the
machine slow both sides alike; the ratio is the meaningful number).

Setup: N random queries and M = N random references, {a['image_size']}x{a['image_size']} RGB in
[-1, 1]; one `lpips.LPIPS(net="alex", pnet_rand=True)` (random AlexNet backbone, shipped
v0.1 linear weights) used by both sides; top-{a['k']}; device {res['device']}; embedding
dimension {res['dim']} (zero-weight channels dropped).

- **ours**: phi(x) once per image for both sets (`raystudy.lpips_embed`), then exact FAISS
  `IndexFlatL2` top-{a['k']} with float64 re-ranking (`raystudy.search.knn_search`). Timed in full
  (best of {a['repeats']}).
- **paper**: for each block of 256 queries and each block of 256 references, all 256x256
  pairs formed by repeating images, the LPIPS network run on both images of every pair
  ({a['pair_batch']} pairs per network call), running top-{a['k']}. **Extrapolated**: timed on
  full 256x256 block pairs, each measured right after one run of ours (so both sides see
  the same machine), the fastest multiplied by N*M / 256^2 ({ext}).
  Correctness: the paper's way run in full (all M references) for the first queries
  shown in the table, and its top-{a['k']} compared with ours.

{knn.markdown(res)}

How they grow: ours embeds each image once, O(N + M) network passes, plus the FAISS search,
O(N M d) multiply-adds in BLAS (at these sizes it still grows slower than N*M: fixed costs
and the float64 re-rank, O(N k d), are not yet negligible). The paper's way runs the network
2 N M times: its per-block-pair time is constant, so its total grows as N*M and the ratio
grows roughly linearly with N.

{gpu_note}
"""


def main(argv=None) -> None:
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
        res = BENCHMARKS[name].run(args, log=lambda s: print(s, flush=True))
        wall, load1 = time.perf_counter() - t0, loadavg()
        text = knn_report(res, m, cmd.strip(), wall, load0, load1)
        out = args.out_dir / f"{name}-{slug}.md"
        tmp = out.with_suffix(".md.tmp")
        tmp.write_text(text)
        tmp.replace(out)
        print(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
