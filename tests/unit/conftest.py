"""The unit tier: plain functions over arrays, files and tiny models; no Ray. A test here that
starts Ray, directly or through Ray Data or a study, fails instead of passing slowly: it
belongs in tests/stages (a real local Ray) or tests/system."""

import sys

import pytest


@pytest.fixture(scope="session")
def ray_local():
    pytest.fail("tests/unit starts no Ray: move this test to tests/stages")


def _ray_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture(autouse=True)
def _starts_no_ray():
    # The tiers run in order (unit first), so Ray is down here unless a test started it; a
    # Ray that was up before the test (a mixed selection on the command line) is not this test's.
    before = _ray_up()
    yield
    if not before and _ray_up():
        sys.modules["ray"].shutdown()
        pytest.fail("this unit test started Ray: move it to tests/stages")
