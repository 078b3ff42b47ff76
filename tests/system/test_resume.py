"""An interrupted study resumes: the killed run continues from its last checkpoint instead
of starting over, even when the re-run asks for other resources per trial."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY

# A study in its own process, on its own local Ray, trained twice.
pytestmark = [pytest.mark.ray, pytest.mark.slow]

BIN = Path(sys.executable).parent


def test_killed_study_resumes_from_its_checkpoint_with_other_resources(tmp_path):
    study = tmp_path / "study"
    args = [str(BIN / "raystudy"), "run", str(TINY), "--study", str(study), "--set", "ks=[4]",
            "--set", "train.images=6400", "--set", "train.checkpoint_every=640", "--set", "ray.num_cpus=2"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    state = study / "models" / ".state-K4-s0.pt"
    deadline = time.time() + 300
    try:
        while not state.exists():
            assert first.poll() is None, "study ended before it could be interrupted"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.5)
        time.sleep(1.0)  # let it get past the first checkpoint (a later one is fine too)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (study / "models" / "K4-s0" / "run.json").exists(), "finished before it was killed"

    # Resources per trial shape where a run goes, not what it computes: the run resumes.
    second = subprocess.run(args + ["--set", "train.cpus_per_trial=2"], env=env, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    record = json.loads((study / "models" / "K4-s0" / "run.json").read_text())
    assert record["steps"] == 100
    assert 10 <= record["resumed_from_step"] < 100, record
    assert not state.exists()
    assert not list((study / "models").glob(".*")), "a temporary or state file was left behind"
