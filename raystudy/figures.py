"""The figures stage: the transition curve and a nearest-neighbour grid, drawn by
``raystudy.analysis`` (the same drawings as ``raystudy report``), and for the circle its own
landscapes and energies (``raystudy.toy.report``)."""

from __future__ import annotations

import json
from pathlib import Path

from . import tables


def draw_study(stage, cfg, study_dir) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .analysis import figures, images, load

    fig_dir = Path(study_dir) / "figures"
    st = load(study_dir, tables=("fractions", "labels"))
    tables.write_figure(figures.transition_figure(st, n_boot=200), fig_dir / "transition.png")
    if cfg.data.name == "circle":
        from .toy.report import circle_report

        circle_report(cfg, study_dir)
    else:  # the grid at the K whose memorized fraction is nearest 1/2: all three labels likely
        metric = cfg.knn.metrics[0]
        mem = st.fractions[st.fractions.metric == metric].groupby("K").memorized.mean()
        k = int((mem - 0.5).abs().idxmin())
        tables.write_figure(images.nn_grid(study_dir, K=k, label=None, metric=metric, config=cfg.to_dict()),
                            fig_dir / "nn_grid.png")
    tables.write_text(fig_dir / "made-with.json", json.dumps(stage.meta(cfg, ("all",))))
