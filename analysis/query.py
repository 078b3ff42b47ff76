"""SQL over one or several studies' tables with DuckDB (no torch, no Ray).

    python analysis/query.py STUDY_DIR [STUDY_DIR2 ...] [--sql "SELECT ..."]

Every table is a view (runs, samples, neighbors, labels, fractions, train_log, basins, ...),
each with a leading ``study`` column. Without --sql this runs the documented example:
the memorized fraction per K under another threshold, straight from the stored distances.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raystudy import analysis as A  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="study folder(s)")
    p.add_argument("--sql", default=A.EXAMPLE_QUERY, help="the query (default: the example query)")
    a = p.parse_args(argv)
    try:
        con = A.connect(a.dirs)
    except A.AnalysisError as e:
        print(f"query: {e}", file=sys.stderr)
        return 2
    print(con.sql(a.sql).df().to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
