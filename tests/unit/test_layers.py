"""The layering rule (docs/reference/layout.md) as import-linter contracts: `.importlinter` at the
top of the repository, checked by `lint-imports`, which reads every import statement (lazy ones
inside functions too) without importing the package."""

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CONFIG = ROOT / ".importlinter"


def contract_names(config: Path = CONFIG) -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(config)
    return [parser[s]["name"] for s in parser.sections() if s.startswith("importlinter:contract:")]


def lint_imports(cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    # The console script of the interpreter running the tests: import-linter has no `python -m` entry.
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.fail(f"{exe} not found: pip install import-linter (the `test` extra)")
    # A wide console, so that a contract's name and its verdict share one line of the output.
    env = {**os.environ, "COLUMNS": "500", **(env or {})}
    return subprocess.run([str(exe), "--no-logo", "--no-cache", str(CONFIG)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_keeps_every_import_contract():
    names = contract_names()
    assert len(names) >= 3, names
    r = lint_imports(ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for name in names:
        assert any(line.startswith(f"{name} KEPT") for line in out.splitlines()), (name, out)


def test_each_contract_breaks_on_a_violation(tmp_path):
    """A copy of the package, found first on the path, with one violation per contract: Ray in a
    plain module, torch reached by raystudy.analysis through a module it imports, the tables read
    from compute/, a cycle."""
    copy = tmp_path / "raystudy"
    shutil.copytree(ROOT / "raystudy", copy, ignore=shutil.ignore_patterns("__pycache__"))

    def prepend(module: str, line: str) -> None:
        path = copy / module
        path.write_text(f"{line}\n{path.read_text()}")

    prepend("splits.py", "import ray")                 # analysis does not reach splits.py
    prepend("tables.py", "import torch")               # analysis/load.py imports tables.py
    prepend("compute/knn.py", "from .. import tables")  # neither Ray nor a cycle
    prepend("axes.py", "from . import analysis")       # analysis/load.py imports axes.py
    r = lint_imports(tmp_path, {"PYTHONPATH": str(tmp_path)})
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    for name in contract_names():
        assert any(line.startswith(f"{name} BROKEN") for line in out.splitlines()), (name, out)
    assert "raystudy.splits -> ray" in out, out
    assert "raystudy.tables -> torch" in out, out
    assert "raystudy.compute.knn -> raystudy.tables" in out, out
    assert "No cycles are allowed in raystudy." in out, out
