"""`raystudy toy`: the 2-D circle study, a shortcut for `raystudy run configs/circle.yaml`."""

from __future__ import annotations

import argparse

# The circle study's config (configs/circle.yaml is the same; a test keeps them equal).
CIRCLE = {
    "study": {"name": "circle", "seed": 0},
    "data": {"name": "circle", "size": 100000},
    # Once training points are closer than ~2 delta_m (K >~ pi / delta_m) a Euclidean threshold
    # cannot tell a copy from a new point: the report's chance level says how much "memorized"
    # a perfect generalizer would get, and at K = 1000 the exact DenseAM energy is the test.
    "ks": [2, 4, 9, 16, 32, 100, 1000],
    "seeds": [0],
    "model": {"type": "circle-mlp", "width": 128, "depth": 3, "sigma_max": 1.0, "t_min": 1.0e-5},
    "train": {"images": 5120000, "batch_size": 512, "lr": 0.002, "ema_decay": 0.999, "grad_clip": None,
              "lr_schedule": "cosine", "checkpoint_every": 1024000, "cpus_per_trial": 1},
    "generate": {"n_samples": 200, "sampler": "em", "steps": 500, "batch_size": 200, "workers": 2},
    "knn": {"metrics": ["euclidean"], "k": 5},
    # l2 (always searched, for the ratio test) is the Euclidean distance / sqrt(2) here.
    "classify": {"delta_m": {"euclidean": 0.02, "l2": 0.0141421356}, "delta_s": {"euclidean": 0.02, "l2": 0.0141421356}},
    "ray": {"num_cpus": 2},
}
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
