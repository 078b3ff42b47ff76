"""raystudy.analysis.report (``raystudy report``): every figure written as PNG (and PDF) and
embedded in one self-contained page, the fractions tables and summary sentences, the comparison
of two studies, absent tables named rather than drawn, and the command's help and errors. The
browser test of the page is tests/system/test_report_browser.py.
"""

import base64
import html
import re

import numpy as np
import pandas as pd
import pytest

from raystudy.analysis import report, summaries, synthetic
from raystudy.cli import main
from tests.unit.analysis.conftest import KS


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


# -- the summary sentence, the headline, the summary table ---------------------------------------

# what a K outside the grid must not read as: a name, or a bare '< 2' / '> 512' ('(< 1/3)' is the ratio test)
PLACEHOLDERS = re.compile(r"K_min|K_max|n/a|[<>] ?\d+(\.\d+)?(?![\d./])")


def _fractions(ks, memorized, spurious, n=200):
    """A one-seed ``fractions`` table with the given per-K fractions (counts n x fraction)."""
    mem, spur = np.asarray(memorized, float), np.asarray(spurious, float)
    return pd.DataFrame({"K": ks, "seed": 0, "metric": "l2", "n": n, "memorized": mem, "spurious": spur,
                         "generalized": 1 - mem - spur, "ratio_memorized": mem})


def test_sentence_says_nothing_of_a_spurious_peak_without_spurious_samples():
    row = summaries.transition_summary(fractions=_fractions([2, 8, 32, 128, 512], [1, 0.9, 0.5, 0.1, 0], [0] * 5),
                                   n_boot=50).iloc[0]
    s = summaries.describe(row)
    assert "no sample is spurious at any K" in s
    assert "peak" not in s and "bump" not in s, s
    assert not PLACEHOLDERS.search(s), s


def test_sentence_reads_a_crossing_no_grid_k_resolves_as_the_bracket():
    # 200/200 memorized at K = 32, 0/200 at 128: the grid says "between 32 and 128", nothing finer
    row = summaries.transition_summary(fractions=_fractions([2, 8, 32, 128, 512], [1, 1, 1, 0, 0],
                                                        [0, 0, 0, 0.02, 0]), n_boot=50).iloc[0]
    assert not row["k_cross_resolved"]
    s = summaries.describe(row)
    assert s.startswith("memorized crosses 1/2 between K = 32 and 128 (no grid K in between; "), s
    assert "spurious peaks at grid K = 128 (0.02" in s
    assert not PLACEHOLDERS.search(s), s


def test_sentence_names_the_end_of_the_grid_instead_of_placeholders():
    # 0.92 memorized at the largest K: the crossing lies beyond K = 8; EMM's fit too, its interval
    # reaching past the grid; the spurious peak's span is open at both ends
    row = summaries.transition_summary(fractions=_fractions([2, 4, 8], [1, 0.98, 0.92], [0, 0.01, 0.02]),
                                   n_boot=50).iloc[0]
    s = summaries.describe(row)
    assert "memorized crosses 1/2 beyond K = 8 (still above at the largest K)" in s, s
    assert re.search(r"EMM \(ratio test >= 90% memorized\) ends beyond K = 8 \(95% interval from K = [\d.]+ to "
                     r"beyond K = 8, logistic fit in log K; the grid puts it above K = 4\)", s), s
    assert "the grid cannot tell where the peak lies" in s
    assert not PLACEHOLDERS.search(s), s


@pytest.fixture(scope="module")
def with_null(tmp_path_factory):
    """A one-seed study with a null_fractions table, and its report page."""
    from raystudy import tables

    d = synthetic.write_study(tmp_path_factory.mktemp("hl") / "hl", ks=(2, 8, 32, 128), seeds=(0,), n=20,
                              k_half=30, train_log=False, stages=False)
    null = {"K": [2, 8, 32, 128], "seed": [0] * 4, "metric": ["l2"] * 4, "n": [50] * 4,
            "memorized": [0.0, 0.02, 0.06, 0.04], "spurious": [0.1, 0.12, 0.2, 0.1], "generalized": [0.9, 0.86, 0.74, 0.86],
            "ratio_memorized": [0.0] * 4}
    tables.write_part(d, "null_fractions", "all", tables.to_table("null_fractions", null))
    page = report.write_report([d], d / "report", n_boot=50, echo=lambda *a: None)
    return d, page.read_text()


def _headline_cells(page: str) -> dict[str, str]:
    """The headline box's cells as text, keyed by their column heading."""
    box = re.search(r"<section id='headline'.*?</section>", page, re.S).group(0)
    heads = re.findall(r"<th>(.*?)</th>", box)
    cells = [re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td>(.*?)</td>", box, re.S)]
    return {html.unescape(h): html.unescape(" ".join(c)) for h, c in zip(heads, cells)}


def test_headline_leads_the_page_with_the_summary_tables_numbers(with_null):
    d, page = with_null
    # the answer first: the headline box, then the transition figure, then the details
    assert page.index("id='headline'") < page.index("id='transition'") < page.index("id='summary'")
    assert page.index("id='transition'") < page.index("Per-K intervals")
    cells = _headline_cells(page)
    fr = pd.read_parquet(d / "tables" / "fractions")
    row = summaries.transition_summary(fractions=fr, n_boot=50).iloc[0]
    ks = (row["K_min"], row["K_max"])
    where, _ = summaries.crossing_words(row)
    assert cells["memorized crosses 1/2"].startswith(where), cells
    if where.startswith("K = "):
        assert f"95% interval {summaries.k_range(row['k_cross_lo'], row['k_cross_hi'], ks)}" in cells["memorized crosses 1/2"]
    emm = [v for h, v in cells.items() if h.startswith("EMM")][0]
    assert emm.startswith(summaries.crossing_words(row, "emm")[0]), cells
    # the spurious peak, read off the fractions table directly: the K with the largest fraction
    per_k = fr.groupby("K")["spurious"].mean()
    assert cells["spurious peak"].startswith(f"{per_k.max():.2f} at K = {per_k.idxmax()} "), cells
    # the null: the largest memorized fraction of the held-out images (0.06, at K = 32)
    assert cells["null: held-out images, same rule"].startswith("≤ 0.06 memorized held-out images pass for copies "
                                                                 "up to 0.06 (at K = 32; spurious at most 0.20)"), cells


def test_summary_table_has_human_names_and_the_csv_the_numbers(with_null):
    d, page = with_null
    table = re.search(r'<table class="dataframe summary-table">.*?</table>', page, re.S).group(0)
    heads = re.findall(r"<th>(.*?)</th>", table)
    assert heads[:5] == ["study", "metric", "crossing K", "95% interval", "grid bracket"], heads
    assert not [h for h in heads if "_" in h], heads
    cells = dict(zip(heads, [c.strip() for c in re.findall(r"<td>(.*?)</td>", table, re.S)]))
    per_k = pd.read_parquet(d / "tables" / "fractions").groupby("K")["spurious"].mean()
    assert cells["spurious peak"] == f"{per_k.max():.3f}" and cells["spurious peak at grid K"] == str(per_k.idxmax())
    csv = pd.read_csv(d / "report" / "summary.csv")
    assert {"k_cross", "k_cross_bracket_lo", "k_cross_seed_min", "spurious_peak_k_hi"} <= set(csv.columns)
    assert not PLACEHOLDERS.search(re.sub(r"<[^>]+>", " ", table))


def test_training_notes_name_a_table_only_where_it_is_really_absent(tmp_path):
    import yaml

    from raystudy import tables
    from raystudy.analysis import load
    from raystudy.analysis.plots import training_figure, training_notes

    unet = synthetic.write_study(tmp_path / "unet", ks=(2, 16), seeds=(0,), n=8, train_log=False, stages=False)
    assert training_notes(load(unet)) == ["train_log table absent: no loss curves (runs table only)"]
    # parts written, no rows: empty, not absent
    cols = {c: [] for c in tables.SCHEMAS["train_log"].names if c not in ("variant", "twin")}
    tables.write_part(unet, "train_log", "K2-s0", tables.to_table("train_log", cols))
    assert training_notes(load(unet)) == ["train_log table empty: no loss curves"]
    # the exact memorizer trains nothing: no word about loss curves, and no training figure
    emp = synthetic.write_study(tmp_path / "emp", ks=(2, 16), seeds=(0,), n=8, train_log=False, stages=False)
    cfg = yaml.safe_load((emp / "config.yaml").read_text())
    cfg["model"] = {"type": "empirical"}
    (emp / "config.yaml").write_text(yaml.safe_dump(cfg))
    tables.write_part(emp, "train_log", "K2-s0", tables.to_table("train_log", cols))
    st = load(emp)
    assert training_notes(st) == []
    assert training_figure(st) is None
    # with two studies each note says whose it is
    assert training_notes(load(unet, emp)) == ["unet: train_log table empty: no loss curves"]


def test_report_of_a_study_with_loss_curves_draws_the_gap_and_writes_tau_gap(tmp_path):
    """Loss curves without snapshots or variants: no phase section, the held-out gap in its own,
    its figure among the training figures, tau_gap.csv the notebook's numbers."""
    from raystudy import tables
    from raystudy.analysis import phase
    from tests.unit.analysis.test_phase import EVALS, curves

    rng = np.random.default_rng(31)
    opened, _, _ = curves(rng, depart=3, level=0, K=2)
    closed, _, _ = curves(rng, depart=None, K=16)
    lc = pd.concat([opened, closed], ignore_index=True)
    d = synthetic.write_study(tmp_path / "gap", ks=(2, 16), seeds=(0,), n=12, train_log=False, stages=False)
    tables.write_part(d, "loss_curves", "all", tables.to_table("loss_curves", {c: lc[c].to_list() for c in lc}))
    page = report.write_report([d], tmp_path / "r", n_boot=20, echo=lambda *a: None).read_text()
    assert "id='phase'" not in page and "id='gap'" in page
    training = page[page.index("<h2>Training</h2>"):]
    assert "<b>gap.png</b>" in training.split("<h2")[1]
    got = pd.read_csv(tmp_path / "r" / "tau_gap.csv")
    want = phase.tau_gap(lc)
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    assert f"<td>{EVALS[3]:,}" in page and f"&gt; {EVALS[-1]:,} (did not open)" in page
