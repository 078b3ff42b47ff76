"""Where the knn stage's time goes, and the torch search beside FAISS's.

    .venv/bin/python benchmarks/search.py                       # ~15 min on 2 shared cores
    .venv/bin/python benchmarks/search.py --crowd-refs 2000 --uniform-refs 5000 --quick

Both parts search one knn batch (``--queries``, default 1,024 = knn.batch_size) against
``M`` references at 1 thread (a knn actor with knn.faiss_threads = 1 gets one), l2 on
32x32x3 images (embedding = pixels / sqrt(3,072)), top-5:

* crowd: the issue's slow case. The exact memorizer of K = 2 random uniform images
  (raystudy.models.memorizer.EmpiricalEpsilon, DDIM-50, sampling.sample_images) gives samples that
  are copies of the two images up to float32 rounding (~1e-17 apart); the d_synth search of
  eval samples against the ref set then has ~M/2 references inside the float32 error band
  of every query. "before" is raystudy/search.py as of ``--before`` (git), loaded from git;
  "after" is this checkout's, with the FAISS and the torch backend.
* uniform: random uniform images as queries and references (no crowd): FAISS vs torch on
  this CPU, and before vs after.

Every variant's top-5 must equal the others' (indices and float64 distances); the file says
whether they did. Times for a whole set of 50,000 eval samples are extrapolated from the one
batch (the cost per batch of queries is the same for every batch), and marked so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from machine import loadavg, machine, machine_slug, write_results  # noqa: E402


def old_search(rev: str):
    """raystudy/search.py at git revision ``rev``, as a module of its own."""
    src = subprocess.run(["git", "-C", str(HERE.parent), "show", f"{rev}:raystudy/search.py"],
                         capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="search-before-")) / "search_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("search_before", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def memorizer_samples(n: int, seed0: int, train: np.ndarray, steps: int, cache: Path) -> np.ndarray:
    """n DDIM samples of the exact memorizer of ``train`` (cached: they take ~7 ms each)."""
    import torch

    from raystudy.compute.generate import make_scheduler, sample_images
    from raystudy.config import from_dict
    from raystudy.models.memorizer import EmpiricalEpsilon
    from raystudy.models.unet import build_train_scheduler

    f = cache / f"memorizer-K{len(train)}-s{seed0}-n{n}-steps{steps}.npy"
    if f.exists():
        return np.load(f)
    cfg = from_dict({"model": {"type": "empirical"}, "generate": {"steps": steps}})
    model = EmpiricalEpsilon(torch.from_numpy(train), build_train_scheduler(cfg.model).alphas_cumprod)
    sch = make_scheduler(cfg.generate, cfg.model)
    out = np.concatenate([sample_images(model, sch, range(seed0 + s, seed0 + min(n, s + 500)), train.shape[1:])
                          for s in range(0, n, 500)])
    np.save(f, out)
    return out


def time_variants(q, r, k, variants, log, label):
    rows, answers = [], {}
    for name, fn in variants:
        st: dict = {}
        t0 = time.perf_counter()
        d, i = fn(q, r, k, st)
        wall = time.perf_counter() - t0
        answers[name] = (d, i)
        rows.append({"variant": name, "wall_s": wall, **st})
        log(f"[{label}] M={len(r)} {name}: {wall:.2f} s {st}")
    d0, i0 = answers[variants[0][0]]
    same = all(np.array_equal(i, i0) and np.array_equal(d, d0) for d, i in answers.values())
    return rows, same


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=1024, help="queries per search: one knn batch (%(default)s)")
    p.add_argument("--crowd-refs", default="2000,5000,10000,20000", help="M of the crowd part (%(default)s)")
    p.add_argument("--uniform-refs", default="5000,20000,50000", help="M of the uniform part (%(default)s)")
    p.add_argument("--before", default="bfea8f3", help="git revision of the search before (%(default)s)")
    p.add_argument("--before-max", type=int, default=10000,
                   help="largest crowd M the old search runs at (it grows ~M^2 there; %(default)s)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps of the memorizer's samples (%(default)s)")
    p.add_argument("--threads", type=int, default=1, help="FAISS and torch threads in the searches (%(default)s)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "raystudy-bench-search")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--quick", action="store_true", help="results file gets a -quick suffix")
    args = p.parse_args(argv)
    import torch

    from raystudy.metrics import PixelL2
    from raystudy.metrics.search import knn_search

    args.cache.mkdir(parents=True, exist_ok=True)
    before = old_search(args.before)
    m_info, load0, t_all = machine(), loadavg(), time.perf_counter()
    th = args.threads
    k = 5
    emb = PixelL2()

    def new(backend):
        def fn(q, r, k, st):
            return knn_search(q, r, k, threads=th, stats=st, backend=backend, device="cpu")
        return fn

    def old(q, r, k, st):
        return before.knn_search(q, r, k, threads=th, stats=st)

    rng = np.random.default_rng(0)
    train = rng.uniform(-1, 1, size=(2, 3, 32, 32)).astype(np.float32)
    crowd_ms = [int(x) for x in args.crowd_refs.split(",") if x]
    uni_ms = [int(x) for x in args.uniform_refs.split(",") if x]
    torch.set_num_threads(max(2, th))  # sampling (not timed)
    ev = memorizer_samples(args.queries, 0, train, args.steps, args.cache) if crowd_ms else None
    refs = {mm: memorizer_samples(mm, 10 ** 7, train, args.steps, args.cache) for mm in crowd_ms}
    torch.set_num_threads(th)
    log = lambda s: print(s, flush=True)  # noqa: E731
    crowd = []
    for mm in crowd_ms:
        q, r = emb.embed(ev), emb.embed(refs[mm])
        variants = [("after, faiss", new("faiss")), ("after, torch", new("torch"))]
        if mm <= args.before_max:
            variants.insert(0, ("before (faiss)", old))
        rows, same = time_variants(q, r, k, variants, log, "crowd")
        crowd.append({"m": mm, "rows": rows, "same": same})
    uni = []
    for mm in uni_ms:
        q = emb.embed(rng.uniform(-1, 1, size=(args.queries, 3072)).astype(np.float32))
        r = emb.embed(rng.uniform(-1, 1, size=(mm, 3072)).astype(np.float32))
        rows, same = time_variants(q, r, k, [("before (faiss)", old), ("after, faiss", new("faiss")),
                                             ("after, torch", new("torch"))], log, "uniform")
        uni.append({"m": mm, "rows": rows, "same": same})

    nb = 50000 / args.queries
    L = ["# Exact search: where the knn stage's time goes; torch beside FAISS", "",
         f"Machine: {m_info['cpu']}, {m_info['cores']} cores, torch {m_info['torch']}, {m_info['gpu']}; "
         f"shared with other jobs. Date: {dt.date.today().isoformat()}.",
         f"Command: `python benchmarks/search.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
         f"({time.perf_counter() - t_all:.0f} s wall). Load average before: {load0}; after: {loadavg()}.",
         f"Each search: {args.queries} queries (one knn batch) x M references, d = 3072 (l2 on 32x32x3), "
         f"top-{k}, {th} thread(s) for FAISS and torch (a knn actor's). \"before\" = raystudy/search.py at "
         f"`{args.before}`. The 50,000-query column is the batch's time x {nb:.1f} (**extrapolated**).", ""]
    cols = ("| M | variant | seconds | 50,000 queries (extrapolated) | float32 candidates s | float64 ranking s "
            "| crowd s | float64 distances per query | queries searched again | queries settled as a crowd |")
    for title, part in (("Crowd: the exact memorizer at K = 2 (the issue's slow case)", crowd),
                        ("Uniform random images (no crowd)", uni)):
        L += [f"## {title}", "", cols, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for block in part:
            for r in block["rows"]:
                L.append(f"| {block['m']} | {r['variant']} | {r['wall_s']:.2f} | {r['wall_s'] * nb / 60:.1f} min "
                         f"| {r.get('faiss_s', 0):.2f} | {r.get('exact_s', 0):.2f} | {r.get('crowd_s', 0):.2f} "
                         f"| {r.get('exact_pairs', 0) / args.queries:.1f} | {r.get('searched_again', '-')} "
                         f"| {r.get('crowded', '-')} |")
        L += ["", "Top-5 identical (indices and float64 distances) across the variants of each M: "
              + ", ".join(f"M = {b['m']}: {'yes' if b['same'] else 'NO'}" for b in part), ""]
    L += ["The old search counted `searched_again` only when some of the queries had settled, so it "
          "reports 0 where every query of the batch was searched again (the crowd); the new one never searches "
          "again: queries its first candidates cannot settle are a crowd.", ""]
    write_results(args.out_dir, f"search-{machine_slug(m_info)}{'-quick' if args.quick else ''}", "\n".join(L), log)


if __name__ == "__main__":
    main()
