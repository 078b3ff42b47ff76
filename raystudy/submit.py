"""`raystudy submit`: run a study as a Ray job on a cluster, from this checkout.

The job's entrypoint names its interpreter explicitly, so it does not depend on which
``python`` is first on the head node's PATH (a head started without the venv activated
has the system Python, which lacks pyarrow and torch): for a local cluster (127.0.0.1 /
localhost) it is this interpreter, elsewhere ``python`` of the cluster's image, or
``--python``. The working directory (this checkout, minus studies, venvs, data and Ray
results) is uploaded, so the cluster runs this code; the config is checked here first,
so a typo is one line before anything is submitted. Then the job's log is followed until
it ends, and its exit status is returned (0 when the study finished).

The upload leaves ``.git`` out, so the checkout's commit and whether its tracked files
differ from it travel in the job's environment (``RAYSTUDY_GIT_COMMIT``,
``RAYSTUDY_GIT_DIRTY``), where the study's provenance.json finds them.

Token authentication (Ray >= 2.5x): when ``RAY_AUTH_MODE`` is unset and a token is at
hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``, where
``ray start`` and ``ray get-auth-token --generate`` put it), it is sent, as ``ray start``
itself would use it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from .errors import ClusterError, ConfigError, UserError, one_line

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Never uploaded: studies and Ray results (GBs, and they live on shared storage anyway),
# virtual environments, datasets, git history, caches. Ray also honours .gitignore.
EXCLUDES = ["/studies/", "/.venv/", "/venv/", "/data/", "ray_results/", "/.git/", "__pycache__/",
            "*.egg-info/", ".pytest_cache/"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}

DESCRIPTION = """Submit a study to a Ray cluster as a job and follow it until it ends.

Runs `raystudy run CONFIG --study DIR ...` on the cluster, with this checkout uploaded as
the job's working directory. The study folder must be on storage every node of the
cluster sees at the same path (NFS, a mounted bucket); the run checks that before any
work. Re-submitting the same command resumes where a study stopped."""

EPILOG = """examples:
  .venv/bin/ray start --head --num-cpus=2
  .venv/bin/raystudy submit configs/demo.yaml --study /tmp/jobstudy --address http://127.0.0.1:8265
  raystudy submit configs/cifar10.yaml --study /shared/studies/cifar10 --address http://HEAD:8265
  raystudy submit configs/cifar10.yaml --study /shared/studies/cifar10 --address http://HEAD:8265 \\
      --set 'knn.metrics=[l2, lpips-alex]' --only knn --no-wait"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``raystudy submit``'s own options (``--set``, ``--only``, ``-v``/``-q`` and the parser are
    ``raystudy.cli``'s)."""
    p.add_argument("config", help="YAML config: a path inside the working directory (it is uploaded with it), "
                                  "or a packaged one by name (demo, cifar10, ...), as for `raystudy run`")
    p.add_argument("--study", required=True, metavar="DIR",
                   help="study directory as the cluster sees it: an absolute path on storage every node mounts "
                        "(a relative path is made absolute only for a local cluster)")
    p.add_argument("--address", default=None, metavar="URL",
                   help=f"the cluster's job server (dashboard), e.g. http://HEAD:8265; default: $RAY_ADDRESS "
                        f"if it is an http(s) URL, else {DEFAULT_ADDRESS}")
    p.add_argument("--python", default=None, metavar="PATH",
                   help="interpreter that runs the job on the head node: default the one running this "
                        "command, for a local cluster, else `python` of the cluster's image")
    p.add_argument("--working-dir", default=".", metavar="DIR",
                   help="folder uploaded as the job's working directory (default: the current one, "
                        "the raystudy checkout)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help=f"also leave PATTERN (gitignore syntax) out of the upload; always left out: "
                        f"{', '.join(EXCLUDES)}")
    p.add_argument("--no-wait", action="store_true",
                   help="submit, print the job id and return; follow it later with "
                        "`ray job logs --follow ID --address URL`")


def _address(arg: str | None) -> str:
    if arg:
        return arg
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS


def is_local(address: str) -> bool:
    return (urlparse(address if "://" in address else f"http://{address}").hostname or "") in LOCAL_HOSTS


def _enable_token_auth_if_available() -> None:
    """Send the cluster token when one is at hand and RAY_AUTH_MODE does not say otherwise
    (the job client only sends it in token mode; a cluster without auth ignores it). Set
    before Ray is imported here, because Ray reads its auth mode once per process."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (Path.home() / ".ray" / "auth_token").exists()):
        return
    os.environ["RAY_AUTH_MODE"] = "token"


def entrypoint(args, python: str, config_rel: str, study: str) -> str:
    cmd = [python, "-m", "raystudy.cli", "run", config_rel, "--study", study]
    for o in args.overrides:
        cmd += ["--set", o]
    if args.only:
        cmd += ["--only", args.only]
    return shlex.join(cmd)


def commit_env(working_dir: Path) -> dict[str, str]:
    """The job's ``RAYSTUDY_GIT_COMMIT`` / ``RAYSTUDY_GIT_DIRTY`` for an upload of ``working_dir``.

    Only an upload that holds the raystudy package says what code runs (the job imports it
    ahead of any installed copy); a checkout of it gives its commit, any other copy empty
    values, which override what the cluster's image says of its own, different, code. An
    upload without the package (configs only) sets nothing: the image's raystudy runs, and
    the image's values describe it."""
    from .provenance import ENV_COMMIT, ENV_DIRTY, checkout_state

    package = Path(working_dir) / "raystudy"
    if not (package / "__init__.py").is_file():
        return {}
    state = checkout_state(package)
    if state is None:
        return {ENV_COMMIT: "", ENV_DIRTY: ""}
    return {ENV_COMMIT: state["commit"], ENV_DIRTY: "true" if state["dirty"] else "false"}


def prepare(args) -> tuple[str, str, dict]:
    """Check everything that can be checked here; returns (address, entrypoint, runtime_env)."""
    from .config import PACKAGED, load_config, packaged_configs, resolve

    address = _address(args.address)
    local = is_local(address)
    wd = Path(args.working_dir).resolve()
    if not wd.is_dir():
        raise UserError(f"--working-dir {args.working_dir}: no such folder")
    config = resolve(args.config).resolve()
    if not config.is_file():
        raise ConfigError(f"{args.config}: no such config file (packaged configs, usable by name: "
                          f"{', '.join(packaged_configs())})")
    try:
        config_rel = config.relative_to(wd).as_posix()
    except ValueError:
        if config.parent != PACKAGED.resolve():
            raise ConfigError(f"{args.config} is outside the working directory {wd}, so the job would not have it; "
                              f"copy it under {wd} (e.g. configs/)") from None
        # A packaged config by name: the job's raystudy (the uploaded one, or the cluster's) ships it.
        config_rel = config.name
    load_config(config, args.overrides)  # a bad key or value is one line here, before anything is submitted
    from .study import check_only

    check_only(args.only)
    study = Path(args.study)
    if not study.is_absolute():
        if not local:
            raise UserError(f"--study {args.study}: give an absolute path on storage every node sees "
                            f"(a relative one would land in the job's temporary working directory)")
        study = study.resolve()
    python = args.python or (sys.executable if local else "python")
    runtime_env = {"working_dir": str(wd), "excludes": EXCLUDES + list(args.exclude)}
    if env_vars := commit_env(wd):
        runtime_env["env_vars"] = env_vars
    return address, entrypoint(args, python, config_rel, str(study)), runtime_env


def _client(address: str):
    _enable_token_auth_if_available()
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # noqa: BLE001 - Ray raises several types for an unreachable or refusing server
        first = one_line(e)
        raise ClusterError(f"cannot reach the Ray job server at {address} ({first}); is the head running "
                           f"(`ray start --head`) and is its dashboard port right?") from None


def _submit(client, address: str, ep: str, runtime_env: dict, wait_s: float = 120.0) -> str:
    """Submit; a head that is still starting its job agent ("try again later") is retried."""
    deadline = time.time() + wait_s
    while True:
        try:
            return client.submit_job(entrypoint=ep, runtime_env=runtime_env)
        except Exception as e:  # noqa: BLE001 - e.g. 401/403 from a cluster with another token
            text = str(e)
            if "try again later" in text and time.time() < deadline:
                time.sleep(3)
                continue
            first = one_line(e, 300)
            raise ClusterError(f"the job server at {address} refused the job: {first}") from None


def follow(client, job_id: str, out=sys.stdout) -> int:
    """Print the job's log as it comes until the job ends; its exit status (0: succeeded)."""
    import asyncio

    from ray.job_submission import JobStatus

    async def tail():
        async for lines in client.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    try:
        asyncio.run(tail())
    except Exception:  # noqa: BLE001 - the log stream is a convenience; the status below decides
        pass
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    while (info := client.get_job_info(job_id)).status not in terminal:
        time.sleep(1)
    if info.status == JobStatus.SUCCEEDED:
        print(f"raystudy submit: job {job_id} succeeded", file=sys.stderr)
        return 0
    code = info.driver_exit_code if info.driver_exit_code not in (None, 0) else 1
    msg = (info.message or "").strip()
    print(f"raystudy submit: job {job_id} {info.status.value.lower()} (exit code {code})"
          + (f": {one_line(msg, 300, last=True)}" if msg else ""), file=sys.stderr)
    return code


def command(args) -> int:
    """``raystudy submit``: check, submit, follow; returns the job's exit status (a UserError is the
    CLI's one line)."""
    address, ep, runtime_env = prepare(args)
    client = _client(address)
    job_id = _submit(client, address, ep, runtime_env)
    print(f"raystudy submit: job {job_id} submitted to {address}: {ep}", file=sys.stderr)
    if args.no_wait:
        print(job_id)
        return 0
    try:
        return follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\nraystudy submit: stopped following; job {job_id} keeps running "
              f"(`ray job stop {job_id} --address {address}` stops it)", file=sys.stderr)
        return 130
