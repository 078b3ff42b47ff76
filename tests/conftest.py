import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"

# Keep Ray quiet and local in tests; no usage stats leave the machine.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with 2 CPUs, shared by the tests that need one."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def offline(monkeypatch):
    """No network for this test, offline machine or not: every proxy is a closed local port, so a
    fetch fails at once. urllib keeps the proxies of its first ``urlopen`` in a process-wide
    opener; it is dropped afterwards, or every later ``urlopen`` in the session would go to that
    closed port."""
    import urllib.request

    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    urllib.request.install_opener(None)
    yield
    urllib.request.install_opener(None)


@pytest.fixture(scope="session")
def digits():
    from raystudy.config import DataSection
    from raystudy.datasets import load_dataset

    return load_dataset(DataSection(name="digits"))


@pytest.fixture(scope="session")
def sched():
    """The training scheduler every DDPM study uses (1,000 steps, linear betas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000)


def digits_tensor():
    """The digits dataset's images as a float32 tensor (N, 1, 8, 8) in [-1, 1]."""
    import torch

    from raystudy.datasets.files import digits

    return torch.from_numpy(digits())


@pytest.fixture(scope="session")
def study_of(tmp_path_factory, ray_local):
    """``study_of(config, *overrides, only=None)`` -> (cfg, folder): the study of that config, run
    once per test session on the real local Ray and shared by every test that asks for the same
    one. Nobody changes it: a test that changes a study works on ``copy_study(folder, tmp_path)``."""
    from raystudy.config import load_config
    from raystudy.study import run

    made = {}

    def make(config=TINY, *overrides, only=None):
        key = (str(config), overrides, only)
        if key not in made:
            cfg = load_config(config, list(overrides))
            out = tmp_path_factory.mktemp(Path(str(config)).stem) / "s"
            run(cfg, out, echo=lambda *a: None, only=only)
            made[key] = (cfg, out)
        return made[key]

    return make


def copy_study(folder: Path, tmp_path: Path) -> Path:
    """A copy of a study folder to change (Ray's own results stay behind)."""
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(folder, dst, ignore=shutil.ignore_patterns("ray_results"))
    return dst


@pytest.fixture(scope="session")
def tiny_study(study_of):
    """The tiny study of tests/data/tiny.yaml (two trained UNets, every stage)."""
    return study_of(TINY)


# The tiers, one folder each: its marker and the time any one of its tests may take before
# pytest-timeout ends it with a traceback (a hang is one line in CI, not a lost hour).
TIERS = {"unit": 60, "stages": 300, "worlds": 300, "system": 600}


def pytest_collection_modifyitems(config, items):
    """Each test gets its folder's tier marker (``-m unit`` ... ``-m system``) and timeout, and
    every test that uses the local Ray (directly or through a study fixture) is also marked
    ``ray``. The tiers run in the order of TIERS. tests/system/test_cluster.py runs its clusters
    with Ray's token auth disabled, and Ray caches the auth mode for the life of the process:
    every local Ray started after it in the same session would fail with InvalidAuthToken. So
    those tests run last."""
    order = list(TIERS)

    def tier_of(item):
        parts = Path(str(item.path)).relative_to(ROOT / "tests").parts
        return parts[0] if len(parts) > 1 and parts[0] in TIERS else None

    for item in items:
        tier = tier_of(item)
        if tier:
            item.add_marker(getattr(pytest.mark, tier))
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(TIERS[tier]))
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
    # unit first (no Ray may be up there), then stages, worlds, system; the clusters last of all
    items.sort(key=lambda item: (order.index(tier_of(item)) if tier_of(item) else 0,
                                 item.nodeid.startswith("tests/system/test_cluster.py")))
