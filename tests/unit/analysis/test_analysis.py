"""raystudy.analysis: loading, the numbers behind the curves (checked against independent
computations), the report's files, and that none of it imports torch or Ray.

Study folders here are written table by table (raystudy.analysis.synthetic): seconds, no
training. One test at the end runs the real tiny study (Ray, about a minute).
"""

import base64
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raystudy import analysis as A
from raystudy.analysis import report, synthetic
from raystudy.cli import main

ROOT = Path(__file__).resolve().parents[3]
KS = (2, 8, 32, 128, 512)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return synthetic.write_study(tmp_path_factory.mktemp("an") / "small-unet", ks=KS, seeds=(0, 1), n=40,
                                 k_half=40, basins=True)


@pytest.fixture(scope="module")
def study2(tmp_path_factory):
    return synthetic.write_study(tmp_path_factory.mktemp("an") / "large-unet", ks=KS, seeds=(0,), n=40,
                                 k_half=160, seed=1, train_log=False, stages=False)


# -- no torch, no Ray ---------------------------------------------------------------------------

def test_analysis_imports_neither_torch_nor_ray(study):
    code = textwrap.dedent(f"""
        import sys
        import matplotlib
        matplotlib.use("Agg")
        from raystudy import analysis as A
        st = A.load({str(study)!r})
        sm = A.summary(st, n_boot=50)
        A.transition_figure(st, n_boot=50)
        A.threshold_grid(st.labels, A.default_grid(0.1, 3), A.default_grid(0.1, 3))
        A.connect({str(study)!r}).sql(A.EXAMPLE_QUERY).df()
        A.nn_grid({str(study)!r}, K=8, label="memorized")
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ray"))
        print("LOADED", bad)
        assert not bad, bad
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "LOADED []" in r.stdout


# -- crossing K and spurious peak ---------------------------------------------------------------

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
    from raystudy.labels import fractions

    lab = A.load(study, tables=["labels"]).labels
    ours = A.per_seed_fractions(lab).sort_values(["K", "seed"]).reset_index(drop=True)
    theirs = pd.DataFrame(fractions(lab.K.to_numpy(), lab.seed.to_numpy(), lab.metric.to_numpy(),
                                    lab.label.to_numpy(), lab.ratio_memorized.to_numpy()))
    for c in ("n", "memorized", "spurious", "generalized", "ratio_memorized"):
        np.testing.assert_allclose(ours[c].to_numpy(float), theirs[c].to_numpy(float), err_msg=c)


# -- thresholds ---------------------------------------------------------------------------------

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


# -- loading and DuckDB -------------------------------------------------------------------------

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


def test_training_images_for_the_grid_are_the_digits():
    from sklearn.datasets import load_digits

    idx = [0, 17, 1796]
    img, why = A.train_images({"data": {"name": "digits"}}, idx)
    assert why == "" and img.shape == (3, 1, 8, 8)
    np.testing.assert_array_equal(img[:, 0], load_digits().images[idx] / 8.0 - 1.0)
    none, why = A.train_images({"data": {"name": "folder", "path": "/nonexistent"}}, idx)
    assert none is None and "unavailable" in why


# -- the report (files and page; the browser test is tests/system/test_report_browser.py) ----------------

def _imgs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)]


def _fractions_ks(page: str) -> list[list[int]]:
    """The K column (second cell of each body row) of every fractions table on the page."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        tables, cell, col, in_frac, in_body = [], None, 0, False, False

        def handle_starttag(self, tag, attrs):
            cls = dict(attrs).get("class", "") or ""
            if tag == "table":
                self.in_frac = "fractions" in cls.split()
                if self.in_frac:
                    self.tables.append([])
            elif tag == "tbody":
                self.in_body = True
            elif tag == "tr":
                self.col = 0
            elif tag == "td" and self.in_frac and self.in_body:
                self.col += 1
                self.cell = "" if self.col == 2 else None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                self.tables[-1].append(int(self.cell.strip()))
                self.cell = None
            elif tag in ("tbody", "table"):
                self.in_body = False

    parser = P()
    parser.tables = []
    parser.feed(page)
    return parser.tables


def test_report_writes_every_figure_and_a_self_contained_page(study, capsys):
    assert main(["report", str(study), "--pdf", "--n-boot", "200"]) == 0
    out = study / "report"
    page = (out / "report.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    for stem in ("transition", "distances_l2", "thresholds_l2", "training", "basins", "energy"):
        assert f"{stem}.png" in pngs and (out / f"{stem}.pdf").exists(), stem
    assert any(p.startswith("nn_l2_memorized_K") for p in pngs)
    imgs = _imgs(page)
    assert len(imgs) == len(pngs) and all(b.startswith(b"\x89PNG") for b in imgs)
    assert "src=\"http" not in page and "<link" not in page and "<script" not in page
    assert [sorted(set(t)) for t in _fractions_ks(page)] == [list(KS)]
    assert "memorized crosses 1/2" in page and "spurious peaks at grid K =" in page and "EMM" in page
    assert "Stage run times" in page and "<td>train</td>" in page
    assert "delta_m" in page  # the config
    assert "report.html" in capsys.readouterr().out


def test_compare_report_says_how_far_the_crossing_moved(study, study2, tmp_path):
    assert main(["report", str(study), str(study2), "--out", str(tmp_path / "cmp"), "--n-boot", "100"]) == 0
    page = (tmp_path / "cmp" / "report.html").read_text()
    assert (tmp_path / "cmp" / "compare.png").exists()
    m = re.search(r"the crossing moves from K = ([\d.]+) \(small-unet\) to K = ([\d.]+) \(large-unet\), ×([\d.]+)",
                  page)
    assert m, page[:3000]
    a, b, x = map(float, m.groups())
    assert b > a and x == pytest.approx(b / a, rel=0.02)
    # study2 has no basins, no train_log, no stages.json: each is named, not drawn
    assert "No stage times recorded" in page
    assert [sorted(set(t)) for t in _fractions_ks(page)] == [list(KS), list(KS)]


def test_report_without_basins_says_so(tmp_path):
    d = synthetic.write_study(tmp_path / "bare", ks=(2, 16, 128), seeds=(0,), n=12, train_log=False, stages=False)
    page = report.write_report([d], tmp_path / "r", n_boot=50, echo=lambda *a: None)
    text = page.read_text()
    assert "basins table absent: no basins figure drawn" in text
    assert "energy table absent: no energy figure drawn" in text
    assert not (tmp_path / "r" / "basins.png").exists()


def test_report_cli_help_and_errors(tmp_path, capsys):
    assert main(["report", "--help"]) == 0
    h = capsys.readouterr().out
    for opt in ("DIR", "--out", "--pdf", "--n-boot"):
        assert opt in h
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a study folder" in err and err.startswith("raystudy: error:")


# -- a real (tiny) study -------------------------------------------------------------------------

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
