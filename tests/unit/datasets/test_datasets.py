import gzip
import pickle
import struct

import numpy as np
import pytest

from raystudy.config import DataSection
from raystudy.datasets import DataError, load_dataset
from raystudy.splits import held_out_indices, kset_indices, permutation


def test_digits_scaled_to_unit_range(digits):
    assert len(digits) == 1797 and digits.shape == (1, 8, 8)
    x = digits.get(np.arange(len(digits)))
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0


def test_subsets_are_nested_and_seeded(digits):
    sets = [set(kset_indices(len(digits), k, seed=3)) for k in (1, 2, 8, 64, 1797)]
    for small, big in zip(sets, sets[1:]):
        assert small < big
    assert not np.array_equal(permutation(1797, 3), permutation(1797, 4))


def test_k_out_of_range(digits):
    with pytest.raises(DataError, match="outside 1..1797"):
        kset_indices(len(digits), 0, 0)


def _idx_bytes(arr):
    return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    data = _idx_bytes(arr)
    (tmp_path / name).write_bytes(gzip.compress(data) if gz else data)
    ds = load_dataset(DataSection(name="mnist", path=str(tmp_path)))
    assert ds.shape == (1, 28, 28) and len(ds) == 5
    np.testing.assert_allclose(ds.get([2])[0, 0], arr[2] / 127.5 - 1, atol=1e-6)


def test_truncated_idx_is_a_clear_error(tmp_path):
    arr = np.zeros((5, 28, 28), np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(arr)[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_dataset(DataSection(name="mnist", path=str(tmp_path)))


def test_cifar10_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (3, 3072), dtype=np.uint8) for _ in range(5)]
    for i, b in enumerate(batches, 1):
        with open(root / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": b, b"labels": [0, 1, 2]}, fh)
    ds = load_dataset(DataSection(name="cifar10", path=str(tmp_path), limit=10))
    assert ds.shape == (3, 32, 32) and len(ds) == 10
    np.testing.assert_allclose(ds.get([4])[0], batches[1][1].reshape(3, 32, 32) / 127.5 - 1, atol=1e-6)


def test_npy_and_npz_and_folder(tmp_path):
    from PIL import Image

    arr = np.random.default_rng(2).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    np.savez(tmp_path / "x.npz", images=arr)
    for f in ("x.npy", "x.npz"):
        ds = load_dataset(DataSection(name="array", path=str(tmp_path / f)))
        assert ds.shape == (3, 16, 16)
        np.testing.assert_allclose(ds.get([1])[0], arr[1].transpose(2, 0, 1) / 127.5 - 1, atol=1e-6)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, a in enumerate(arr):
        Image.fromarray(a).save(folder / f"{i:02d}.png")
    ds = load_dataset(DataSection(name="folder", path=str(folder), image_size=8))
    assert ds.shape == (3, 8, 8) and len(ds) == 4


@pytest.mark.parametrize("name", ["cifar10", "mnist", "folder", "array"])
def test_missing_path_says_what_is_expected(tmp_path, name):
    with pytest.raises(DataError, match="expect") as e:
        load_dataset(DataSection(name=name, path=str(tmp_path / "absent")))
    assert "\n" not in str(e.value)


def _cifar_folder(root, n_per_batch, with_test, seed=1):
    root.mkdir()
    rng = np.random.default_rng(seed)
    batches = [rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8) for _ in range(5)]
    for i, b in enumerate(batches, 1):
        with open(root / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": b}, fh)
    test = rng.integers(0, 256, (7, 3072), dtype=np.uint8)
    if with_test:
        with open(root / "test_batch", "wb") as fh:
            pickle.dump({b"data": test}, fh)
    return np.concatenate(batches), test


def test_own_test_splits_are_the_held_out_images(tmp_path):
    """CIFAR-10's test_batch and MNIST's t10k are the held-out split: no K-set holds them, every
    training image is available to K, and the held-out indices read the test files' images."""
    from raystudy.axes import Axis
    from raystudy.config import from_dict
    from raystudy.splits import kset
    from raystudy.study import validate_against_data

    train, test = _cifar_folder(tmp_path / "c", 4, with_test=True)
    ds = load_dataset(DataSection(name="cifar10", path=str(tmp_path / "c")))
    assert (ds.n, ds.n_train, ds.n_test) == (27, 20, 7)
    held = held_out_indices(ds.n, 5, 3, ds.n_test)
    assert len(set(held)) == 5 and set(held) <= set(range(20, 27))
    np.testing.assert_allclose(ds.get(held), test[held - 20].reshape(-1, 3, 32, 32) / 127.5 - 1, atol=1e-6)
    cfg = from_dict({"study": {"seed": 3}, "data": {"name": "cifar10", "path": str(tmp_path / "c"), "held_out": 5},
                     "ks": [2, 20]})
    k_set = kset(cfg, ds, Axis(), 20)
    assert sorted(k_set) == list(range(20))  # the largest K is every training image, none of the test split
    np.testing.assert_allclose(ds.get(k_set), train[k_set].reshape(-1, 3, 32, 32) / 127.5 - 1, atol=1e-6)
    validate_against_data(cfg, ds)  # K = N is allowed when the test split is the held-out split
    with pytest.raises(DataError, match="test split"):
        validate_against_data(from_dict({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "held_out": 8}}), ds)
    # The same folder without test_batch: the held-out split is the permutation's tail, and K = N is refused.
    _cifar_folder(tmp_path / "d", 4, with_test=False)
    no_test = load_dataset(DataSection(name="cifar10", path=str(tmp_path / "d")))
    assert no_test.n_test == 0 and set(held_out_indices(no_test.n, 5, 3)) == set(permutation(20, 3)[15:])
    with pytest.raises(DataError, match="held-out split"):
        validate_against_data(cfg, no_test)
    # MNIST: t10k beside the training images.
    arr = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    t10k = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "train-images-idx3-ubyte").write_bytes(_idx_bytes(arr))
    (tmp_path / "m" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(t10k)))
    m = load_dataset(DataSection(name="mnist", path=str(tmp_path / "m"), limit=5))
    assert (m.n_train, m.n_test) == (5, 4)
    h = held_out_indices(m.n, 4, 0, m.n_test)
    np.testing.assert_allclose(m.get(h)[:, 0], t10k[h - 5] / 127.5 - 1, atol=1e-6)


def test_digits_are_scikit_learns_without_importing_it():
    """The embedded digits are read from scikit-learn's own file, pixel for pixel what its loader
    gives, scaled from 0..16 to [-1, 1]."""
    from sklearn.datasets import load_digits

    from raystudy.datasets.files import digits

    want = load_digits().images.astype(np.float32)[:, None] / 8.0 - 1.0
    got = digits()
    assert got.dtype == np.float32 and got.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(got, want)


def test_uint8_images_are_held_as_bytes_and_read_as_before(tmp_path):
    # 20,000 8-bit 16x16 RGB images: 15 MB as bytes, 61 MB as float32 in every process that loads them.
    import tracemalloc

    x = np.random.default_rng(3).integers(0, 256, (20_000, 3, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    tracemalloc.start()
    ds = load_dataset(DataSection(name="array", path=str(tmp_path / "x.npy"), held_out=0))
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < 1.5 * x.nbytes, held
    idx = np.array([0, 7, 19_999, 7])
    got = ds.get(idx)
    # Bit for bit what mapping every image to float32 first gave.
    assert got.dtype == np.float32 and np.array_equal(got, x[idx].astype(np.float32) / 127.5 - 1.0)
    # Resizing needs floats first; a float array stays float.
    small = load_dataset(DataSection(name="array", path=str(tmp_path / "x.npy"), image_size=8, held_out=0))
    assert small.get([0]).shape == (1, 3, 8, 8) and small.get([0]).dtype == np.float32
