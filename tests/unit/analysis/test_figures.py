"""raystudy.analysis.plots: the energy figure draws both values against both references with
their labels; the transition figure draws the null fractions as their own curves (and none when
the table is absent), labels short K grids with the grid K, keeps its numbers and legend off the
data and is saved at 150 dpi; figures, gallery and captions share one palette.
"""

import re

import numpy as np
import pandas as pd

from raystudy import analysis as A
from raystudy.analysis import synthetic


def test_energy_figure_draws_energy_and_the_papers_drift_potential_labelled(study):
    from raystudy.analysis.plots import energy_figure

    fig = energy_figure(A.load(study, tables=["energy"]))
    titles = [ax.get_title() for ax in fig.axes]
    ylabels = " ".join(ax.get_ylabel() for ax in fig.axes)
    for value in ("energy", "drift_potential"):
        for ref in ("train", "held-out"):
            assert f"small-unet: {value}, references = {ref}" in titles, titles
    assert "-log p_t" in ylabels and "the paper's number" in ylabels


def test_transition_figure_draws_the_null_as_its_own_curve(tmp_path):
    from raystudy import tables
    from raystudy.analysis.plots import transition_figure

    d = synthetic.write_study(tmp_path / "with-null", ks=(2, 16, 128), seeds=(0,), n=12, train_log=False,
                              stages=False)
    null = {"K": [2, 16, 128], "seed": [0, 0, 0], "metric": ["l2"] * 3, "n": [50] * 3,
            "memorized": [0.0, 0.04, 0.3], "spurious": [0.1, 0.2, 0.5], "generalized": [0.9, 0.76, 0.2],
            "ratio_memorized": [0.0, 0.0, 0.1]}
    tables.write_part(d, "null_fractions", "all", tables.to_table("null_fractions", null))
    fig = transition_figure(A.load(d), n_boot=20)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    mem = lines["null: held-out images memorized (chance)"]
    assert mem.get_xdata().tolist() == [2, 16, 128] and np.allclose(mem.get_ydata(), [0.0, 0.04, 0.3])
    assert np.allclose(lines["null: held-out images spurious (chance)"].get_ydata(), [0.1, 0.2, 0.5])
    # A study without the table draws no null.
    bare = synthetic.write_study(tmp_path / "bare", ks=(2, 16), seeds=(0,), n=12, train_log=False, stages=False)
    assert not any("null" in ln.get_label() for ln in transition_figure(A.load(bare), n_boot=20).axes[0].get_lines())


def _tick_labels(ax, fig) -> tuple[list[str], list, list[str]]:
    """(the K axis' major labels in view, their boxes on the canvas, its minor labels' texts)."""
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    major = [t for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi and t.get_text()]
    return ([t.get_text() for t in major], [t.get_window_extent() for t in major],
            [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()])


def test_transition_ticks_are_plain_numbers_that_do_not_overlap(tmp_path):
    from raystudy.analysis.plots import transition_figure

    # under two decades: the grid K themselves, no minor labels ('2x10^0 3x10^0' overlapped)
    short = synthetic.write_study(tmp_path / "short", ks=(2, 4, 8, 16), seeds=(0,), n=12, k_half=6,
                                  train_log=False, stages=False)
    fig = transition_figure(A.load(short), n_boot=20)
    labels, boxes, minor = _tick_labels(fig.axes[0], fig)
    assert labels == ["2", "4", "8", "16"] and minor == [], (labels, minor)
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
    # many K under two decades: 1-2-5 steps
    many = synthetic.write_study(tmp_path / "many", ks=(2, 3, 4, 5, 6, 8, 10, 12, 16, 20), seeds=(0,), n=8,
                                 k_half=6, train_log=False, stages=False)
    fig = transition_figure(A.load(many), n_boot=20)
    labels, boxes, minor = _tick_labels(fig.axes[0], fig)
    assert labels == ["2", "5", "10", "20"] and minor == [], (labels, minor)
    # a few K over 2.4 decades: the grid K too
    long = synthetic.write_study(tmp_path / "long", ks=(2, 8, 32, 128, 512), seeds=(0,), n=12,
                                 train_log=False, stages=False)
    fig = transition_figure(A.load(long), n_boot=20)
    labels, boxes, minor = _tick_labels(fig.axes[0], fig)
    assert labels == ["2", "8", "32", "128", "512"] and minor == [], (labels, minor)
    # two K close together: decades, not labels that touch
    close = synthetic.write_study(tmp_path / "close", ks=(10, 11, 100, 1000), seeds=(0,), n=8, k_half=60,
                                  train_log=False, stages=False)
    fig = transition_figure(A.load(close), n_boot=20)
    labels, boxes, minor = _tick_labels(fig.axes[0], fig)
    assert labels == ["10", "100", "1000"] and minor == [], (labels, minor)
    # many K over three decades: decades, written as numbers
    dense = (2, 4, 8, 19, 32, 45, 64, 128, 172, 256, 512, 1597)
    dense = synthetic.write_study(tmp_path / "dense", ks=dense, seeds=(0,), n=8, train_log=False, stages=False)
    fig = transition_figure(A.load(dense), n_boot=20)
    labels, boxes, minor = _tick_labels(fig.axes[0], fig)
    assert labels == ["10", "100", "1000"] and minor == [], (labels, minor)
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))


def test_transition_figure_is_saved_large_with_nothing_over_the_data(tmp_path):
    from PIL import Image

    from raystudy.analysis.plots import save, transition_figure

    d = synthetic.write_study(tmp_path / "s", ks=(2, 8, 32, 128), seeds=(0,), n=12, train_log=False, stages=False)
    fig = transition_figure(A.load(d), n_boot=20)
    data = fig.axes[0]
    # the numbers and the legend live outside the data area: no text or legend on the axes
    assert len(data.texts) == 0 and data.get_legend() is None
    assert any(ax.get_legend() is not None for ax in fig.axes[1:])
    below = [t.get_text() for ax in fig.axes[1:] for t in ax.texts]
    assert any(t.startswith("memorized = 1/2: ") for t in below), below
    png = save(fig, tmp_path / "out" / "transition.png")
    with Image.open(png) as im:
        dpi, (w, h) = im.info["dpi"], im.size
    assert min(dpi) >= 149.9 and w >= 900 and h >= 700, (dpi, w, h)


def test_one_palette_for_the_figures_the_gallery_and_their_captions(study):
    from matplotlib.colors import to_rgba

    from raystudy.analysis.plots import CAPTIONS, sample_gallery, transition_figure

    # the colour word each caption gives a label, as a matplotlib colour ("tab:orange")
    gallery_words = dict((lab, "tab:" + w) for w, lab in re.findall(r"(\w+): (memorized|spurious|generalized)",
                                                                      CAPTIONS["gallery"]))
    transition_words = dict(re.findall(r"(memorized|spurious|generalized) \((\w+)\)", CAPTIONS["transition"].lower()))
    assert set(gallery_words) == set(transition_words) == {"memorized", "spurious", "generalized"}
    assert {lab: "tab:" + w for lab, w in transition_words.items()} == gallery_words
    # the gallery frames each sample in its caption's colour
    fig = sample_gallery(study, metric="l2")
    seen = set()
    for ax in fig.axes:
        lab = ax.get_xlabel().split("\n")[0]
        if lab in gallery_words:
            seen.add(lab)
            assert to_rgba(ax.spines["top"].get_edgecolor()) == to_rgba(gallery_words[lab]), lab
    assert seen == set(gallery_words)
    # and the transition figure draws each curve in the same colour
    ax = transition_figure(A.load(study), n_boot=20).axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    curves = {c.get_label(): c for c in ax.containers}
    for lab, colour in gallery_words.items():
        drawn = curves[lab].lines[0].get_color() if lab in curves else lines[lab].get_color()
        assert to_rgba(drawn) == to_rgba(colour), lab


def test_gap_figure_draws_each_runs_gap_at_its_leading_level():
    from matplotlib import cm
    from matplotlib.colors import LogNorm, to_rgba

    from raystudy.analysis import phase
    from raystudy.analysis.plots import gap_figure
    from tests.unit.analysis.test_phase import EVALS, curves

    rng = np.random.default_rng(21)
    opened, tr4, ho4 = curves(rng, depart=5, level=2, K=4)
    closed, tr16, ho16 = curves(rng, depart=None, K=16)
    other, _, _ = curves(rng, depart=2, level=0, K=4, variant="small")
    lc = pd.concat([opened, closed, other], ignore_index=True)
    gaps = phase.tau_gap(lc)
    fig = gap_figure(lc, gaps)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["base: held-out gap (dot: tau_gap)", "small: held-out gap (dot: tau_gap)"]
    ax = panels[0]
    runs = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in runs] == ["K = 4 (t = 800)", "K = 16 (mean over levels)"]
    # by value, from the per-item losses: the opened run at the level the departure was put at
    # (timestep 800), the censored one averaged over the levels
    assert runs[0].get_xdata().tolist() == EVALS.tolist()
    assert np.allclose(runs[0].get_ydata(), ho4[:, 2].mean(-1) - tr4[:, 2].mean(-1), rtol=0, atol=1e-12)
    assert np.allclose(runs[1].get_ydata(), (ho16.mean(-1) - tr16.mean(-1)).mean(-1), rtol=0, atol=1e-12)
    # colour by K on one log scale, and a dot at tau_gap on its run's curve
    norm = LogNorm(4, 16)
    assert [to_rgba(ln.get_color()) for ln in runs] == [to_rgba(cm.viridis(norm(4))), to_rgba(cm.viridis(norm(16)))]
    dots = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())
                           and not hasattr(c, "get_segments")])
    assert dots.tolist() == [[EVALS[5], ho4[5, 2].mean() - tr4[5, 2].mean()]]
    assert len([ln for ln in panels[1].get_lines() if not ln.get_label().startswith("_")]) == 1
    assert gap_figure(lc.iloc[:0], gaps) is None


def test_tau_figure_draws_tau_gap_beside_tau_mem():
    from matplotlib.colors import to_rgba

    from raystudy.analysis.plots import tau_figure
    from raystudy.analysis.plots.phase import GAP_SHIFT

    tau = pd.DataFrame({"metric": "l2", "variant": "base", "K": [8, 32, 128], "tau": [2000.0, 8000.0, np.nan],
                        "tau_lo": [1500.0, 6000.0, np.nan], "tau_hi": [2600.0, 11000.0, np.nan],
                        "censored": ["", "", "after"], "t_min": 500, "t_max": 16000})
    gaps = pd.DataFrame({"variant": "base", "K": [8, 32, 128], "seed": 0, "tau_gap": [700.0, 3000.0, np.nan],
                         "tau_gap_lo": [500.0, 2000.0, np.inf], "tau_gap_hi": [900.0, np.inf, np.inf],
                         "censored": [False, False, True], "gap_timestep": [100, 400, -1], "t_min": 250,
                         "t_max": 16000, "n_evals": 10, "gap": 0.1})
    ax = tau_figure(tau, None, gaps).axes[0]
    bars = {c.get_label(): c for c in ax.containers}
    mem, gap = bars["base: tau_mem"], bars["base: tau_gap (held-out gap opens)"]
    assert gap.lines[0].get_xdata().tolist() == [8 * GAP_SHIFT, 32 * GAP_SHIFT]
    assert gap.lines[0].get_ydata().tolist() == [700.0, 3000.0]
    # the interval as bars; an open end (inf) clipped at 3x the last evaluation, as tau_mem's
    seg = [s[:, 1].tolist() for s in gap.lines[2][0].get_segments()]
    assert seg == [[500.0, 900.0], [2000.0, 48000.0]]
    assert to_rgba(gap.lines[0].get_color()) == to_rgba(mem.lines[0].get_color())
    cens = {ln.get_label(): ln for ln in ax.get_lines()}["base: tau_gap censored (gap not open by the last evaluation)"]
    assert cens.get_xdata().tolist() == [128 * GAP_SHIFT] and cens.get_ydata().tolist() == [16000]
    assert cens.get_markerfacecolor() == "none"
    # without loss curves, tau_mem alone
    assert not any("tau_gap" in str(c.get_label()) for c in tau_figure(tau).axes[0].containers)
