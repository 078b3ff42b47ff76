"""raystudy.analysis.report (``raystudy report``): every figure written as PNG (and PDF) and
embedded in one self-contained page, the fractions tables and summary sentences, the comparison
of two studies, absent tables named rather than drawn, and the command's help and errors. The
browser test of the page is tests/system/test_report_browser.py.
"""

import base64
import re

import pytest

from raystudy.analysis import report, synthetic
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
