"""raystudy.analysis.plots.draw_all, the one drawing path: the figures stage writes into the
study's figures/ folder the same figures the report embeds, the phase diagram among them on a
study with snapshots and variants, and records the fingerprint that makes a re-run skip it; the
all-labels neighbour grid is at the K whose memorized fraction is nearest 1/2; samples that are
points (the circle) get no image grids."""

import shutil

import numpy as np
import yaml

from raystudy.analysis import plots, synthetic


def test_the_figures_stage_draws_what_the_report_embeds(axes_study, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from raystudy.analysis.report import write_report
    from raystudy.config import load_config
    from raystudy.study import FIGURES

    d = shutil.copytree(axes_study[0], tmp_path / "phase-unet")
    cfg = load_config(d / "config.yaml")
    assert [t.why for t in FIGURES.missing(cfg, d)] == ["missing"]
    FIGURES.run_units(cfg, d, [t.unit for t in FIGURES.missing(cfg, d)])
    assert FIGURES.missing(cfg, d) == []  # made-with.json holds the stage's fingerprint
    drawn = {p.name for p in (d / "figures").glob("*.png")}
    page = write_report(d, n_boot=20, echo=lambda *a: None)
    embedded = {p.name for p in page.parent.glob("*.png")}
    assert drawn == embedded, drawn ^ embedded
    # snapshots and variants: the phase diagram is among them, drawn from every checkpoint
    assert {"transition.png", "nn_grid.png", "phase.png", "phase_size.png", "crossing_axes.png"} <= drawn, drawn


def test_the_all_labels_grid_is_where_memorized_is_nearest_one_half(axes_study, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    d, main_labels, _ = axes_study
    drawing = plots.draw_all(d, tmp_path / "out", n_boot=20)
    # by hand, from the main model's labels: per K the seeds' mean memorized fraction
    mem = main_labels.assign(m=main_labels["label"] == "memorized").groupby(["K", "seed"])["m"].mean() \
        .groupby("K").mean()
    k = int(mem.index[np.argmin(np.abs(mem.to_numpy() - 0.5))])
    grid = [f for f in drawing.figures if f.path.name == "nn_grid.png"]
    assert len(grid) == 1 and f"K = {k}," in grid[0].caption, (k, [f.caption for f in grid])
    assert all(f.path.parent == tmp_path / "out" and f.path.exists() for f in drawing.figures)


def test_points_in_the_plane_get_no_image_grids(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    d = synthetic.write_study(tmp_path / "points", ks=(2, 16, 128), seeds=(0,), n=12, train_log=False, stages=False)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    circle = {**cfg, "data": {"name": "circle"}, "model": {**(cfg.get("model") or {}), "type": "circle-mlp"}}
    (d / "config.yaml").write_text(yaml.safe_dump(circle, sort_keys=False))
    drawing = plots.draw_all(d, n_boot=20)
    names = {p.name for p in drawing.paths}
    assert {"transition.png", "distances_l2.png", "thresholds_l2.png"} <= names, names
    assert not any(n.startswith(("nn_", "gallery_")) for n in names), names
    assert any("points in the plane, not images" in n for n in drawing.notes), drawing.notes
    assert {p.name for p in (d / "figures").glob("*.png")} == names
