"""Peak RSS of the driver while a study streams generation and search (issue 12).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/driver_memory.py 5000 50000

For each n_samples: a fresh study (the exact memorizer on digits, K = 1,024, 2 DDIM steps,
l2 neighbours; a small K would make thousands of exact ties per sample, which the exact
search resolves with large candidate lists: an actor's memory, not the driver's), every
stage run by ``raystudy.study.run`` in this process; the driver's peak resident memory
(``ru_maxrss`` of this process alone: Ray's own processes and the actors are not the
driver) is read after each stage. Each size runs in a fresh subprocess so one size's
peak cannot hide the next one's.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time


def one(n: int) -> dict:
    from raystudy import study
    from raystudy.config import load

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load(os.path.join(root, "tests", "data", "tiny.yaml"),
               ["model.type=empirical", "ks=[1024]", f"generate.n_samples={n}", "generate.steps=2",
                "generate.batch_size=1000", "knn.batch_size=1024", "knn.k=2"])
    peaks = {}

    def echo(line: str) -> None:
        if line.startswith("[") and " done in " in line or "complete, skipped" in line:
            peaks[line[1:line.index("]")]] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="drvmem-") as d:
        study.run(cfg, os.path.join(d, "study"), echo=echo)
    return {"n_samples": n, "rows_generated": 2 * n, "peak_rss_mb_after_stage": {k: round(v) for k, v in peaks.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "wall_s": round(time.time() - t0, 1)}


def main(argv) -> None:
    if argv[:1] == ["--one"]:
        print("RESULT " + json.dumps(one(int(argv[1]))), flush=True)
        return
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"# {platform.node()}: {cpu}, {os.cpu_count()} cores")
    for n in [int(a) for a in argv] or [5000, 50000]:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True)
        res = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if not res:
            sys.exit(out.stdout[-3000:] + out.stderr[-3000:])
        print(res[0][7:], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
