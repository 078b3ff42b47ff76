"""raystudy.analysis.fractions and summaries: the crossing K interpolated in log K (scalar and vectorised, against
a plain-loop reading of the definition), the per-K intervals' coverage and the crossing's
interval on labels drawn with known probabilities, the summary of a synthetic study with a known
transition, and per-seed fractions recomputed from labels against the classify stage's.
"""

import numpy as np
import pandas as pd
import pytest

from raystudy import analysis as A


def test_crossing_is_interpolated_in_log_k():
    # 0.7 at K=32 and 0.3 at K=128: half-way in log K is K=64 (linear in K would give 80).
    ks = [8, 32, 128, 512]
    assert A.crossing_k(ks, [0.9, 0.7, 0.3, 0.1]) == pytest.approx(64.0)
    # one quarter of the way from 8 to 32 in log K
    assert A.crossing_k(ks, [0.6, 0.2, 0.1, 0.0]) == pytest.approx(8 * 4 ** 0.25)
    # exactly 1/2 at a grid point, then below
    assert A.crossing_k(ks, [0.9, 0.5, 0.4, 0.0]) == pytest.approx(32.0)
    # conventions: below at the smallest K -> 0, never below -> inf; the first downward crossing counts
    assert A.crossing_k(ks, [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert A.crossing_k(ks, [0.9, 0.8, 0.7, 0.6]) == np.inf
    assert A.crossing_k(ks, [0.9, 0.4, 0.8, 0.1]) == pytest.approx(np.exp(np.log(8) + 0.8 * np.log(4)))
    assert A.format_k(0.0, ks) == "< 8" and A.format_k(np.inf, ks) == "> 512"


def _crossing_loop(ks, f, level=0.5):
    """An independent, plain-loop reading of the definition."""
    if f[0] < level:
        return 0.0
    for i in range(len(ks) - 1):
        if f[i] >= level > f[i + 1]:
            x0, x1 = np.log(ks[i]), np.log(ks[i + 1])
            return float(np.exp(x0 + (x1 - x0) * (f[i] - level) / (f[i] - f[i + 1])))
    return float("inf")


def test_vectorised_crossings_match_the_definition():
    rng = np.random.default_rng(3)
    ks = np.array([1, 3, 10, 30, 100, 300, 1000])
    curves = np.sort(rng.uniform(0, 1, (500, len(ks))), axis=1)[:, ::-1] + rng.normal(0, 0.1, (500, len(ks)))
    got = A.crossings(ks, curves)
    want = np.array([_crossing_loop(ks, c) for c in curves])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isinf(want).any() and (want == 0).any() and np.isfinite(want[(want > 0)]).any()


def _labels_from_probs(ks, probs, n, seeds=(0,), rng=None):
    """A labels table whose (K, seed) groups are drawn with the given label probabilities."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for k, p in zip(ks, probs):
        for s in seeds:
            lab = rng.choice(3, size=n, p=p)
            rows.append(pd.DataFrame({"study": "x", "metric": "l2", "K": k, "seed": s, "sample_id": np.arange(n),
                                      "label": np.array(A.LABELS, dtype=object)[lab],
                                      "ratio_memorized": lab == 0}))
    return pd.concat(rows, ignore_index=True)


def test_per_k_interval_covers_the_true_fraction_at_its_nominal_rate():
    # 300 groups of n=100 samples with p(memorized)=0.3: a 95% (exact, so slightly
    # conservative) interval should cover 0.3 in 95-99% of groups and be about
    # 2 * 1.96 * sqrt(p (1-p) / n) = 0.18 wide.
    p, n = np.array([0.3, 0.2, 0.5]), 100
    lab = _labels_from_probs(np.arange(1, 301), [p] * 300, n, rng=np.random.default_rng(1))
    bc = A.bootstrap_curves(lab, n_boot=400, level=0.95, seed=2)
    cover = ((bc["memorized_lo"] <= 0.3) & (0.3 <= bc["memorized_hi"])).mean()
    width = (bc["memorized_hi"] - bc["memorized_lo"]).mean()
    assert 0.94 <= cover <= 0.995, cover
    assert width == pytest.approx(2 * 1.96 * np.sqrt(0.3 * 0.7 / n), rel=0.12)
    # the point value is the observed fraction
    obs = lab.groupby("K")["label"].apply(lambda s: (s == "memorized").mean()).to_numpy()
    np.testing.assert_allclose(bc["memorized"].to_numpy(), obs)


def test_crossing_interval_contains_the_true_crossing():
    # true memorized fraction 0.9, 0.7, 0.3, 0.1 at K = 8..512, symmetric about K = 64 in log K:
    # the crossing of any curve through them that is symmetric in log K (the logistic fit) is 64
    ks = [8, 32, 128, 512]
    mem = [0.9, 0.7, 0.3, 0.1]
    probs = [[m, (1 - m) / 2, (1 - m) / 2] for m in mem]
    lab = _labels_from_probs(ks, probs, 1500, seeds=(0, 1), rng=np.random.default_rng(5))
    sm = A.transition_summary(lab, n_boot=500).iloc[0]
    assert sm["k_cross_lo"] <= 64 <= sm["k_cross_hi"], sm
    assert sm["k_cross"] == pytest.approx(64, rel=0.08)
    assert sm["k_cross_fit_hi"] / sm["k_cross_fit_lo"] < 1.5  # 3000 samples per K pin the pooled fit down
    # two seeds say little about a third: the reported interval also holds the seeds' t interval
    assert sm["k_cross_lo"] <= sm["k_cross_fit_lo"] and sm["k_cross_fit_hi"] <= sm["k_cross_hi"]
    assert (sm["k_cross_bracket_lo"], sm["k_cross_bracket_hi"]) == (32, 128) and not sm["k_cross_resolved"]
    assert sm["k_cross_seed_min"] <= sm["k_cross_interp"] <= sm["k_cross_seed_max"]
    assert sm["k_cross_interp"] == pytest.approx(64, rel=0.08)


def test_summary_of_a_synthetic_study(study):
    st = A.load(study)
    sm = A.summary(st, n_boot=300).iloc[0]
    # the study was drawn with p_memorized(K) = 1/(1+(K/40)^2), a logistic in ln K crossing 1/2
    # at K = 40 with width 1/2: the interval holds 40 (with its two seeds it is wide: it holds
    # their t interval), and the pooled fit finds the width
    assert sm["k_cross_lo"] <= 40 <= sm["k_cross_hi"], sm
    assert sm["k_cross_width"] == pytest.approx(0.5, rel=0.25)
    assert sm["k_cross_bracket_lo"] <= sm["k_cross_lo"] and sm["k_cross_hi"] <= sm["k_cross_bracket_hi"]
    # the log-K interpolation is still there, as the curve's own reading
    curve = st.fractions.groupby("K")["memorized"].mean()
    assert sm["k_cross_interp"] == pytest.approx(_crossing_loop(curve.index.to_numpy(), curve.to_numpy()))
    sp = st.fractions.groupby("K")["spurious"].mean()
    assert sm["spurious_peak_k"] == sp.idxmax() and sm["spurious_peak"] == pytest.approx(sp.max())
    assert sm["spurious_peak_k_lo"] < sm["spurious_peak_k"] < sm["spurious_peak_k_hi"]
    # the same numbers from the fractions table alone (counts are n x fraction)
    alone = A.transition_summary(fractions=st.fractions, n_boot=300).iloc[0]
    for c in ("k_cross", "k_cross_lo", "k_cross_hi", "emm", "emm_lo", "emm_hi", "spurious_peak_lo"):
        assert alone[c] == pytest.approx(sm[c]), c


def test_fractions_recomputed_from_labels_match_the_classify_stage(study):
    from raystudy.compute.classify import fractions

    lab = A.load(study, tables=["labels"]).labels
    ours = A.per_seed_fractions(lab).sort_values(["K", "seed"]).reset_index(drop=True)
    theirs = pd.DataFrame(fractions(lab.K.to_numpy(), lab.seed.to_numpy(), lab.metric.to_numpy(),
                                    lab.label.to_numpy(), lab.ratio_memorized.to_numpy()))
    for c in ("n", "memorized", "spurious", "generalized", "ratio_memorized"):
        np.testing.assert_allclose(ours[c].to_numpy(float), theirs[c].to_numpy(float), err_msg=c)


AXES = ["variant", "twin", "images_seen"]
SUMMARY_COLS = ("k_cross", "k_cross_lo", "k_cross_hi", "emm", "ratio_k_cross", "spurious_peak", "spurious_peak_k")


def _memorized_by_hand(labels):
    """Per K: the mean over seeds of each seed's memorized fraction, every row of ``labels`` one sample."""
    per_seed = labels.groupby(["K", "seed"])["label"].apply(lambda s: (s == "memorized").mean())
    return per_seed.groupby("K").mean()


def test_a_study_with_checkpoints_is_summarised_at_its_main_model(axes_study):
    d, main_labels, main_fractions = axes_study
    st = A.load(d)
    # the main model's numbers, and every checkpoint's samples as one curve, from frames
    # without the axis columns (so nothing here depends on how a function picks the model)
    want = A.transition_summary(main_labels.drop(columns=AXES), n_boot=50).iloc[0]
    pooled = A.transition_summary(st.labels.drop(columns=AXES), n_boot=50).iloc[0]
    assert 30 < want["k_cross"] < 60 and pooled["k_cross"] < want["k_cross"] / 3
    got = A.summary(st, n_boot=50).iloc[0]
    for c in SUMMARY_COLS:
        assert got[c] == pytest.approx(want[c]), c
    got_all = A.summary(st, n_boot=50, checkpoints="all").iloc[0]
    for c in SUMMARY_COLS:
        assert got_all[c] == pytest.approx(pooled[c]), c
    # the same from the fractions table alone (the path a study without labels takes)
    alone = A.summary(A.load(d, tables=["fractions"]), n_boot=50).iloc[0]
    assert alone["k_cross"] == pytest.approx(want["k_cross"])
    # the curves: the main model's fractions; pooled, every checkpoint's samples at each (K, seed)
    cv = A.curves(st, n_boot=50)
    np.testing.assert_allclose(cv["memorized"], main_fractions.groupby("K")["memorized"].mean().to_numpy())
    np.testing.assert_allclose(cv["n"], main_fractions.groupby("K")["n"].sum().to_numpy())
    cv_all = A.curves(st, n_boot=50, checkpoints="all")
    np.testing.assert_allclose(cv_all["memorized"], _memorized_by_hand(st.labels).to_numpy())
    assert (cv_all["n_seeds"] == 2).all()


def test_the_transition_figures_show_the_main_model(axes_study):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raystudy.analysis import plots as F

    d, main_labels, _ = axes_study
    st = A.load(d)
    want = A.transition_summary(main_labels.drop(columns=AXES), n_boot=50).iloc[0]
    pooled = A.transition_summary(st.labels.drop(columns=AXES), n_boot=50).iloc[0]

    def texts(fig):
        return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)

    for draw in (A.transition_figure, A.compare_figure):
        fig = draw(st, n_boot=50)
        # the crossing drawn is the main model's (a dashed line at its K)
        xs = [ln.get_xdata()[0] for ax in fig.axes for ln in ax.lines if ln.get_linestyle() == "--"
              and len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]]
        assert xs and all(x == pytest.approx(want["k_cross"]) for x in xs), (draw.__name__, xs)
        plt.close(fig)
    fig = A.transition_figure(st, n_boot=50)
    assert F.crossing_text(want) in texts(fig)
    plt.close(fig)
    fig = A.transition_figure(st, n_boot=50, checkpoints="all")
    assert F.crossing_text(pooled) in texts(fig) and F.crossing_text(want) not in texts(fig)
    plt.close(fig)


def test_a_frame_of_several_models_is_refused_unless_pooled(axes_study):
    d, main_labels, main_fractions = axes_study
    st = A.load(d)
    for call in (lambda: A.transition_summary(st.labels, n_boot=50), lambda: A.transition_summary(fractions=st.fractions),
                 lambda: A.interval_curves(st.fractions, n_boot=50), lambda: A.seed_curves(st.fractions),
                 lambda: A.bootstrap_curves(st.labels, n_boot=50)):
        with pytest.raises(A.AnalysisError, match=r"several models \(phase-unet: 2 variants, 2 twin models, "
                                                  r"2 snapshots\).*checkpoints='all'"):
            call()
    # one model's rows, axis columns and all, are read as they are; pooling is asked for by name
    assert A.transition_summary(fractions=main_fractions, n_boot=50)["k_cross"].iloc[0] == pytest.approx(
        A.transition_summary(fractions=main_fractions.drop(columns=AXES), n_boot=50)["k_cross"].iloc[0])
    assert A.transition_summary(fractions=st.main().fractions, n_boot=50)["k_cross"].iloc[0] == pytest.approx(
        A.transition_summary(fractions=main_fractions, n_boot=50)["k_cross"].iloc[0])
    pooled = A.seed_curves(st.fractions, checkpoints="all")
    np.testing.assert_allclose(pooled["memorized"], _memorized_by_hand(st.labels).to_numpy())
    with pytest.raises(A.AnalysisError, match="checkpoints must be 'main' or 'all'"):
        A.summary(st, checkpoints="pooled")
    # per-seed fractions recomputed from labels keep one row per checkpoint, like the fractions table
    psf = A.per_seed_fractions(st.labels)
    assert len(psf) == len(st.fractions)
