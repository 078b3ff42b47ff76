"""Which images and which noise (raystudy.splits): every K-set and the held-out split against
numpy written here, and every seed and salt at the values the studies made so far hold (a changed
salt would change every table)."""

import re

import numpy as np

from raystudy import axes, splits
from raystudy.config import DataSection, from_dict
from raystudy.datasets import load_dataset
from raystudy.datasets.base import from_array
from tests.conftest import ROOT


def _perm(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n)


def test_k_sets_and_the_held_out_split_without_a_test_split(digits):
    """Twin 0: the permutation's first K; twin 1: its K before the held-out tail, read backwards
    (so nested); the held-out split: the tail. Whatever the axis's variant and snapshot."""
    n, h = len(digits), 200
    cfg = from_dict({"study": {"seed": 5}, "data": {"held_out": h}})
    perm = _perm(n, 5)
    for k in (1, 8, 798):
        for variant, seen in (("base", None), ("wide", 128)):
            np.testing.assert_array_equal(splits.kset(cfg, digits, axes.Axis(variant, 0, seen), k), perm[:k])
            np.testing.assert_array_equal(splits.kset(cfg, digits, axes.Axis(variant, 1, seen), k),
                                          perm[n - h - k:n - h][::-1])
    np.testing.assert_array_equal(splits.held_out(cfg, digits), perm[n - h:])
    np.testing.assert_array_equal(splits.kset_indices(n, 8, 5, h, 1), perm[n - h - 8:n - h][::-1])


def test_k_sets_and_the_held_out_split_of_a_dataset_with_its_own_test_split():
    """K-sets are drawn from the training images alone (nothing is reserved from them); the
    held-out images are the test split's, in their own seeded order."""
    rng = np.random.default_rng(0)
    ds = from_array("x", rng.integers(0, 256, (20, 1, 2, 2), dtype=np.uint8),
                    rng.integers(0, 256, (7, 1, 2, 2), dtype=np.uint8))
    cfg = from_dict({"study": {"seed": 3}, "data": {"held_out": 5}})
    perm = _perm(20, 3)
    np.testing.assert_array_equal(splits.kset(cfg, ds, axes.Axis(), 6), perm[:6])
    np.testing.assert_array_equal(splits.kset(cfg, ds, axes.Axis(twin=1), 6), perm[14:20][::-1])
    order = np.random.default_rng(np.random.SeedSequence([3, 0x7E57])).permutation(7)
    np.testing.assert_array_equal(splits.held_out(cfg, ds), 20 + order[:5])


def test_seeds_and_salts_keep_the_values_stored_in_every_study():
    assert (splits.PERMUTATION_SALT, splits.TEST_ORDER_SALT, splits.RUN_SALT, splits.BASINS_SALT, splits.ENERGY_SALT,
            splits.CIRCLE_SALT, splits.CIRCLE_START_SALT, splits.MANIFOLD_SALT) == \
        (0x5EED, 0x7E57, 0x7EA1, 0xBA5, 0xE6, 0xC1C, 0x57A127, 0x5EED)
    # The loss curves' batches of run (K = 8, seed 1): the items and noise every such table holds.
    assert splits.PROBE_SALT == 0x6C05
    assert splits.probe_seeds(splits.run_seed(0, 8, 1)) == (5267685529953954085, 7569675321211902519)
    # The seeds raystudy.seeds gave before it became part of splits.py.
    assert splits.run_seed(0, 8, 1) == 1283795302 and splits.run_seed(3, 8, 1, twin=1) == 4177171303
    assert splits.sample_seed(0, 2, 0, "eval", 5) == 620069449188441932
    assert splits.sample_seed(7, 2, 1, "ref", 0) == 6809569832712049556
    assert splits.item_seed(0, 8, 0, "held-out", 1234, splits.BASINS_SALT) == 6111356845827910368
    assert splits.item_seed(0, 8, 0, "train", 17, splits.ENERGY_SALT) == 8264904786914721852
    # The datasets and the circle's sampler draw from their salts.
    theta = np.array([0.15207574516962855, 5.158129615306815, 1.9833599037625838])
    circle = load_dataset(DataSection(name="circle", size=3)).get(np.arange(3)).reshape(3, 2)
    np.testing.assert_array_equal(circle, np.stack([np.cos(theta), np.sin(theta)], 1).astype(np.float32))
    from raystudy.datasets.manifold import _uniform
    from raystudy.datasets.toy.circle import marginal_start

    assert _uniform(2, np.array([0]), 6).tolist() == [[0.7512544995926103, 0.25276210800216525, 0.9630061161466108,
                                                       0.10643268499521485, 0.9211636666069528, 0.9305382986949348]]
    points = np.arange(2000.0).reshape(1000, 2)
    # the uniforms 0.388... and 0.486... of SeedSequence([0 and 1, 0x57A127]): points 388 and 486
    np.testing.assert_array_equal(marginal_start(points, [0, 1], np.zeros((2, 2))), points[[388, 486]])


def test_no_module_but_splits_salts_a_random_stream():
    """A literal salt anywhere else would be a second rule: every SeedSequence, default_rng or
    hash key of the package takes its salt from splits.py."""
    literal = re.compile(r"(SeedSequence|default_rng)\(\[[^\]]*\b(0x[0-9A-Fa-f]+|\d{3,})|"
                         r"^\s*_?[A-Z_]*(SALT|TAG)\s*=|np\.uint64\(0x5EED\)", re.M)
    found = [str(p.relative_to(ROOT)) for p in (ROOT / "raystudy").rglob("*.py")
             if p.name != "splits.py" and literal.search(p.read_text())]
    assert found == [], found
