"""An interrupted study resumes: the Tune experiment is restored and the trial
continues from its last checkpoint instead of starting over."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import TINY

BIN = Path(sys.executable).parent


def test_killed_study_resumes_from_tune_checkpoint(tmp_path):
    study = tmp_path / "study"
    args = [str(BIN / "raystudy"), "run", str(TINY), "--study", str(study), "--set", "ks=[4]",
            "--set", "train.images=6400", "--set", "train.checkpoint_every=640", "--set", "ray.num_cpus=1"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.time() + 240
    try:
        while not list((study / "ray_results").glob("*/*/checkpoint_00000[1-9]")):
            assert first.poll() is None, "study ended before it could be interrupted"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (study / "models" / "K4-s0" / "run.json").exists()

    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    record = json.loads((study / "models" / "K4-s0" / "run.json").read_text())
    assert record["steps"] == 100
    assert 20 <= record["resumed_from_step"] < 100, record
