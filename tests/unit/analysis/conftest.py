"""Synthetic study folders for the analysis tests, written table by table by
raystudy.analysis.synthetic (seconds, no training, no Ray). Module-scoped: the report test
writes its report into ``study``, so each test file gets its own copy."""

import pytest

from raystudy.analysis import synthetic

KS = (2, 8, 32, 128, 512)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return synthetic.write_study(tmp_path_factory.mktemp("an") / "small-unet", ks=KS, seeds=(0, 1), n=40,
                                 k_half=40, basins=True)


@pytest.fixture(scope="module")
def study2(tmp_path_factory):
    return synthetic.write_study(tmp_path_factory.mktemp("an") / "large-unet", ks=KS, seeds=(0,), n=40,
                                 k_half=160, seed=1, train_log=False, stages=False)
