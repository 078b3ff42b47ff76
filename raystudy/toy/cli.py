"""`raystudy toy`: the 2-D circle study, a shortcut for `raystudy run configs/circle.yaml`."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

CIRCLE = yaml.safe_load((Path(__file__).with_name("circle.yaml")).read_text())
QUICK = ["ks=[2, 9]", "train.images=1024000", "generate.n_samples=100"]


def main(argv=None) -> int:
    from ..cli import run_command

    p = argparse.ArgumentParser(prog="raystudy toy", description=(
        "The paper's 2-D circle through the study's stages: a score MLP per K (VE SDE, denoising score "
        "matching, EMA), Euler-Maruyama samples, memorized/spurious/generalized labels in the usual "
        "tables, then attractors with their energies (probability-flow ODE, exact divergence), the exact "
        "DenseAM energy at the largest K, and figures. Exactly `raystudy run configs/circle.yaml --study DIR`."))
    p.add_argument("--study", "--out", default="studies/toy", metavar="DIR", dest="study",
                   help="study directory (default %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override one config value, as for `raystudy run`; repeatable")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {' '.join('--set ' + q for q in QUICK)}")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and what each stage would do")
    a = p.parse_args(argv)
    return run_command(CIRCLE, a.study, (QUICK if a.quick else []) + a.overrides, a.dry_run)
