"""The cluster path: a real `ray start --head` on loopback and a real `ray job submit`."""

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

from .conftest import ROOT

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_study_runs_as_a_ray_job(tmp_path):
    gcs, dash = _free_port(), _free_port()
    # Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep.
    temp_dir = tempfile.mkdtemp(prefix="rayjob-", dir="/tmp")
    # Ray >= 2.5x turns token authentication on for clusters; the head and the job client
    # must then agree on a token, given here explicitly so ~/.ray does not matter.
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=true", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while True:  # the job server answers once the dashboard is up
            probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            assert head.poll() is None, head.stdout.read().decode()
            assert time.time() < deadline, probe.stderr[-2000:]
            time.sleep(2)
        study = tmp_path / "study"
        sub = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
             "python", "jobs/study.py", "tests/data/tiny.yaml", "--study", str(study),
             "--set", "generate.n_samples=4", "--set", "ks=[3]"],
            env=env, capture_output=True, text=True, timeout=600)
        log = sub.stdout[-4000:] + sub.stderr[-4000:]
        assert sub.returncode == 0, log
        assert "succeeded" in log, log
        for name, rows in {"runs": 1, "samples": 8, "neighbors": 4, "labels": 4, "fractions": 1}.items():
            assert len(pd.read_parquet(study / "tables" / name)) == rows, name
        assert (study / "figures" / "transition.png").exists()
    finally:
        head.send_signal(signal.SIGINT)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp_dir, ignore_errors=True)
