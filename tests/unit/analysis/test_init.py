"""The whole raystudy.analysis package, as a notebook uses it (load, summary, figures, threshold
grid, DuckDB, nearest-neighbour grid), imports neither torch nor Ray: checked in a fresh
interpreter on a synthetic study.
"""

import subprocess
import sys
import textwrap

from tests.conftest import ROOT


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
