"""SQL over one or several studies' tables with DuckDB (no torch, no Ray): ``raystudy query``.

    python analysis/query.py STUDY_DIR [STUDY_DIR2 ...] [--sql "SELECT ..."]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raystudy.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["query", *sys.argv[1:]]))
