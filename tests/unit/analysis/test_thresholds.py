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
    from raystudy.labels import fractions, label_samples

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
