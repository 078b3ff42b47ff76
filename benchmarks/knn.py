"""LPIPS top-k nearest neighbours: embeddings + FAISS (ours) vs the paper's real code.

Both sides in one run, on the same random images and the same network (one
``lpips.LPIPS(net="alex", pnet_rand=True)``: random AlexNet backbone, shipped v0.1 linear
weights, so nothing is downloaded).

* ours: phi(x) once per image (raystudy.metrics.lpips), then the exact FAISS top-k with
  float64 ranking (raystudy.metrics.search.knn_search). Timed in full, best of --repeats.
* paper: the algorithm of the reference code (github.com/Lemon-cmd/
  Diffusion-Models-and-Associative-Memory: ``run_distances.py`` ``get_top_dists`` /
  ``dist_fn`` calling ``lpips.py`` ``ModifiedLPIPS.forward(x, y, unsqueeze=True)``),
  written here from reading it, with lpips.LPIPS's own modules: for each block of 256
  queries, a row of distances to all M references is filled block by block -- for each
  block of 256 references the backbone runs once on the 256 queries and once on the 256
  references, the channel-normalised features are broadcast to all 256 x 256 differences
  (fx[:, None] - fy[None]), squared, averaged over H and W and multiplied by the lin
  weights -- then ``topk`` takes the k smallest of the row. Query blocks are timed in full
  (each one: all M references); sizes up to --paper-full-max run every query block
  (measured), larger ones run --paper-query-blocks of them and scale the time by the
  number of query rows (extrapolated: the cost per query block is the same for every
  block, since each one meets all M references).

Run through benchmarks/run.py (it writes the results file); ``python benchmarks/knn.py``
prints the table only.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raystudy.metrics.lpips import LpipsEmbedding  # noqa: E402
from raystudy.metrics.search import knn_search  # noqa: E402

BLOCK = 256  # the reference code's --eval-batch-size default (and ref batch size)


def add_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("knn")
    g.add_argument("--sizes", default="1000,2000,8000",
                   help="comma-separated N (= M): queries and references (default: %(default)s)")
    g.add_argument("--k", type=int, default=5, help="neighbours per query (default: %(default)s)")
    g.add_argument("--image-size", type=int, default=32,
                   help="H = W of the random RGB images (default: %(default)s)")
    g.add_argument("--paper-full-max", type=int, default=2000,
                   help="sizes up to this run the paper's algorithm on every query block "
                        "(measured in full); larger sizes run --paper-query-blocks blocks and "
                        "extrapolate (default: %(default)s)")
    g.add_argument("--paper-query-blocks", type=int, default=2,
                   help="query blocks of 256 (each against all M references) the paper's "
                        "algorithm runs at sizes above --paper-full-max (default: %(default)s)")
    g.add_argument("--repeats", type=int, default=3,
                   help="runs of our side per size, spread between the paper's query blocks "
                        "(so both sides see the same machine); the fastest is reported "
                        "(default: %(default)s)")
    g.add_argument("--device", default="cpu", help="torch device for both sides (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed of the images and the random backbone "
                   "(default: %(default)s)")


def quick(args: argparse.Namespace) -> None:
    """--quick: a smoke run of a minute or two."""
    args.sizes = "500,1000"
    args.paper_full_max = 500
    args.paper_query_blocks = 1
    args.repeats = 2


# --------------------------------------------------------------------------- ours

def ours_topk(emb: LpipsEmbedding, queries: np.ndarray, refs: np.ndarray, k: int):
    t0 = time.perf_counter()
    eq, er = emb.embed(queries), emb.embed(refs)
    t1 = time.perf_counter()
    st: dict = {}
    sq, idx = knn_search(eq, er, k, stats=st)
    t2 = time.perf_counter()
    return emb.from_sq(sq), idx, {"embed": t1 - t0, "search": t2 - t1, "total": t2 - t0,
                                  "dim": eq.shape[1], **st}


# --------------------------------------------------------------------------- the paper's code

@torch.no_grad()
def paper_metric(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(len(x), len(y)) LPIPS, as ModifiedLPIPS.forward(x, y, unsqueeze=True) computes it,
    with lpips.LPIPS's modules (its scaling layer on [-1, 1] inputs is the reference's
    x * 0.5 + 0.5 followed by ImageNet normalisation)."""
    import lpips

    total = 0.0
    for lin, fx, fy in zip(model.lins, model.net(model.scaling_layer(x)), model.net(model.scaling_layer(y))):
        w = lin.model[-1].weight.reshape(-1)  # the 1x1 conv's weights: (C,)
        fx = lpips.normalize_tensor(fx)[:, None]  # (B, 1, C, H, W)
        fy = lpips.normalize_tensor(fy)[None]  # (1, B', C, H, W)
        mse = (fx - fy).square().mean(dim=(-1, -2))  # (B, B', C): every pair's differences
        total = total + mse @ w
    return total


@torch.no_grad()
def paper_rows(model, xq: torch.Tensor, yr: torch.Tensor, k: int, blocks: list[int], log=None):
    """The reference's get_top_dists/dist_fn for the given query blocks: each block's row of
    distances to all M references, filled 256 references at a time, then topk.
    Returns (dist (n, k), idx (n, k), seconds per query block)."""
    dists, idxs, times = [], [], []
    for b in blocks:
        t0 = time.perf_counter()
        sample = xq[b * BLOCK:(b + 1) * BLOCK]
        row = torch.full((len(sample), len(yr)), float("inf"))
        for i in range(0, len(yr), BLOCK):
            j = min(i + BLOCK, len(yr))
            row[:, i:j] = paper_metric(model, sample, yr[i:j])
        d, i = row.topk(min(k, row.shape[1]), dim=1, largest=False)
        times.append(time.perf_counter() - t0)
        dists.append(d)
        idxs.append(i)
        if log:
            log(f"[knn]   paper query block {b}: {times[-1]:.1f}s")
    return torch.cat(dists).double().numpy(), torch.cat(idxs).numpy(), times


# --------------------------------------------------------------------------- the benchmark

def run(args: argparse.Namespace, log=print, progress=None) -> dict:
    """Both sides at every size; ``progress(result so far)`` is called after each size."""
    sizes = [int(s) for s in str(args.sizes).split(",") if s]
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    emb = LpipsEmbedding("alex", pnet_rand=True, device=dev)
    model = emb.model  # the lpips.LPIPS module itself: both sides use the same weights
    rng = np.random.default_rng(args.seed)
    s = args.image_size
    rows = []
    for si, n in enumerate(sizes):
        m = n
        if n < BLOCK:
            raise ValueError(f"N = M = {n} is smaller than one {BLOCK}-image block")
        queries = rng.uniform(-1, 1, size=(n, 3, s, s)).astype(np.float32)
        refs = rng.uniform(-1, 1, size=(m, 3, s, s)).astype(np.float32)
        xq, yr = emb.preprocess(queries), emb.preprocess(refs)
        if si == 0:  # warm-up: thread pools, allocator, first-call costs (not timed)
            ours_topk(emb, queries[:BLOCK], refs[:BLOCK], args.k)
            paper_metric(model, xq[:16], yr[:16])

        nblocks = math.ceil(n / BLOCK)
        full = n <= args.paper_full_max
        blocks = list(range(nblocks)) if full else list(range(min(nblocks, args.paper_query_blocks)))
        # Ours runs before the paper's first block, after its last, and evenly in between.
        reps = max(1, args.repeats)
        cuts = sorted({round(len(blocks) * r / max(1, reps - 1)) for r in range(reps)}) if reps > 1 else [0]
        runs, d_pap, i_pap, t_blocks = [], [], [], []
        prev = 0
        for c in cuts + [len(blocks)]:
            if c > prev:
                d, i, t = paper_rows(model, xq, yr, args.k, blocks[prev:c], log)
                d_pap.append(d)
                i_pap.append(i)
                t_blocks += t
                prev = c
            if len(runs) < reps:
                runs.append(ours_topk(emb, queries, refs, args.k))
        d_ours, i_ours, t_ours = min(runs, key=lambda r: r[2]["total"])
        d_pap, i_pap = np.concatenate(d_pap), np.concatenate(i_pap)
        nq = len(i_pap)
        # Cost of the rows not run: each query block meets all M references, so its time
        # is the same; the last, partial block costs its share of queries.
        t_paper = sum(t_blocks) if full else float(np.mean(t_blocks)) * n / BLOCK
        same = bool((i_pap == i_ours[:nq]).all())
        dd = float(np.abs(d_pap - d_ours[:nq]).max())
        ratio = t_paper / t_ours["total"]
        log(f"[knn] N=M={n}: ours {t_ours['total']:.2f}s (embed {t_ours['embed']:.2f}s, search "
            f"{t_ours['search']:.2f}s: FAISS {t_ours['faiss_s']:.2f}s, exact {t_ours['exact_s']:.2f}s; "
            f"best of {len(runs)}) | paper {t_paper:.1f}s "
            f"({'measured' if full else f'extrapolated from {len(blocks)} of {nblocks} query blocks'}) "
            f"| {ratio:.0f}x | top-{args.k} identical on {nq} queries: {same}, max |dLPIPS| {dd:.1e}")
        rows.append(dict(n=n, m=m, ours=t_ours, ours_all=[r[2]["total"] for r in runs],
                         t_paper=t_paper, full=full, blocks_run=len(blocks), nblocks=nblocks,
                         t_blocks=t_blocks, ratio=ratio, verify_q=nq, same=same, max_dd=dd))
        res = {"rows": rows, "args": vars(args), "device": str(dev), "dim": rows[0]["ours"]["dim"]}
        if progress and si < len(sizes) - 1:
            progress(res)
    return {"rows": rows, "args": vars(args), "device": str(dev),
            "dim": rows[0]["ours"]["dim"] if rows else None}


def markdown(res: dict) -> str:
    rows, a = res["rows"], res["args"]
    k = a["k"]
    lines = [
        f"| N = M | ours: embed | ours: search (FAISS + exact) | ours: total | paper | paper / ours "
        f"| top-{k} identical (queries checked vs all M) | max abs dLPIPS |",
        "|---:|---:|---:|---:|---|---:|---|---:|",
    ]
    for r in rows:
        o = r["ours"]
        how = ("measured in full" if r["full"] else
               f"extrapolated from {r['blocks_run']} of {r['nblocks']} query blocks")
        lines.append(
            f"| {r['n']} | {o['embed']:.2f} s | {o['search']:.2f} s ({o['faiss_s']:.2f} + "
            f"{o['exact_s']:.2f}) | **{o['total']:.2f} s** | **{r['t_paper']:.0f} s** ({how}) | "
            f"**{r['ratio']:.0f}x** | {'yes' if r['same'] else 'NO'} ({r['verify_q']} x {r['m']}) | "
            f"{r['max_dd']:.1e} |")
    lines += ["", "Per size: our runs (s), the paper's seconds per query block of 256 (min / median / max):", ""]
    for r in rows:
        tb = np.array(r["t_blocks"])
        lines.append(f"- N = {r['n']}: ours {', '.join(f'{t:.2f}' for t in r['ours_all'])} "
                     f"(against our slowest run: {r['t_paper'] / max(r['ours_all']):.0f}x); paper "
                     f"{tb.min():.1f} / {np.median(tb):.1f} / {tb.max():.1f} over {len(tb)} block(s); "
                     f"exact distances recomputed: {r['ours']['exact_pairs']} "
                     f"({r['ours']['exact_pairs'] / r['n']:.2f} per query), queries searched again: "
                     f"{r['ours']['searched_again']}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(p)
    p.add_argument("--quick", action="store_true", help="small sizes, fewer repeats")
    args = p.parse_args(argv)
    if args.quick:
        quick(args)
    print(markdown(run(args)))


if __name__ == "__main__":
    os.environ.setdefault("KMP_WARNINGS", "0")
    main()
