"""The report's exports on a real (exact-memorizer) study: the fractions table as CSV and LaTeX,
checked against fractions recomputed from the labels table, and the sample gallery, checked
image by image against the samples and labels tables."""

import re

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY

pytestmark = pytest.mark.slow  # runs a whole (tiny) study


@pytest.fixture(scope="module")
def study(study_of):
    import matplotlib

    matplotlib.use("Agg")
    # The exact memorizer copies training images up to float error (d_train 0 to ~2e-8): a
    # delta_m inside that range gives both labels at one K, so a caption on the wrong sample shows.
    return study_of(TINY, "model.type=empirical", "generate.n_samples=6", "ks=[2, 16]", "seeds=[0, 1]",
                    "classify.delta_m={l2: 1.0e-9}")[1]


def _by_hand(study) -> pd.DataFrame:
    """Per (metric, K): mean and s.d. over seeds of each label's share of the samples."""
    lab = pd.read_parquet(study / "tables" / "labels")
    per_seed = (lab.assign(**{n: lab["label"] == n for n in ("memorized", "spurious", "generalized")})
                .groupby(["metric", "K", "seed"])[["memorized", "spurious", "generalized"]].mean())
    g = per_seed.groupby(["metric", "K"])
    return g.mean().join(g.std(ddof=1).add_suffix("_sd")).join(g.size().rename("seeds")).reset_index()


def test_fractions_csv_and_latex_hold_the_fractions_of_the_labels(study, tmp_path):
    from raystudy.analysis.report import write_report

    write_report([study], tmp_path, n_boot=50, echo=lambda *a: None)
    csv = pd.read_csv(tmp_path / "fractions.csv")
    want = _by_hand(study)
    assert len(csv) == len(want) == 2
    for _, w in want.iterrows():
        row = csv[(csv["metric"] == w["metric"]) & (csv["K"] == w["K"])].iloc[0]
        assert row["seeds"] == w["seeds"] == 2 and row["samples"] == 12
        for lab in ("memorized", "spurious", "generalized"):
            assert row[lab] == pytest.approx(w[lab]) and row[f"{lab}_sd"] == pytest.approx(w[f"{lab}_sd"], nan_ok=True)
            assert row[f"{lab}_lo"] <= row[lab] + 1e-9 and row[lab] <= row[f"{lab}_hi"] + 1e-9
    tex = (tmp_path / "fractions.tex").read_text()
    body = tex[tex.index("\\midrule"):tex.index("\\bottomrule")].splitlines()[1:]
    assert tex.count("\\begin{tabular}") == 1 and len(body) == 2
    for line, (_, r) in zip(body, csv.iterrows()):
        cells = [c.strip() for c in line.rstrip("\\ ").split("&")]
        assert cells[:3] == [r["metric"], str(r["K"]), str(r["samples"])]
        sd = "" if pd.isna(r["memorized_sd"]) else f" $\\pm$ {r['memorized_sd']:.3f}"
        assert cells[3] == f"{r['memorized']:.3f}{sd} [{r['memorized_lo']:.2f}, {r['memorized_hi']:.2f}]"
    page = (tmp_path / "report.html").read_text()
    assert "fractions.tex" in page and "gallery_l2.png" in page


def test_gallery_shows_each_drawn_sample_with_its_own_label(study):
    from raystudy.analysis.plots import sample_gallery

    fig = sample_gallery(study, n=4)
    lab = pd.read_parquet(study / "tables" / "labels")
    lab = lab[(lab["metric"] == "l2") & (lab["seed"] == 0)]
    sm = pd.read_parquet(study / "tables" / "samples")
    sm = sm[(sm["set"] == "eval") & (sm["seed"] == 0)]
    axes = np.array(fig.axes).reshape(2, 4)
    assert len(set(lab["label"])) > 1  # the check below can tell labels apart
    for r, k in enumerate((2, 16)):
        ids = set()
        for ax in axes[r]:
            shown = np.asarray(ax.images[0].get_array(), np.float32)
            # Which eval samples of this K are these pixels? (Copies of one training image may
            # be several samples.) The caption must be one of theirs.
            same = [int(x.sample_id) for x in sm[sm["K"] == k].itertuples()
                    if np.abs((np.asarray(x.image, np.float32).reshape(x.height, x.width) + 1) / 2 - shown).max() < 1e-6]
            want = lab[(lab["K"] == k) & lab["sample_id"].isin(same)]
            assert same and ax.get_xlabel() in {f"{w.label}\nd_train {w.d_train:.3g}" for w in want.itertuples()}
            ids |= set(same)
        assert len(ids) >= 4
    # The same draw every time.
    again = sample_gallery(study, n=4)
    assert [a.get_xlabel() for a in again.axes] == [a.get_xlabel() for a in fig.axes]
    assert re.search(r"seed 0", fig._suptitle.get_text())
