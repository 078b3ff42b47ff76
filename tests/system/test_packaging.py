"""What a pip user gets: the wheel as pip builds it (metadata, license, packaged configs),
`raystudy --version`, and the example configs runnable by name from any folder."""

import email
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.lower()] = version
    return out


# Builds a wheel from a copy of the tree (pip's isolated build environment): tens of seconds.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # From a copy without earlier build output: a stale *.egg-info would add files the
    # pyproject does not ship (and the build leaves the checkout untouched).
    src = out / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "studies", "data", "__pycache__", ".pytest_cache", "ray_results"))
    # The build pip runs for `pip install .`, minus the isolated build environment (no registry).
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    (whl,) = out.glob("raystudy-*.whl")
    return zipfile.ZipFile(whl)


def _metadata(wheel) -> email.message.Message:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return email.message_from_bytes(wheel.read(name))


def test_wheel_takes_the_tested_torch_pair_and_the_python_the_stack_needs(wheel):
    from packaging.requirements import Requirement

    meta = _metadata(wheel)
    pins = _pins()
    requires = {r.name: r for r in map(Requirement, meta.get_all("Requires-Dist"))}
    for name in ("torch", "torchvision"):
        # A range (a site's CUDA-matched torch stays), which holds the pair the project tests.
        assert requires[name].specifier.contains(pins[name], prereleases=True), requires[name]
        assert not str(requires[name].specifier).startswith("=="), requires[name]
    # requires-python: the highest minimum that the locked stack's own packages declare.
    floors = []
    for name in pins:
        try:
            spec = distribution(name).metadata.get("Requires-Python") or ""
        except Exception:  # noqa: BLE001 - a pin not installed here (e.g. a test-only one)
            continue
        floors += [tuple(int(x) for x in m.split(".")[:2]) for m in re.findall(r">=\s*([0-9.]+)", spec)]
    need = ".".join(map(str, max(floors)))
    assert meta["Requires-Python"] == f">={need}", (meta["Requires-Python"], need)
    assert f"Programming Language :: Python :: {need}" in meta.get_all("Classifier")
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Apache License" in wheel.read(next(n for n in wheel.namelist() if n.endswith("licenses/LICENSE"))).decode()
    assert meta.get_payload().startswith("# raystudy")  # the README is the long description


def test_pip_keeps_the_torch_a_site_already_has(wheel, tmp_path):
    """A cluster image's CUDA-matched torch stays: resolving the wheel against this environment
    (torch 2.14.1+cu130 here), with no index to fetch anything from, installs raystudy alone."""
    import json

    report = tmp_path / "report.json"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet", "--report",
                        str(report), wheel.filename], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert [i["metadata"]["name"] for i in json.loads(report.read_text())["install"]] == ["raystudy"]


def test_wheel_ships_every_example_config(wheel):
    shipped = {Path(n).name: wheel.read(n) for n in wheel.namelist() if re.fullmatch(r"raystudy/configs/[^/]+\.yaml", n)}
    top = {p.name: p.read_bytes() for p in (ROOT / "configs").glob("*.yaml")}
    assert shipped == top and "demo.yaml" in shipped


def test_version_and_a_packaged_config_by_name_from_any_folder(tmp_path):
    from raystudy.config import load_config

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "RAY_USAGE_STATS_ENABLED": "0"}
    v = subprocess.run([str(BIN / "raystudy"), "--version"], env=env, capture_output=True, text=True)
    version = yaml.safe_load(re.search(r'^version = (".*")$', (ROOT / "pyproject.toml").read_text(), re.M).group(1))
    assert v.returncode == 0 and v.stdout.strip() == f"raystudy {version}"
    # tmp_path has no configs/ folder: `demo` is the packaged demo.
    d = subprocess.run([str(BIN / "raystudy"), "run", "demo", "--study", "s", "--dry-run", "-v"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert d.returncode == 0, d.stderr[-3000:]
    assert "name: digits-demo" in d.stdout and "would run train" in d.stdout and not (tmp_path / "s").exists()
    assert load_config("demo") == load_config(ROOT / "configs" / "demo.yaml") == load_config("demo.yaml")
    # A file of the user's wins over the packaged one of the same name.
    (tmp_path / "demo.yaml").write_text("study: {name: mine}\ndata: {name: digits}\n")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert load_config("demo.yaml").study.name == "mine"
    finally:
        os.chdir(cwd)
    bad = subprocess.run([str(BIN / "raystudy"), "run", "nodemo", "--study", "s", "--dry-run"], env=env,
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "demo" in bad.stderr and "cifar10" in bad.stderr and bad.stderr.count("\n") == 1
