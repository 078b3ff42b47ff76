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
    p.add_argument("--out", default="studies/toy", help="output folder: tables/ (runs, samples, neighbors, labels, fractions), models/ "
                        "(EMA checkpoints), figures/, attractors.json (default %(default)s)")
    p.add_argument("--ks", type=_ints, default=d.ks, help="K values whose energy landscapes are drawn (default 2,9,1000); the last one is also "
                        "compared with the exact DenseAM energy")
    p.add_argument("--sweep", type=_ints, default=d.sweep, help="K values of the transition curve (default 2,4,9,16,32,100,1000); every K in --ks "
                        "is run too")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps per K (batch {d.batch}, Adam, EMA 0.999; default %(default)s)")
    p.add_argument("--n-samples", type=int, default=d.n_samples, help="samples per set (eval and ref) per K (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the circle, the K-subsets, training and sampling (default %(default)s)")
    p.add_argument("--model", choices=["mlp", "empirical"], default=d.model,
                   help="mlp: trained score network; empirical: the exact memorizer of the K points (default %(default)s)")
    p.add_argument("--delta-m", type=float, default=d.delta_m, help="memorized if the nearest training point is this close, Euclidean (default %(default)s); "
                        "changing it on a finished --out only relabels")
    p.add_argument("--delta-s", type=float, default=d.delta_s, help="spurious if not memorized and the nearest sample of the independent ref set is this "
                        "close (default %(default)s)")
    p.add_argument("--cluster-threshold", type=float, default=d.cluster_threshold,
                   help="single-linkage distance that joins samples into one attractor (agglomerative clustering; default %(default)s)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2000 steps, 100 samples, --ks 2,9 and --sweep 2,9 (overrides those options)")
    return p


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    cfg = ToyConfig(ks=a.ks, sweep=a.sweep, seed=a.seed, model=a.model, steps=a.steps, n_samples=a.n_samples,
                    delta_m=a.delta_m, delta_s=a.delta_s, cluster_threshold=a.cluster_threshold)
    if a.quick:
        cfg = replace(cfg, ks=(2, 9), sweep=(2, 9), steps=2000, n_samples=100)
    from .. import tables
    from . import figures
    from .study import chance_memorized, energy_vs_dense_am, landscape, run_toy, train_points

    try:
        out = run_toy(cfg, a.out)
    except ValueError as e:
        print(f"raystudy toy: {e}", file=sys.stderr)
        return 2
    fr = tables.read_pandas(out, "fractions").set_index("K")[
        ["n", "memorized", "spurious", "generalized", "ratio_memorized"]]
    fr["chance_memorized"] = [chance_memorized(train_points(cfg, k), cfg.delta_m) for k in fr.index]
    print(f"fractions per K (l2 = Euclidean distance in the plane, delta_m={cfg.delta_m}, delta_s={cfg.delta_s}):")
    print(fr.to_string(float_format=lambda v: f"{v:.3f}"))
    print("chance_memorized: what a model that learned the whole circle would be labelled memorized, "
          "because training points lie within delta_m of so much of it")
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
    figures.memorized_vs_chance(tables.read_pandas(out, "fractions"), fr["chance_memorized"].to_dict(),
                                fig_dir / "memorized_vs_chance.png")
    report["fractions"] = fr.reset_index().to_dict(orient="records")
    report["dense_am_beta"] = cmp["beta"]
    report["dense_am_correlation"] = {"R 0.5-1.5": cmp["correlation"], "R 0.7-1.3": cmp["correlation_core"]}
    tmp = Path(out) / ".attractors.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, Path(out) / "attractors.json")
    print(f"figures in {fig_dir}; tables in {Path(out) / 'tables'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
