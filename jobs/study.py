"""Entry point for `ray job submit --working-dir . -- python jobs/study.py CONFIG --study DIR`.

Same arguments as `raystudy run`. Inside a job RAY_ADDRESS is set, so the study
joins the cluster instead of starting a local Ray. DIR should be an absolute
path on storage every node sees: a relative one lands in the job's temporary
working directory.
"""

import os
import sys

# The job's working directory is the uploaded repository; make its package importable
# even where raystudy is not pip-installed on the cluster.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raystudy.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
