"""A newcomer's path through the README: the fast path's commands, exactly as written and in
order, from a folder that holds only what a fresh clone has after `make install` (`.venv/`,
`configs/`), then the report the README names; what the README promises of them holds."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def section_commands(heading: str) -> list[str]:
    """The shell commands of the bash blocks under the README's ``## heading`` (continuation
    lines joined)."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", body, re.S)
    assert blocks, f"no bash block under '## {heading}'"
    return [c.strip() for b in blocks for c in b.replace("\\\n", " ").splitlines() if c.strip()]


def test_fast_path_runs_as_written_and_every_sample_is_memorized(tmp_path):
    cmds = section_commands("The one-minute fast path")
    assert [shlex.split(c)[:2] for c in cmds] == [[".venv/bin/raystudy", "run"], [".venv/bin/raystudy", "show"]]
    # A clone's checkout after `make install`: the venv and the configs, nothing else it could lean on.
    (tmp_path / ".venv").symlink_to(BIN.parent)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    for cmd in cmds:
        p = subprocess.run(shlex.split(cmd), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{cmd}\n{p.stderr[-3000:]}"
    study = tmp_path / shlex.split(cmds[0])[shlex.split(cmds[0]).index("--study") + 1]
    # "every sample must come out memorized", at every K of the demo's grid
    fr = pd.read_parquet(study / "tables" / "fractions")
    demo_ks = [2, 8, 32, 128, 512, 1597]
    assert sorted(fr.K) == demo_ks and (fr.memorized == 1.0).all(), fr[["K", "memorized"]]
    assert "memorized" in p.stdout and "1597" in p.stdout  # `show` printed the fractions
    # "raystudy report DIR": the page the README points to.
    rep = subprocess.run([".venv/bin/raystudy", "report", str(study.relative_to(tmp_path))], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (study / "report" / "report.html").stat().st_size > 0
