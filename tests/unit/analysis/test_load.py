"""raystudy.analysis.load: several studies loaded into one set of tables with a ``study``
column, absent tables, the DuckDB views (and the example query against pandas), and the error
for a folder that is not a study.
"""

import numpy as np
import pytest

from raystudy import analysis as A


def test_load_several_studies_and_duckdb_views(study, study2):
    st = A.load(study, study2)
    assert st.names == ["small-unet", "large-unet"]
    assert list(st.labels.columns[:1]) == ["study"]
    assert st.labels.groupby("study").size().to_dict() == {"small-unet": 400, "large-unet": 200}
    assert st.has("basins") and not st.has("basin_trials")
    assert st.stages["small-unet"] is not None and st.stages["large-unet"] is None
    assert A.load([study, study2]).names == st.names

    con = A.connect(study, study2)
    n = con.sql("SELECT study, count(*) AS n FROM labels GROUP BY study ORDER BY study").df()
    assert dict(zip(n.study, n.n)) == {"small-unet": 400, "large-unet": 200}
    assert con.sql("SELECT count(*) AS n FROM basin_trials").df().n.iloc[0] == 0  # absent table: an empty view
    q = con.sql(A.EXAMPLE_QUERY).df()
    want = st.labels.assign(m=st.labels.label == "memorized", t=st.labels.d_train <= 0.05) \
        .groupby(["study", "K"])[["m", "t"]].mean()
    got = q.set_index(["study", "K"])
    np.testing.assert_allclose(got.loc[want.index, "memorized_as_labelled"], want["m"])
    np.testing.assert_allclose(got.loc[want.index, "memorized_at_0_05"], want["t"])

    with pytest.raises(A.AnalysisError, match="not a study folder"):
        A.load(study.parent / "nowhere")


def test_main_keeps_the_main_model_of_the_tables_asked_for(axes_study):
    d, main_labels, main_fractions = axes_study
    st = A.load(d)
    # three more checkpoints, each with half the main model's samples
    assert len(st.labels) == 2.5 * len(main_labels) and len(st.fractions) == 4 * len(main_fractions)
    one = st.main(["labels", "fractions", "no-such-table"])
    assert list(one.frames) == ["labels", "fractions"]
    # the rows are the main model's, as written: its labels' distances, its fractions
    got = one.labels.sort_values(["K", "seed", "metric", "sample_id"])["d_train"].to_numpy()
    want = main_labels.sort_values(["K", "seed", "metric", "sample_id"])["d_train"].to_numpy()
    np.testing.assert_array_equal(got, want)
    got = one.fractions.sort_values(["K", "seed"])["memorized"].to_numpy()
    np.testing.assert_array_equal(got, main_fractions.sort_values(["K", "seed"])["memorized"].to_numpy())
    assert set(st.main().frames) == set(st.frames)
