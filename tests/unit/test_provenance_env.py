"""Code that came without its .git (a Ray job's upload, the cluster image) records the commit
handed to it in RAYSTUDY_GIT_COMMIT / RAYSTUDY_GIT_DIRTY, and says so; a checkout records its own."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

COMMIT = "3f2c7a9d0b1e4c5f6a7b8c9d0e1f2a3b4c5d6e7f"


def _git(*args) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The package as a job's upload has it: its files, no .git anywhere above them."""
    site = tmp_path_factory.mktemp("upload")
    shutil.copytree(ROOT / "raystudy", site / "raystudy", ignore=shutil.ignore_patterns("__pycache__"))
    assert subprocess.run(["git", "-C", str(site), "rev-parse"], capture_output=True).returncode != 0
    return site


def _recorded(site, env: dict) -> dict:
    code = ("import json, raystudy.provenance as p; "
            "print(json.dumps({'file': p.__file__, 'git': p.collect(['raystudy', 'run'])['git']}))")
    r = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(site), "PATH": os.environ["PATH"], **env},
                       cwd=site, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["file"] == str(site / "raystudy" / "provenance.py")  # the copy ran, not this checkout
    return out["git"]


def test_a_copy_without_git_records_the_commit_from_its_environment(copy):
    assert _recorded(copy, {"RAYSTUDY_GIT_COMMIT": COMMIT, "RAYSTUDY_GIT_DIRTY": "true"}) == \
        {"commit": COMMIT, "dirty": True, "source": "RAYSTUDY_GIT_COMMIT"}
    assert _recorded(copy, {"RAYSTUDY_GIT_COMMIT": COMMIT, "RAYSTUDY_GIT_DIRTY": "false"})["dirty"] is False
    # An image built without the build arguments has both empty: no commit, as with neither set.
    assert _recorded(copy, {"RAYSTUDY_GIT_COMMIT": "", "RAYSTUDY_GIT_DIRTY": ""}) is None
    assert _recorded(copy, {}) is None


def test_the_values_the_dockerfile_and_submit_write_are_read_back():
    from raystudy.provenance import ENV_COMMIT, ENV_DIRTY, env_state

    def read(commit, dirty=None):
        return env_state({ENV_COMMIT: commit, **({} if dirty is None else {ENV_DIRTY: dirty})})

    # `git diff HEAD --quiet && echo false || echo true` and `raystudy submit` write true/false.
    assert read(COMMIT, "true") == {"commit": COMMIT, "dirty": True, "source": ENV_COMMIT}
    assert read(COMMIT, "false")["dirty"] is False
    assert read(COMMIT)["dirty"] is None and read(COMMIT, "maybe")["dirty"] is None  # unknown, not clean
    assert read(f" {COMMIT.upper()}\n")["commit"] == COMMIT  # as `git rev-parse` prints it, newline and all
    assert read(COMMIT[:12])["commit"] == COMMIT[:12]  # an abbreviated id is still a commit
    # What is not a commit id is not recorded as one (an unexpanded $(git rev-parse HEAD), a branch).
    for bad in ("", "$(git rev-parse HEAD)", "main", "3f2c7a", "g" * 40):
        assert read(bad) is None, bad


def test_a_checkout_records_its_own_commit_whatever_the_environment_says(monkeypatch):
    from raystudy.provenance import ENV_COMMIT, ENV_DIRTY, git_state

    monkeypatch.setenv(ENV_COMMIT, COMMIT)
    monkeypatch.setenv(ENV_DIRTY, "false")
    state = git_state()
    assert state["commit"] == _git("rev-parse", "HEAD") != COMMIT and state["source"] == "checkout"
