"""The held-out split and the chance level (raystudy.compute.null): no K-set holds the split, the null's
distances equal a brute force written here, and on the circle its memorized fraction is the
closed-form chance level (raystudy.datasets.toy.attractors.chance_memorized)."""

import math

import numpy as np
import pytest

from raystudy.compute.null import null_fractions, null_labels, split
from raystudy.config import StudyConfig, from_dict
from raystudy.datasets import load_dataset
from raystudy.errors import DataError
from raystudy.splits import held_out_indices, kset_indices
from raystudy.study import validate_against_data


def test_held_out_split_is_outside_every_k_set_and_keeps_the_k_sets(digits):
    n = len(digits)
    held = held_out_indices(n, 200, 0)
    assert len(held) == 200 and len(set(held)) == 200
    assert not set(held) & set(kset_indices(n, n - 200, 0))
    # Reserving changes no K-set: still the permutation's prefixes.
    assert np.array_equal(kset_indices(n, 1597, 0)[:512], kset_indices(n, 512, 0))
    from raystudy.compute.items import held_out

    cfg = StudyConfig()
    assert np.array_equal(held_out(digits, 4, cfg), held[::-1][:4])
    q, r = split(cfg, digits)
    assert len(q) == 100 and len(r) == 100 and not set(q) & set(r)


def test_k_larger_than_what_the_split_leaves_is_refused_in_one_line(digits):
    validate_against_data(from_dict({"ks": [2, 1597]}), digits)
    with pytest.raises(DataError, match=r"K=1797 is larger than what digits leaves beside its held-out split "
                                        r"\(1797 - data.held_out 200 = 1597\)"):
        validate_against_data(from_dict({"ks": [2, 1797]}), digits)
    validate_against_data(from_dict({"ks": [1797], "data": {"held_out": 0}}), digits)
    with pytest.raises(DataError, match="basins.held_out=8 is more than the held-out split"):
        validate_against_data(from_dict({"data": {"held_out": 4}, "basins": {"enabled": True, "held_out": 8}}),
                              digits)


def test_null_distances_equal_a_brute_force(digits):
    from scipy.spatial.distance import cdist

    cfg = from_dict({"data": {"held_out": 60}})
    k = 128
    lab = null_labels(cfg, digits, "l2", k)
    perm = np.random.default_rng(np.random.SeedSequence([0, 0x5EED])).permutation(len(digits))
    held = perm[len(digits) - 60:]
    flat = digits.get(np.arange(len(digits))).reshape(len(digits), -1).astype(np.float64)
    d = cdist(flat[held[:30]], flat[perm[:k]]) / math.sqrt(flat.shape[1])
    ds = cdist(flat[held[:30]], flat[held[30:]]) / math.sqrt(flat.shape[1])
    assert np.allclose(lab["d_train"], d.min(1), atol=1e-6)
    assert np.allclose(lab["d_synth"], ds.min(1), atol=1e-6)
    two = np.sort(d, 1)[:, :2]
    assert np.allclose(lab["ratio"], two[:, 0] / two[:, 1], atol=1e-6)
    row = null_fractions(cfg, digits, "l2", k, seed=3)
    mem = d.min(1) <= 0.1
    assert row["n"] == [30] and row["seed"] == [3]
    assert row["memorized"][0] == pytest.approx(mem.mean())
    assert row["spurious"][0] == pytest.approx((~mem & (ds.min(1) <= 0.1)).mean())
    # Not computed for a learned metric: an explicit empty row.
    assert null_fractions(cfg, digits, "lpips-alex", k, 0)["n"] == [0]


def test_null_on_the_circle_is_the_closed_form_chance_level():
    from raystudy.datasets.toy.attractors import chance_memorized

    cfg = from_dict({"data": {"name": "circle", "size": 100000, "held_out": 4000}, "model": {"type": "circle-mlp"},
                     "generate": {"sampler": "em"}, "knn": {"metrics": ["euclidean"]}})
    ds = load_dataset(cfg.data)
    delta_m = cfg.classify.delta_m["euclidean"]
    for k in (9, 100):
        train = ds.get(kset_indices(len(ds), k, 0)).reshape(k, 2).astype(np.float64)
        chance = chance_memorized(train, delta_m)
        lab = null_labels(cfg, ds, "euclidean", k)
        got = float(np.mean(lab["label"] == "memorized"))
        sd = math.sqrt(chance * (1 - chance) / len(lab["label"]))
        assert abs(got - chance) <= 4 * sd + 1e-9, (k, got, chance)
