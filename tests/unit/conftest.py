"""The unit tier: plain functions over arrays, files and tiny models; no Ray. A test here that
starts Ray, directly or through Ray Data or a study, fails instead of passing slowly: it
belongs in tests/stages (a real local Ray) or tests/system."""

import sys

import pytest


@pytest.fixture(scope="session")
def ray_local():
    pytest.fail("tests/unit starts no Ray: move this test to tests/stages")


@pytest.fixture(autouse=True)
def _starts_no_ray():
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        pytest.fail("this unit test started Ray: move it to tests/stages")
