"""The report and the transition notebook on a real (tiny) study's tables, which the classify
stage wrote: the fractions recomputed from the labels match them."""

import os
import re

import numpy as np
import pytest

from raystudy import analysis as A
from raystudy.cli import main
from tests.conftest import ROOT
from tests.unit.analysis.test_analysis import _fractions_ks, _imgs


@pytest.mark.skipif(os.environ.get("RAYSTUDY_SKIP_REAL") == "1", reason="RAYSTUDY_SKIP_REAL=1")
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
    # the transition notebook on the same real study (tests/system/test_notebooks.py runs both on synthetic ones)
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "analysis" / "transition.ipynb", as_version=4)
    env = {"RAYSTUDY_STUDY": str(out), "RAYSTUDY_N_BOOT": "100"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "analysis")}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert re.search(r"memorized crosses 1/2 (at|between|below|beyond) K =", text), text
