"""The cluster path as a user types it: `.venv/bin/ray start --head`, then
`.venv/bin/raystudy submit ...`, with the venv NOT on PATH (a head started that way runs a
plain `python` entrypoint with the system interpreter); and the jobs/ examples checked
against the CLI."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.cluster

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user_env(**extra) -> dict:
    """The environment of a user who did not activate the venv: its bin/ is not on PATH."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != BIN.resolve()]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "VIRTUAL_ENV")}
    return {**env, "PATH": os.pathsep.join(path), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def _submit_cmd() -> list[str]:
    return [str(BIN / "raystudy"), "submit"]


def _job_server_up(address: str, token: str, head: subprocess.Popen, temp_dir: str, timeout: float) -> tuple[str, str]:
    """Poll the job server's own HTTP API (what `ray job list` asks) until it lists jobs: (its
    address, "") when it does, else (address, why not). Ray's dashboard moves to the next port
    when the one asked for is taken (a port found free can be taken before Ray binds it): the
    address it logs is the one polled."""
    import re
    import urllib.error
    import urllib.request

    deadline, why = time.time() + timeout, "no answer"
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the head is on this machine
    while time.time() < deadline:
        logged = re.findall(r"http server initialized at ([0-9.]+:[0-9]+)", _dashboard_log(temp_dir, tail=10**7))
        if logged:
            address = f"http://{logged[-1]}"
        req = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
        try:
            with local.open(req, timeout=5) as r:
                if r.status == 200:
                    return address, ""
        except (urllib.error.URLError, OSError) as e:  # not listening yet, or the agent not up (5xx)
            why = str(e)
        assert head.poll() is None, head.stdout.read().decode()
        time.sleep(0.5)
    return address, why


def _stop(head: subprocess.Popen) -> None:
    head.send_signal(signal.SIGINT)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _dashboard_log(temp_dir: str, tail: int = 2000) -> str:
    logs = sorted(Path(temp_dir).glob("session_*/logs/dashboard.log"))
    return logs[-1].read_text()[-tail:] if logs else "(no dashboard.log)"


def _start_head(env: dict, cwd: Path, token: str) -> tuple[subprocess.Popen, str, str]:
    """`ray start --head` on free ports, up to the point where its job server answers; one more
    start, on other ports, before the test fails with the dashboard's log."""
    why = ""
    for _ in range(2):
        gcs, dash, agent = _free_port(), _free_port(), _free_port()
        # Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep.
        temp_dir = tempfile.mkdtemp(prefix="rayjob-", dir="/tmp")
        # docs/guides/cluster.md: `.venv/bin/ray start --head --num-cpus=2` (ports, temp dir and --block so that
        # this test neither collides with another Ray on the machine nor needs `ray stop`: the job
        # agent's default port 52365 is often taken there, and then no job can be submitted).
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--block", "--node-ip-address=127.0.0.1",
             f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
             f"--dashboard-agent-listen-port={agent}",
             f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        address, down = _job_server_up(f"http://127.0.0.1:{dash}", token, head, temp_dir, timeout=90)
        if not down:
            return head, address, temp_dir
        why = f"{down}; dashboard.log: {_dashboard_log(temp_dir)}"
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
    pytest.fail(f"the job server never answered: {why}")


def test_study_runs_as_a_ray_job_as_the_readme_says(tmp_path):
    # A token as `ray start` finds it (~/.ray/auth_token after any local ray.init); given in
    # the environment here so the user's ~/.ray does not matter. RAY_AUTH_MODE stays unset:
    # `ray start` and `raystudy submit` both turn token mode on because a token exists.
    token = secrets.token_hex(32)
    env = _user_env(RAY_AUTH_TOKEN=token)
    head, address, temp_dir = _start_head(env, tmp_path, token)
    study = tmp_path / "study"
    try:
        # docs/guides/cluster.md: `.venv/bin/raystudy submit configs/... --study /abs/path --address http://127.0.0.1:8265`
        sub = subprocess.run(
            [*_submit_cmd(), "tests/data/tiny.yaml", "--study", str(study), "--address", address,
             "--set", "model.type=empirical", "--set", "generate.n_samples=4", "--set", "ks=[3]"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
        log = sub.stdout[-4000:] + sub.stderr[-4000:]
        assert sub.returncode == 0, log
        assert "succeeded" in log and "No module named" not in log, log
        # The entrypoint named this interpreter, not the PATH's python.
        assert f"{sys.executable} -m raystudy.cli run tests/data/tiny.yaml" in log, log
        for name, rows in {"runs": 1, "samples": 8, "neighbors": 4, "labels": 4, "fractions": 1}.items():
            assert len(pd.read_parquet(study / "tables" / name)) == rows, name
        assert (study / "figures" / "transition.png").exists()
        # A failing study is the job's exit status, and a config typo never reaches the cluster.
        bad = subprocess.run([*_submit_cmd(), "tests/data/tiny.yaml", "--study", str(study), "--address", address,
                              "--set", "train.nope=1"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "train.nope" in bad.stderr, bad.stderr
    finally:
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


