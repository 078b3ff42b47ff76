"""What made a study: ``DIR/provenance.json``, one record per ``raystudy run`` that reached the
stages, appended (a resumed study keeps the record of every run that wrote into it).

A record holds the raystudy version and, when the package is imported from a git checkout,
its commit and whether tracked files differed from it (code that came without its .git, as a
Ray job's upload or an image does, takes them from ``RAYSTUDY_GIT_COMMIT`` and
``RAYSTUDY_GIT_DIRTY``, which ``raystudy submit`` and the Dockerfile set; ``git.source`` says
which); the versions of the libraries the
results depend on; Python; the hardware (CPU model, GPUs this process sees, and the Ray
cluster's nodes, CPUs, GPUs and accelerator types when Ray is connected); the command line.

Standard library only, and nothing heavy is imported to fill a record: versions come from the
installed distributions' metadata, GPUs from torch only if it is already imported, the cluster
from Ray only if it is already connected. So the report (no torch, no Ray) reads it too.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

FILE = "provenance.json"
# Distribution names; faiss ships as one of several.
PACKAGES = {"raystudy": ("raystudy",), "torch": ("torch",), "torchvision": ("torchvision",),
            "diffusers": ("diffusers",), "ray": ("ray",), "faiss": ("faiss-cpu", "faiss-gpu", "faiss"),
            "lpips": ("lpips",), "numpy": ("numpy",), "pyarrow": ("pyarrow",), "pandas": ("pandas",)}
# Where the code came without .git (a Ray job's upload, an image): its commit and whether tracked
# files differed from it ("true"/"false"), set by `raystudy submit` and the Dockerfile's build args.
ENV_COMMIT = "RAYSTUDY_GIT_COMMIT"
ENV_DIRTY = "RAYSTUDY_GIT_DIRTY"
# Keys of a record that say when or where it was written, not what made the results:
# never reported as a difference between studies.
CIRCUMSTANCE = ("written", "host", "command")


def package_versions() -> dict[str, str | None]:
    out = {}
    for key, names in PACKAGES.items():
        out[key] = None
        for name in names:
            try:
                out[key] = version(name)
                break
            except PackageNotFoundError:
                continue
    return out


def checkout_state(package, timeout_s: float = 5.0) -> dict | None:
    """{"commit", "dirty"} of the git checkout whose top-level ``raystudy/`` is the package folder
    ``package``; None for a copy that is not (an installed one, even inside some other repository,
    e.g. a venv in a checkout), or without git. Dirty: tracked files differ from the commit."""
    package = Path(package).resolve()

    def git(*args) -> str:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, check=True,
                              timeout=timeout_s).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        if not (top / "raystudy" / "__init__.py").exists() or \
                not (top / "raystudy" / "__init__.py").samefile(package / "__init__.py"):
            return None
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def env_state(environ=None) -> dict | None:
    """The commit handed in through ``RAYSTUDY_GIT_COMMIT`` (a hex commit id; anything else, or
    empty, is no commit) and ``RAYSTUDY_GIT_DIRTY`` (true/false; unset or other: None, unknown)."""
    environ = os.environ if environ is None else environ
    commit = environ.get(ENV_COMMIT, "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        return None
    dirty = {"true": True, "1": True, "false": False, "0": False}.get(environ.get(ENV_DIRTY, "").strip().lower())
    return {"commit": commit, "dirty": dirty, "source": ENV_COMMIT}


def git_state(timeout_s: float = 5.0) -> dict | None:
    """The commit this package's code is: {"commit", "dirty", "source"}, from the checkout it is
    imported from (source "checkout"), else from the environment (``env_state``); None if neither."""
    found = checkout_state(Path(__file__).resolve().parent, timeout_s)
    return {**found, "source": "checkout"} if found else env_state()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def local_gpus() -> list[str] | None:
    """Names of the GPUs this process sees, from torch if the process has imported it already;
    None when not probed."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a broken CUDA setup is not worth failing a study over
        return None


def ray_cluster() -> dict | None:
    """The connected Ray cluster's size (``cluster.cluster_summary``), only if this process runs Ray."""
    if "ray" not in sys.modules:
        return None
    from .cluster import cluster_summary

    return cluster_summary()


def collect(argv: list[str] | None = None) -> dict:
    """A record for this process (see the module docstring)."""
    argv = sys.argv if argv is None else argv
    versions = package_versions()
    ours = versions.pop("raystudy")
    return {
        "raystudy": ours or "unknown (not installed)",
        "git": git_state(),
        "versions": versions,
        "python": platform.python_version(),
        "hardware": {"cpu": cpu_model(), "cpus": os.cpu_count(), "machine": platform.machine(),
                     "gpus": local_gpus(), "ray_cluster": ray_cluster()},
        "command": shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else "",
        "host": socket.gethostname(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def read(study_dir) -> list[dict]:
    """The study's records, oldest first; [] if it has none (made before provenance existed)."""
    try:
        data = json.loads((Path(study_dir) / FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return list(data.get("runs", [])) if isinstance(data, dict) else []


def record(study_dir, argv: list[str] | None = None) -> dict:
    """Append this run's record to ``DIR/provenance.json`` (atomically); returns it."""
    from .tables import write_text

    rec = collect(argv)
    runs = read(study_dir) + [rec]
    write_text(Path(study_dir) / FILE, json.dumps({"runs": runs}, indent=1))
    return rec


def flatten(rec: dict, prefix: str = "") -> dict[str, object]:
    """{"versions": {"torch": "2.14.1"}} -> {"versions.torch": "2.14.1"}; lists become text."""
    out: dict[str, object] = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = ", ".join(map(str, v)) if isinstance(v, list) else v
    return out


def differences(records: dict[str, dict]) -> list[dict]:
    """Rows ``{"field": key, label: value, ...}`` for every field whose value is not the same
    in all ``records`` (label -> record), leaving out when and where each was written."""
    flat = {label: flatten(r) for label, r in records.items()}
    keys = sorted({k for f in flat.values() for k in f}, key=lambda k: (k.split(".")[0], k))
    rows = []
    for k in keys:
        if k.split(".")[0] in CIRCUMSTANCE:
            continue
        values = {label: f.get(k) for label, f in flat.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            rows.append({"field": k, **values})
    return rows
