"""raystudy.analysis.thresholds: relabelling from the stored distances equals the classify
stage's labelling on every cell of the threshold grid, and the grid's crossing K and spurious
peak are those of the relabelled curves.
"""

import numpy as np
import pandas as pd
import pytest

from raystudy import analysis as A
from tests.unit.analysis.test_stats import _crossing_loop


def test_relabel_grid_equals_classify_on_every_cell(study):
    from raystudy.compute.classify import fractions, label_samples

    lab = A.load(study, tables=["labels"]).labels
    dm, ds = A.default_grid(0.1, 5), A.default_grid(0.1, 4, span=3)
    grid = A.threshold_grid(lab, dm, ds)
    assert len(grid) == len(dm) * len(ds)
    for _, row in grid.iterrows():
        labels = label_samples(lab.d_train, lab.d_synth, row.delta_m, row.delta_s)
        np.testing.assert_array_equal(A.relabel(lab.d_train, lab.d_synth, row.delta_m, row.delta_s), labels)
        fr = pd.DataFrame(fractions(lab.K.to_numpy(), lab.seed.to_numpy(), lab.metric.to_numpy(), labels))
        curve = fr.groupby("K")[["memorized", "spurious"]].mean()
        assert row.k_cross == pytest.approx(_crossing_loop(curve.index.to_numpy(), curve.memorized.to_numpy()))
        assert row.spurious_peak_k == curve.spurious.idxmax()
        assert row.spurious_peak == pytest.approx(curve.spurious.max())
    # the config's own thresholds give back the stored labels
    same = A.relabel_table(lab, 0.1, 0.1)
    assert (same.label == lab.label).all()
    # the crossing depends on delta_m only, and a looser delta_m never moves it to smaller K
    by_dm = grid.groupby("delta_m")["k_cross"]
    assert (by_dm.nunique() == 1).all()
    assert np.all(np.diff(by_dm.first().to_numpy()) >= 0)


def _memorized_crossings(lab, dm):
    """Crossing K of the memorized fraction at each delta_m, read from samples: per (K, seed) the
    fraction with d_train <= delta_m over every row given, then the mean over seeds."""
    out = []
    for m in dm:
        per_seed = lab.assign(mem=lab.d_train <= m).groupby(["K", "seed"])["mem"].mean()
        curve = per_seed.groupby("K").mean()
        out.append(_crossing_loop(curve.index.to_numpy(), curve.to_numpy()))
    return np.array(out)


def test_threshold_grid_is_one_models_curve_unless_all(axes_study):
    from raystudy.errors import AnalysisError

    d, main_labels, _ = axes_study
    st = A.load(d, tables=["labels"])
    # two checkpoints: the main model (base's final model, images_seen null) and its twin
    lab, final = st.labels, st.configs[st.names[0]]["train"]["images"]
    two = lab[(lab.variant == "base") & (lab.images_seen.isna() | (lab.images_seen == final))]
    assert set(two.twin) == {0, 1}
    dm, ds = A.default_grid(0.1, 3), [0.1]
    want_main, want_pooled = _memorized_crossings(main_labels, dm), _memorized_crossings(two, dm)
    assert want_main[1] > 1.5 * want_pooled[1]  # the two curves cross at clearly different K (38 vs 19)

    main = A.threshold_grid(st.main().labels, dm, ds)
    np.testing.assert_allclose(main.k_cross, want_main)
    np.testing.assert_allclose(main.k_cross, A.threshold_grid(main_labels, dm, ds).k_cross)
    with pytest.raises(AnalysisError, match="several models.*2 twin models.*checkpoints='all'"):
        A.threshold_grid(two, dm, ds)
    pooled = A.threshold_grid(two, dm, ds, checkpoints="all")
    np.testing.assert_allclose(pooled.k_cross, want_pooled)
    with pytest.raises(AnalysisError, match="checkpoints must be"):
        A.threshold_grid(main_labels, dm, ds, checkpoints="pooled")
