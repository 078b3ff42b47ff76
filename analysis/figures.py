"""Redraw a study's figures and report from its tables (no torch, no Ray).

    python analysis/figures.py STUDY_DIR [STUDY_DIR2 ...] [--pdf] [--out FOLDER] [--n-boot N]

The same as ``raystudy report``: every figure as PNG (and PDF) plus one self-contained
``report.html`` in STUDY_DIR/report/ (several studies: compared, in FIRST/report/compare/).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raystudy.analysis.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
