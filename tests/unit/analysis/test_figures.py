"""raystudy.analysis.figures: the energy figure draws both values against both references with
their labels, and the transition figure draws the null fractions as their own curves (and none
when the table is absent).
"""

import numpy as np

from raystudy import analysis as A
from raystudy.analysis import synthetic


def test_energy_figure_draws_energy_and_the_papers_drift_potential_labelled(study):
    from raystudy.analysis.figures import energy_figure

    fig = energy_figure(A.load(study, tables=["energy"]))
    titles = [ax.get_title() for ax in fig.axes]
    ylabels = " ".join(ax.get_ylabel() for ax in fig.axes)
    for value in ("energy", "drift_potential"):
        for ref in ("train", "held-out"):
            assert f"small-unet: {value}, references = {ref}" in titles, titles
    assert "-log p_t" in ylabels and "the paper's number" in ylabels


def test_transition_figure_draws_the_null_as_its_own_curve(tmp_path):
    from raystudy import tables
    from raystudy.analysis.figures import transition_figure

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
