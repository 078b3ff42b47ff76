"""raystudy import-samples refuses what does not fit the study in one line (tests/stages/
test_import_samples.py labels what it imports)."""

import numpy as np
import pytest

from raystudy.config import load_config
from raystudy.errors import DataError
from raystudy.importing import import_samples
from tests.conftest import TINY
from tests.stages.test_import_samples import OVERRIDES


def test_bad_imports_are_one_line(tmp_path):
    cfg = load_config(TINY, OVERRIDES)
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


def _stored(study, name):
    import pandas as pd

    s = pd.read_parquet(study / "tables" / "samples")
    s = s[s.set == name].sort_values("sample_id")
    return np.stack(s.image.to_numpy()).reshape(-1, 1, 8, 8), s.sample_id.to_numpy()


def test_files_and_shards_that_do_not_line_up_keep_every_image_in_order(tmp_path):
    # 6 per set in shards of 4 (4 + 2), from files of 5, 1 and 7 images in (n, H, W, C) order:
    # shards cut files and files cut shards, both ways.
    cfg = load_config(TINY, OVERRIDES)
    x = np.random.default_rng(0).uniform(-1, 1, (13, 1, 8, 8)).astype(np.float32)
    folder = tmp_path / "npz"
    folder.mkdir()
    for name, lo, hi in (("a", 0, 5), ("b", 5, 6), ("c", 6, 13)):
        np.savez(folder / f"{name}.npz", samples=x[lo:hi].transpose(0, 2, 3, 1))
    said = []
    assert import_samples(cfg, tmp_path / "s", 8, 0, folder, echo=said.append) == {"eval": 6, "ref": 6}
    for name, want in (("eval", x[:6]), ("ref", x[6:12])):
        got, ids = _stored(tmp_path / "s", name)
        assert np.array_equal(got, want) and ids.tolist() == list(range(6))
    assert said[-1].startswith("[import] 4/4 shards (12/12 samples)")


def test_a_bad_file_late_in_the_folder_marks_nothing_complete(tmp_path):
    import pandas as pd

    cfg = load_config(TINY, OVERRIDES)
    folder = tmp_path / "npz"
    folder.mkdir()
    np.savez(folder / "a.npz", samples=np.zeros((8, 1, 8, 8), np.float32))
    np.savez(folder / "b.npz", samples=np.full((4, 1, 8, 8), 2.0, np.float32))
    with pytest.raises(DataError, match=r"b.npz: values span \[2, 2\]"):
        import_samples(cfg, tmp_path / "s", 8, 0, folder)
    # The train stage is complete only with the unit's runs row: an interrupted import leaves none.
    assert not (tmp_path / "s" / "tables" / "runs").exists() or pd.read_parquet(tmp_path / "s" / "tables" / "runs").empty
    # Too few images is known from the headers, before anything is written.
    np.savez(folder / "b.npz", samples=np.zeros((3, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match="11 images for the ref set"):
        import_samples(cfg, tmp_path / "t", 8, 0, folder)
    assert not (tmp_path / "t").exists()


def test_imported_samples_and_datasets_map_pixels_by_one_rule(tmp_path):
    """uint8 pixels become v / 127.5 - 1 (float32, computed here) whether a folder of PNGs is read
    as a dataset or imported as samples. Floats: samples are [-1, 1] as they are (a bright set is
    not 0..1 images; 1 + 1e-4 is clipped, 3 refused), while a dataset file's 0..1 or 0..255 floats
    are mapped."""
    from PIL import Image

    from raystudy.config import DataSection
    from raystudy.datasets import load_dataset
    from raystudy.importing import read_images

    v = np.random.default_rng(0).integers(0, 256, (5, 8, 8), dtype=np.uint8)
    v.reshape(-1)[:256] = np.arange(256)  # every value: v * (2 / 255) - 1, say, differs in 111 of them
    want = (v.astype(np.float32) / np.float32(127.5) - np.float32(1))[:, None]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, a in enumerate(v):
        Image.fromarray(a).save(folder / f"{i}.png")
    np.testing.assert_array_equal(read_images(folder, (1, 8, 8)), want)
    np.testing.assert_array_equal(load_dataset(DataSection(name="folder", path=str(folder))).get(np.arange(5)), want)

    bright = np.random.default_rng(1).uniform(0, 1, (5, 1, 8, 8)).astype(np.float32)
    bright[0, 0, 0, 0] = 1 + 1e-4
    np.savez(tmp_path / "samples.npz", samples=bright)
    np.testing.assert_array_equal(read_images(tmp_path / "samples.npz", (1, 8, 8)), np.minimum(bright, 1))
    np.savez(tmp_path / "far.npz", samples=bright * 3)
    with pytest.raises(DataError, match=r"far.npz: values span \[.*, 3\]"):
        read_images(tmp_path / "far.npz", (1, 8, 8))
    for name, x, mapped in (("unit.npy", bright, bright * np.float32(2) - np.float32(1)),
                            ("bytes.npy", v[:, None].astype(np.float64), want)):
        np.save(tmp_path / name, x)
        got = load_dataset(DataSection(name="array", path=str(tmp_path / name))).get(np.arange(5))
        np.testing.assert_array_equal(got, mapped)
