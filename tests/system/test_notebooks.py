"""The analysis notebooks run headless (nbclient) against study folders, and are stored clean.

The study paths go in through RAYSTUDY_STUDY / RAYSTUDY_STUDY2 (or RAYSTUDY_STUDIES for any number),
as a user would pass them.
"""

import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "analysis"

nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (pip install -e '.[test]')")
pytest.importorskip("ipykernel", reason="ipykernel not installed (pip install -e '.[test]')")

# Each execution starts a Jupyter kernel and draws every figure: tens of seconds.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    from raystudy.analysis import synthetic

    base = tmp_path_factory.mktemp("nb")
    a = synthetic.write_study(base / "demo", ks=(2, 8, 32, 128), seeds=(0, 1), n=24, k_half=30, basins=True)
    b = synthetic.write_study(base / "demo-small", ks=(2, 8, 32, 128), seeds=(0,), n=24, k_half=90, seed=1,
                              train_log=False, stages=False)
    c = synthetic.write_study(base / "demo-short", ks=(2, 8, 32, 128), seeds=(0,), n=24, k_half=12, seed=2,
                              train_log=False, stages=False)
    return a, b, c


def _run(name: str, env: dict) -> "nbformat.NotebookNode":
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of the process that starts it
    try:
        client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                         resources={"metadata": {"path": str(NOTEBOOKS)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == kind
            or kind in o.get("data", {})]


@pytest.mark.parametrize("name", ["transition.ipynb", "compare.ipynb"])
def test_notebooks_are_stored_without_outputs(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_transition_notebook_runs_on_a_study(studies):
    nb = _run("transition.ipynb", {"RAYSTUDY_STUDY": str(studies[0]), "RAYSTUDY_N_BOOT": "100",
                                   "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    assert re.search(r"memorized crosses 1/2 (at|between|below|beyond) K =", text), text
    assert len(_outputs(nb, "image/png")) >= 6  # curves, distances, thresholds, 3 grids, training, basins, energy


def test_compare_notebook_takes_any_number_of_studies(studies):
    """One execution, three studies (RAYSTUDY_STUDIES); RAYSTUDY_STUDY / RAYSTUDY_STUDY2 only fill
    the same list of folders in the notebook's first cell."""
    nb = _run("compare.ipynb", {"RAYSTUDY_STUDIES": os.pathsep.join(map(str, studies)), "RAYSTUDY_N_BOOT": "100",
                                "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    assert "K½ moves from" in text
    # every study after the first is compared with the first
    for other in ("demo-small", "demo-short"):
        assert "(demo) to" in text and f"({other})" in text, text
    assert text.count("(demo) to") == 2, text
    assert len(_outputs(nb, "image/png")) >= 2
