"""The report on a real (tiny) study's tables, which the classify stage wrote: the fractions
recomputed from the labels match them (tests/system/test_notebooks.py runs the notebooks on
tables of the same schemas)."""


import numpy as np

from raystudy import analysis as A
from raystudy.cli import main
from tests.unit.analysis.test_report import _fractions_ks, _imgs


def test_report_on_a_real_tiny_study(tiny_study):
    _, out = tiny_study
    st = A.load(out)
    assert st.has("labels") and st.has("fractions") and st.has("neighbors")
    ours = A.per_seed_fractions(st.labels).set_index(["metric", "K", "seed"]).sort_index()
    theirs = st.fractions.set_index(["metric", "K", "seed"]).sort_index()
    for c in ("memorized", "spurious", "generalized", "ratio_memorized"):
        np.testing.assert_allclose(ours[c].to_numpy(float), theirs[c].to_numpy(float))
    assert main(["report", str(out), "--n-boot", "100"]) == 0
    page = (out / "report" / "report.html").read_text()
    assert [sorted(set(t)) for t in _fractions_ks(page)] == [sorted(int(k) for k in st.fractions.K.unique())]
    assert all(b.startswith(b"\x89PNG") for b in _imgs(page)) and len(_imgs(page)) >= 4
