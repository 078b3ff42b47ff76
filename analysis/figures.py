"""Redraw a study's figures from its tables: python analysis/figures.py STUDY_DIR [--metric l2]."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raystudy import tables  # noqa: E402
from raystudy.config import load  # noqa: E402
from raystudy.data import load_dataset  # noqa: E402
from raystudy.figures import nn_grid, transition_curve  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("study", type=Path, help="study directory (holds config.yaml and tables/)")
    p.add_argument("--metric", default="l2", help="metric for the nearest-neighbour grid")
    p.add_argument("--out", type=Path, default=None, help="output folder (default STUDY/figures)")
    a = p.parse_args()
    out = a.out or a.study / "figures"
    print(transition_curve(tables.read_pandas(a.study, "fractions"), out / "transition.png"))
    dataset = load_dataset(load(a.study / "config.yaml").data)
    print(nn_grid(a.study, dataset, out / f"nn_grid_{a.metric}.png", metric=a.metric))


if __name__ == "__main__":
    main()
