"""Peak memory of the driver, stage by stage, as a new user's study at CIFAR scale.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/driver_memory.py 5000 20000 50000

For each n_samples: a fresh study of the exact memorizer (model.type: empirical) of K = 2
random uniform 32x32 RGB images (data.name: array, 1,000 images), DDIM with --steps steps,
l2 top-5 neighbours, every stage run by ``raystudy.study.run`` in this process. The driver's
resident memory (VmRSS of this process alone: Ray's own processes and the actors are not the
driver) is sampled every 0.05 s by a thread, and its exact high-water mark is the kernel's
VmHWM: a stage that raised VmHWM peaked at VmHWM's value at its end, any other at the largest
sample between its "[stage] ... to do" and "done in" lines. Not ``ru_maxrss``: Linux carries the
parent's resident size at fork into the child's ru_maxrss across execve, so every size's run
reported this script's own ~700 MB (it imports torch to name the machine), while VmHWM belongs to
the new process image. Each size runs in a fresh subprocess so one size's peak cannot hide the next.
Writes benchmarks/results/driver-memory-<machine>.md (``--out-dir``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def status_mb(key: str = "VmRSS", pid: str = "self") -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:  # the process ended
        pass
    return float("nan")


def ray_workers() -> dict[str, float]:
    """VmRSS (MB) of every Ray worker process now, by its process title (``ray::KnnActor`` ...,
    ``ray::IDLE``). RSS counts the pages of Ray's object store a worker has mapped."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::"):
            name = title.split()[0]
            out[f"{name} {pid}"] = status_mb(pid=pid)
    return out


class StageMemory:
    """The driver's peak resident memory per stage, from a study's ``[stage] ... to do`` and
    ``done in`` lines (pass ``echo`` to ``study.run``), and with ``workers`` the largest Ray worker
    per stage. A stage that raised the kernel's VmHWM peaked exactly at its value; any other at
    the largest VmRSS sample (every ``every_s`` s)."""

    def __init__(self, every_s: float = 0.05, workers: bool = False):
        self.peaks, self.hwm, self.hwm0, self.worker_peak = {}, {}, {}, {}
        self.current, self.every_s, self.workers = None, every_s, workers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        n = 0
        while not self._stop.is_set():
            name = self.current
            if name:
                self.peaks[name] = max(self.peaks.get(name, 0.0), status_mb())
                # /proc scans cost more than one status read: workers every 10th sample.
                if self.workers and n % 10 == 0:
                    for w, mb in ray_workers().items():
                        if mb == mb and mb > self.worker_peak.get(name, ("", 0.0))[1]:
                            self.worker_peak[name] = (w.split()[0], mb)
            n += 1
            self._stop.wait(self.every_s)

    def echo(self, line: str) -> None:
        if line.startswith("[") and "]" in line:
            name = line[1:line.index("]")]
            if " to do " in line:
                self.current = name
                self.peaks[name], self.hwm0[name] = status_mb(), status_mb("VmHWM")
            elif " done in " in line:
                self.hwm[name] = status_mb("VmHWM")
                self.peaks[name] = (self.hwm[name] if self.hwm[name] > self.hwm0[name]
                                    else max(self.peaks.get(name, 0.0), status_mb()))
                self.current = None


def one(n: int, steps: int) -> dict:
    import numpy as np

    from raystudy import study
    from raystudy.config import load_config

    with tempfile.TemporaryDirectory(prefix="drvmem-") as d:
        rng = np.random.default_rng(0)
        np.save(os.path.join(d, "images.npy"), rng.integers(0, 256, size=(1000, 3, 32, 32), dtype=np.uint8))
        cfg = load_config(HERE.parent / "tests" / "data" / "tiny.yaml",
                   ["data.name=array", f"data.path={d}/images.npy", "model.type=empirical", "ks=[2]",
                    f"generate.n_samples={n}", f"generate.steps={steps}", "generate.batch_size=500",
                    "knn.batch_size=1024", "knn.k=5", "ray.num_cpus=2"])
        t0 = time.time()
        with StageMemory() as mem:
            study.run(cfg, os.path.join(d, "study"), echo=mem.echo)
        wall = time.time() - t0
        times = json.loads(Path(d, "study", "stages.json").read_text())
    return {"n_samples": n, "peak_mb": {k: round(v) for k, v in mem.peaks.items()},
            "hwm_mb": {k: round(v) for k, v in mem.hwm.items()},
            "stage_s": {k: v["wall_s"] for k, v in times.items()},
            "hwm_run_mb": round(status_mb("VmHWM")), "wall_s": round(wall, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sizes", nargs="*", type=int, default=[5000, 50000], help="samples per set")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps (%(default)s)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(one(args.sizes[0], args.steps)), flush=True)
        return
    from machine import loadavg, machine, machine_slug, write_results

    m, load0, results = machine(), loadavg(), []
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", "--steps", str(args.steps), str(n)],
                             capture_output=True, text=True, env=env)
        res = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if not res:
            sys.exit(out.stdout[-3000:] + out.stderr[-3000:])
        results.append(json.loads(res[0][7:]))
        print(results[-1], flush=True)
    stages = list(dict.fromkeys(s for r in results for s in r["peak_mb"]))
    L = ["# Driver memory per stage", "",
         f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['gpu']}; shared with other jobs. "
         f"Date: {dt.date.today().isoformat()}. Load average before: {load0}; after: {loadavg()}.",
         f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python benchmarks/driver_memory.py "
         f"{' '.join(argv if argv is not None else sys.argv[1:])}`.",
         f"Study: exact memorizer, K = 2 random uniform 32x32 RGB images, DDIM-{args.steps}, l2 top-5, 2 local Ray "
         "CPUs; the driver's peak resident memory per stage (MB: VmHWM where the stage raised it, else the largest "
         "VmRSS sample, every 0.05 s); stage wall time in brackets.",
         "", "| samples per set | " + " | ".join(stages) + " | whole run (VmHWM) |",
         "|---:|" + "---:|" * (len(stages) + 1)]
    for r in results:
        L.append(f"| {r['n_samples']} | " + " | ".join(
            f"{r['peak_mb'].get(s, '-')} ({r['stage_s'].get(s, 0):.0f} s)" for s in stages) + f" | {r['hwm_run_mb']} |")
    L += ["", "The driver's VmHWM after each stage (MB: its high-water mark so far):", "",
          "| samples per set | " + " | ".join(stages) + " |", "|---:|" + "---:|" * len(stages)]
    for r in results:
        L.append(f"| {r['n_samples']} | " + " | ".join(str(r.get("hwm_mb", {}).get(s, "-")) for s in stages) + " |")
    write_results(args.out_dir, f"driver-memory-{machine_slug(m)}", "\n".join(L) + "\n")


if __name__ == "__main__":
    main()
