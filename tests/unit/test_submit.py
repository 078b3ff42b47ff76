"""`raystudy submit` and the jobs/ examples, parsed and prepared without a cluster
(tests/system/test_job.py submits a study to a real job server)."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def _submit_args(*argv):
    from raystudy.cli import build_parser

    return build_parser().parse_args(["submit", *argv])


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
        with pytest.raises(SystemExit):  # the parser knows the stages
            prep("--study", "/s", "--only", "nope")
        outside = tmp_path / "c.yaml"
        outside.write_text((ROOT / "tests" / "data" / "tiny.yaml").read_text())
        with pytest.raises(UserError, match="outside the working directory"):
            prepare(_submit_args(str(outside), "--study", "/s"))
    finally:
        os.chdir(cwd)


def test_submit_takes_a_packaged_config_by_name_as_run_does(tmp_path):
    """`submit demo` runs what `run demo` runs: the job gets the packaged file (uploaded with a
    checkout that holds the package), or its name, which the job's raystudy resolves the same way."""
    from raystudy.config import PACKAGED, load_config
    from raystudy.submit import prepare

    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        _, ep, env = prepare(_submit_args("demo", "--study", "/s", "--address", "http://127.0.0.1:8265"))
        config = shlex.split(ep)[4]
        assert (Path(env["working_dir"]) / config).resolve() == (PACKAGED / "demo.yaml").resolve()
        # Uploading a folder without the package: the name, and a job there loads the packaged demo.
        _, ep, _ = prepare(_submit_args("demo", "--study", "/s", "--address", "http://127.0.0.1:8265",
                                        "--working-dir", str(tmp_path)))
        os.chdir(tmp_path)
        assert shlex.split(ep)[4] == "demo.yaml" and load_config("demo.yaml") == load_config(ROOT / "configs" / "demo.yaml")
        from raystudy.errors import ConfigError

        with pytest.raises(ConfigError, match="no such config file .*usable by name: .*demo"):
            prepare(_submit_args("nodemo", "--study", "/s"))
    finally:
        os.chdir(cwd)


def _entrypoint_args(entrypoint: str) -> list[str]:
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "jobs/study.py"], argv
    return argv[2:]


def test_kuberay_rayjob_entrypoint_parses_with_the_cli():
    from raystudy.cli import build_parser
    from raystudy.config import load_config

    doc = yaml.safe_load((ROOT / "jobs" / "kuberay-rayjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    args = build_parser().parse_args(["run", *_entrypoint_args(doc["spec"]["entrypoint"])])
    assert (ROOT / args.config).is_file()
    load_config(ROOT / args.config, args.overrides)  # a valid config with these overrides
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


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_submit_hands_the_job_the_commit_of_the_checkout_it_uploads(tmp_path):
    """The upload leaves .git out, so the commit travels in the job's environment, where the job's
    provenance.json reads it (tests/unit/test_provenance_env.py)."""
    from raystudy.submit import prepare

    def env_vars(wd):
        _, _, env = prepare(_submit_args("demo", "--study", "/s", "--address", "http://head.example:8265",
                                         "--working-dir", str(wd)))
        assert ".git" in "".join(env["excludes"])  # why it has to travel this way
        return env.get("env_vars")

    # This checkout: its HEAD, and whether its tracked files differ from it (read before and after,
    # as the tree may be committed to meanwhile).
    def state():
        dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "HEAD", "--quiet"]).returncode != 0
        return {"RAYSTUDY_GIT_COMMIT": _git(ROOT, "rev-parse", "HEAD"), "RAYSTUDY_GIT_DIRTY": "true" if dirty else "false"}

    before, got, after = state(), env_vars(ROOT), state()
    assert got in (before, after)
    # Another checkout of the package: clean, then with a tracked file changed (an untracked one does not count).
    repo = tmp_path / "repo"
    (repo / "raystudy").mkdir(parents=True)
    (repo / "raystudy" / "__init__.py").write_text("")
    _git(tmp_path, "init", "-q", str(repo))
    _git(repo, "add", "raystudy/__init__.py")
    _git(repo, "commit", "-qm", "a commit")
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "notes.txt").write_text("untracked\n")
    assert env_vars(repo) == {"RAYSTUDY_GIT_COMMIT": head, "RAYSTUDY_GIT_DIRTY": "false"}
    (repo / "raystudy" / "__init__.py").write_text("x = 1\n")
    assert env_vars(repo) == {"RAYSTUDY_GIT_COMMIT": head, "RAYSTUDY_GIT_DIRTY": "true"}
    # The package's files without git: empty values, so the cluster image's own commit is not claimed for them.
    plain = tmp_path / "plain"
    shutil.copytree(repo / "raystudy", plain / "raystudy")
    assert env_vars(plain) == {"RAYSTUDY_GIT_COMMIT": "", "RAYSTUDY_GIT_DIRTY": ""}
    # No package in the upload (configs only): the image's raystudy runs and its image says its commit.
    (tmp_path / "configs").mkdir()
    assert env_vars(tmp_path / "configs") is None
