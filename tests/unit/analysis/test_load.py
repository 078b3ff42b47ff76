"""raystudy.analysis.load: several studies loaded into one set of tables with a ``study``
column, absent tables, the DuckDB views (and the example query against pandas), and the error
for a folder that is not a study, and the main model each study's config names.
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


def _axes_dropped(df):
    keys = [c for c in ("metric", "K", "seed", "sample_id") if c in df]
    return df.drop(columns=[c for c in ("study", "variant", "twin", "images_seen") if c in df]) \
        .sort_values(keys).reset_index(drop=True)


def test_main_is_the_configs_first_variant_not_base(variant_first_study):
    import pandas as pd

    from raystudy.axes import main_rows

    # the config lists small before base: small's final model is the main one, not base's
    d, main_labels, main_fractions = variant_first_study
    st = A.load(d, tables=["labels", "fractions"])
    for t, want in (("labels", main_labels), ("fractions", main_fractions)):
        pd.testing.assert_frame_equal(_axes_dropped(st.main().frames[t]), _axes_dropped(want), check_dtype=False)
    # a frame without the study column, with its study's config
    one = main_rows(st.fractions.drop(columns="study"), st.configs[st.names[0]])
    pd.testing.assert_frame_equal(_axes_dropped(one), _axes_dropped(main_fractions), check_dtype=False)


def test_a_studys_thresholds_are_its_config_over_the_defaults():
    from raystudy.analysis.load import study_thresholds, thresholds
    from raystudy.config import from_dict

    for raw in ({}, {"classify": {"delta_m": {"l2": 0.2}}}, {"classify": {"delta_s": {"lpips-alex": 0.05}}},
                {"classify": {"delta_m": {"l2": 0.3, "lpips-vgg": 0.04}, "delta_s": {"l2": 0.07}}}):
        cfg = from_dict(raw).classify  # what a study run with this config file labels by
        assert study_thresholds(raw) == (cfg.delta_m, cfg.delta_s), raw
        assert thresholds(raw, "l2") == (cfg.delta_m["l2"], cfg.delta_s["l2"])


def test_views_of_a_loaded_study_say_which_model_they_show(axes_study, study):
    d, main_labels, _ = axes_study
    st = A.load(d)
    # "main": the main model's rows of the tables asked for, as main() gives them; "all": every row
    got = st.view("main", ("labels",)).labels.sort_values(["K", "seed", "metric", "sample_id"])["d_train"]
    want = main_labels.sort_values(["K", "seed", "metric", "sample_id"])["d_train"]
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    assert len(st.view("all", ("labels",)).labels) == 2.5 * len(main_labels)
    with pytest.raises(A.AnalysisError, match="'main' or 'all'"):
        st.view("first", ("labels",))
    # the main view is main() with a sentence naming the model, read off the config
    view, note = st.main_view()
    assert len(view.labels) == len(main_labels)
    assert note.startswith("The transition figures and summary show ") and "at its final snapshot" in note
    # a study of one model: its rows as they are, nothing to say
    one = A.load(study)
    view, note = one.main_view()
    assert note == "" and len(view.labels) == len(one.labels)


def test_the_package_names_are_the_modules_functions():
    # the re-exports are the estimators themselves, and the module names do not shadow them
    from raystudy.analysis import fractions, summaries

    assert A.curves is fractions.curves and A.summary is summaries.summary
    assert A.transition_summary is summaries.transition_summary and A.seed_curves is fractions.seed_curves
    assert all(hasattr(A, n) for n in A.__all__)
