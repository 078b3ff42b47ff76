"""`raystudy toy`: the 2-D circle study, from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from .study import ToyConfig


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _parser() -> argparse.ArgumentParser:
    d = ToyConfig()
    p = argparse.ArgumentParser(prog="raystudy toy", description=(
        "The paper's 2-D circle: a score MLP per K (VE SDE, denoising score matching, EMA), "
        "Euler-Maruyama samples, memorized/spurious/generalized labels in the usual tables, "
        "attractors with their energies (probability-flow ODE, exact divergence), and the exact "
        "DenseAM energy at large K. Re-running with the same --out skips finished K values."))
    p.add_argument("--out", default="studies/toy", help="output folder: tables/, models/, figures/, attractors.json")
    p.add_argument("--ks", type=_ints, default=d.ks, help="K values whose energy landscapes are drawn (default 2,9,1000)")
    p.add_argument("--sweep", type=_ints, default=d.sweep, help="K values of the transition curve (default 2,4,9,16,32,64)")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps per K (batch 512)")
    p.add_argument("--n-samples", type=int, default=d.n_samples, help="samples per set (eval and ref) per K")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the circle, the K-subsets, training and sampling")
    p.add_argument("--model", choices=["mlp", "empirical"], default=d.model,
                   help="mlp: trained score network; empirical: the exact memorizer of the K points")
    p.add_argument("--delta-m", type=float, default=d.delta_m, help="memorized if the nearest training point is this close")
    p.add_argument("--delta-s", type=float, default=d.delta_s, help="spurious if not memorized and a ref sample is this close")
    p.add_argument("--cluster-threshold", type=float, default=d.cluster_threshold,
                   help="single-linkage distance that joins samples into one attractor")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2000 steps, 100 samples, K in 2,9")
    return p


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    cfg = ToyConfig(ks=a.ks, sweep=a.sweep, seed=a.seed, model=a.model, steps=a.steps, n_samples=a.n_samples,
                    delta_m=a.delta_m, delta_s=a.delta_s, cluster_threshold=a.cluster_threshold)
    if a.quick:
        cfg = replace(cfg, ks=(2, 9), sweep=(2, 9), steps=2000, n_samples=100)
    from .. import tables
    from . import figures
    from .study import energy_vs_dense_am, landscape, run_toy

    out = run_toy(cfg, a.out)
    fr = tables.read_pandas(out, "fractions").set_index("K")[["n", "memorized", "spurious", "generalized"]]
    print("fractions per K (l2 = Euclidean distance in the plane):")
    print(fr.to_string(float_format=lambda v: f"{v:.3f}"))
    lands = [landscape(cfg, out, k) for k in cfg.ks]
    report = {}
    for L in lands:
        kinds = [x["kind"] for x in L["attractors"] if x["size"] > 1]
        e_train = float(np.mean(L["energy_train"]))
        print(f"K={L['K']}: {len(kinds)} attractors with >1 sample, {kinds.count('spurious')} spurious; "
              f"mean -log p at the training points {e_train:.2f}")
        report[str(L["K"])] = {"attractors": L["attractors"], "mean_energy_at_training_points": e_train}
    fig_dir = Path(out) / "figures"
    figures.landscapes(lands, fig_dir / "landscapes.png")
    figures.surface(lands[-1], fig_dir / "surface3d.png")
    cmp = energy_vs_dense_am(cfg, lands[-1]["score"])
    figures.learned_vs_exact(cmp, lands[-1]["K"], fig_dir / "learned_vs_exact.png")
    print(f"K={lands[-1]['K']}: learned vs exact DenseAM energy along the radius, beta={cmp['beta']:.0f}: "
          f"correlation {cmp['correlation']:.4f} for R in [0.5, 1.5], {cmp['correlation_core']:.4f} for R in [0.7, 1.3]")
    from ..figures import transition_curve

    transition_curve(tables.read_pandas(out, "fractions"), fig_dir / "transition.png")
    report["dense_am_correlation"] = {"R 0.5-1.5": cmp["correlation"], "R 0.7-1.3": cmp["correlation_core"]}
    tmp = Path(out) / ".attractors.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, Path(out) / "attractors.json")
    print(f"figures in {fig_dir}; tables in {Path(out) / 'tables'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
