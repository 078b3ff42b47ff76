"""How often tau_gap's bracket (``raystudy.onset.onset_bracket``) holds the truth, in worlds where
the truth is set by construction.

    .venv/bin/python benchmarks/onset_coverage.py            # 6 worlds x 100 runs, a few seconds

A world: 24 evaluations log-spaced like a run's (``compute.train.eval_steps`` of 900 steps of
128), 6 noise levels, 32 training and 32 held-out items, each item with its own difficulty
(log-normal), a loss that falls by half over training for both sets alike, per-evaluation noise
of each item's loss (``--noise``, relative), and from evaluation 8 on the expected training loss
at one level falls below the held-out loss by ``rate`` per evaluation (down to 5% of it). The
truth is the first evaluation at which the expected relative gap reaches ``onset.RHO``: what the
rule would find with infinitely many items. Reported per world: how often the bracket holds
it, how often the rule found an onset, how often tau_gap is the truth exactly, and the
bracket's median width in evaluations. Writes benchmarks/results/onset-coverage.md (a property
of the rule, not of the machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import write_results  # noqa: E402  (benchmarks/machine.py)

LEVELS, ITEMS, START = 6, 32, 8


def world(rng, t, rate: float, noise: float):
    """One run's per-item losses (E, L, n) for both sets, and the index of the truth (-1: none)."""
    from raystudy import onset

    E = len(t)
    d_tr, d_ho = rng.lognormal(0, 0.5, (2, 1, LEVELS, ITEMS))
    drift = np.linspace(1, 0.5, E)[:, None, None]
    frac = np.clip(1 - rate * np.clip(np.arange(E) - START + 1, 0, None), 0.05, 1)
    mult = np.ones((E, LEVELS, 1))
    mult[:, 0, 0] = frac
    tr = d_tr * drift * mult * (1 + noise * rng.standard_normal((E, LEVELS, ITEMS)))
    ho = d_ho * drift * (1 + noise * rng.standard_normal((E, LEVELS, ITEMS)))
    reached = 1 - frac >= onset.RHO
    return tr, ho, int(np.argmax(reached)) if reached.any() else -1


def coverage(runs: int, seed: int = 0) -> list[dict]:
    from raystudy import onset
    from raystudy.compute.train import eval_steps

    t = np.array(sorted(eval_steps(900, 24))) * 128
    rng = np.random.default_rng(seed)
    rows = []
    for rate in (0.05, 0.15, 0.5):
        for noise in (0.1, 0.3):
            held = found = exact = 0
            widths = []
            for _ in range(runs):
                tr, ho, true = world(rng, t, rate, noise)
                o = onset.gap_onset(t, tr, ho)
                lo, hi = onset.onset_bracket(t, tr, ho, tau=o["tau_gap"])
                truth = t[true] if true >= 0 else np.inf
                held += lo <= truth <= hi
                found += not o["censored"]
                exact += o["tau_gap"] == truth
                widths.append(np.searchsorted(t, hi) - np.searchsorted(t, lo) if np.isfinite(hi) else np.nan)
            rows.append({"rate": rate, "noise": noise, "held": held / runs, "found": found / runs,
                         "exact": exact / runs, "width": float(np.nanmedian(widths)), "truth": t[true] if true >= 0 else None})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=100, help="simulated runs per world (default 100)")
    p.add_argument("--seed", type=int, default=0, help="the simulation's seed (default 0)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="where the results file goes")
    args = p.parse_args(argv)
    rows = coverage(args.runs, args.seed)
    lines = ["# tau_gap's bracket against a known onset", "",
             "- command: `" + " ".join([".venv/bin/python benchmarks/onset_coverage.py",
                                        *(argv if argv is not None else sys.argv[1:])]) + "`",
             f"- date: {dt.date.today().isoformat()}; {args.runs} simulated runs per world (module docstring)", "",
             "| gap per evaluation | item noise | truth (images seen) | bracket holds the truth | onset found | "
             "tau_gap = truth | median width (evaluations) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['rate']} | {r['noise']} | {r['truth']:,} | {r['held']:.2f} | {r['found']:.2f} | "
                     f"{r['exact']:.2f} | {r['width']:.0f} |")
    write_results(args.out_dir, "onset-coverage", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
