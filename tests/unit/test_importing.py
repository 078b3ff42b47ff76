"""raystudy import-samples refuses what does not fit the study in one line (tests/stages/
test_import_samples.py labels what it imports)."""

import numpy as np
import pytest

from raystudy.config import load
from raystudy.errors import DataError
from raystudy.importing import import_samples
from tests.conftest import TINY
from tests.stages.test_import_samples import OVERRIDES


def test_bad_imports_are_one_line(tmp_path):
    cfg = load(TINY, OVERRIDES)
    f = tmp_path / "8.npz"
    np.savez(f, samples=np.zeros((12, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"images are \(3, 8, 8\), the study's dataset is \(1, 8, 8\)"):
        import_samples(cfg, tmp_path / "s", 8, 0, f)
    np.savez(f, samples=np.zeros((7, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match="7 images for the ref set; generate.n_samples=6 per set"):
        import_samples(cfg, tmp_path / "s", 8, 0, f)
    with pytest.raises(DataError, match="K=16, seed=0 is not a unit of the config"):
        import_samples(cfg, tmp_path / "s", 16, 0, f)
    np.savez(f, samples=np.full((12, 1, 8, 8), 3.0, np.float32))
    with pytest.raises(DataError, match=r"values span \[3, 3\]"):
        import_samples(cfg, tmp_path / "s", 8, 0, f)


def test_pngs_of_two_sizes_are_one_line(tmp_path):
    from PIL import Image

    from raystudy.importing import read_images

    folder = tmp_path / "pngs"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "a.png")
    Image.new("L", (16, 16)).save(folder / "b.png")
    with pytest.raises(DataError, match=r"b.png: images of \(1, 16, 16\) beside a.png's \(1, 8, 8\)") as e:
        read_images(folder, (1, 8, 8))
    assert "\n" not in str(e.value)
