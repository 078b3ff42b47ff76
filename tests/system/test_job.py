"""The cluster path as a user types it: `.venv/bin/ray start --head`, then
`.venv/bin/raystudy submit ...`, with the venv NOT on PATH (a head started that way runs a
plain `python` entrypoint with the system interpreter); and the jobs/ examples checked
against the CLI."""

import os
import secrets
import shlex
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
import yaml

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


def _submit_args(*argv):
    from raystudy.cli import build_parser

    return build_parser().parse_args(["submit", *argv])


def test_study_runs_as_a_ray_job_as_the_readme_says(tmp_path):
    gcs, dash, agent = _free_port(), _free_port(), _free_port()
    # Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep.
    temp_dir = tempfile.mkdtemp(prefix="rayjob-", dir="/tmp")
    # A token as `ray start` finds it (~/.ray/auth_token after any local ray.init); given in
    # the environment here so the user's ~/.ray does not matter. RAY_AUTH_MODE stays unset:
    # `ray start` and `raystudy submit` both turn token mode on because a token exists.
    env = _user_env(RAY_AUTH_TOKEN=secrets.token_hex(32))
    # README: `.venv/bin/ray start --head --num-cpus=2` (ports, temp dir and --block so that
    # this test neither collides with another Ray on the machine nor needs `ray stop`: the job
    # agent's default port 52365 is often taken there, and then no job can be submitted).
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--block", "--node-ip-address=127.0.0.1",
         f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true",
         f"--dashboard-agent-listen-port={agent}",
         f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    study = tmp_path / "study"
    try:
        deadline = time.time() + 180
        while True:  # the job server answers once the dashboard is up
            probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address],
                                   env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True)
            if probe.returncode == 0:
                break
            assert head.poll() is None, head.stdout.read().decode()
            assert time.time() < deadline, probe.stderr[-2000:]
            time.sleep(2)
        # README: `.venv/bin/raystudy submit configs/... --study /abs/path --address http://127.0.0.1:8265`
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


def test_submit_names_the_interpreter_and_uploads_no_studies(tmp_path):
    from raystudy.submit import prepare

    def prep(*argv):
        return prepare(_submit_args("tests/data/tiny.yaml", *argv))

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        address, ep, env = prep("--study", "studies/x", "--address", "http://127.0.0.1:8265", "--only", "knn",
                                "--set", "ks=[2]")
        assert shlex.split(ep) == [sys.executable, "-m", "raystudy.cli", "run", "tests/data/tiny.yaml", "--study",
                                   str(ROOT / "studies" / "x"), "--set", "ks=[2]", "--only", "knn"]
        assert env["working_dir"] == str(ROOT) and {"/studies/", "/.venv/", "/data/", "ray_results/"} <= set(env["excludes"])
        _, ep, _ = prep("--study", "/shared/s", "--address", "http://head.example:8265")
        assert shlex.split(ep)[0] == "python"
        _, ep, _ = prep("--study", "/shared/s", "--address", "http://head.example:8265", "--python", "/opt/py/bin/python")
        assert shlex.split(ep)[0] == "/opt/py/bin/python"
        from raystudy.errors import UserError

        with pytest.raises(UserError, match="absolute path"):
            prep("--study", "rel/dir", "--address", "http://head.example:8265")
        with pytest.raises(UserError, match="unknown stage"):
            prep("--study", "/s", "--only", "nope")
        outside = tmp_path / "c.yaml"
        outside.write_text((ROOT / "tests" / "data" / "tiny.yaml").read_text())
        with pytest.raises(UserError, match="outside the working directory"):
            prepare(_submit_args(str(outside), "--study", "/s"))
    finally:
        os.chdir(cwd)


def _entrypoint_args(entrypoint: str) -> list[str]:
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "jobs/study.py"], argv
    return argv[2:]


def test_kuberay_rayjob_entrypoint_parses_with_the_cli():
    from raystudy.cli import build_parser
    from raystudy.config import load

    doc = yaml.safe_load((ROOT / "jobs" / "kuberay-rayjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    args = build_parser().parse_args(["run", *_entrypoint_args(doc["spec"]["entrypoint"])])
    assert (ROOT / args.config).is_file()
    load(ROOT / args.config, args.overrides)  # a valid config with these overrides
    # The study folder is absolute and on the volume every node mounts.
    assert Path(args.study).is_absolute()
    cluster = doc["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        mounts = [m["mountPath"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])]
        assert any(Path(args.study).is_relative_to(m) for m in mounts), mounts
    env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
    assert "/studies/" in env["excludes"] and "ray_results/" in env["excludes"]


def test_runtime_env_example_excludes_studies_venv_and_data():
    env = yaml.safe_load((ROOT / "jobs" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "."
    assert {"/studies/", "/.venv/", "/data/", "ray_results/"} <= set(env["excludes"])
    # The one-stage example in jobs/README.md parses with `raystudy submit`'s parser.
    blocks = [b.split("```")[0].replace("\\\n", " ") for b in (ROOT / "jobs" / "README.md").read_text().split("```bash")[1:]]
    cmd = shlex.split(next(b for b in blocks if "--only knn" in b))
    assert cmd[:2] == [".venv/bin/raystudy", "submit"], cmd
    args = _submit_args(*cmd[2:])
    assert args.only == "knn" and args.overrides == ["knn.metrics=[l2, lpips-alex]"] and Path(args.study).is_absolute()
