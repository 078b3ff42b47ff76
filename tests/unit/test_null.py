"""The held-out split and the chance level (raystudy.compute.null): no K-set holds the split, every
held-out image is a query whose distances (d_synth: leave-one-out over the split) equal a brute force
written here, and on the circle its memorized fraction is the closed-form chance level
(raystudy.datasets.toy.attractors.chance_memorized)."""

import math

import numpy as np
import pytest

from raystudy.compute.null import nearest_other, null_fractions, null_labels
from raystudy.config import StudyConfig, from_dict
from raystudy.datasets import from_array, load_dataset
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


def test_k_larger_than_what_the_split_leaves_is_refused_in_one_line(digits):
    validate_against_data(from_dict({"ks": [2, 1597]}), digits)
    with pytest.raises(DataError, match=r"K=1797 is larger than what digits leaves beside its held-out split "
                                        r"\(1797 - data.held_out 200 = 1597\)"):
        validate_against_data(from_dict({"ks": [2, 1797]}), digits)
    validate_against_data(from_dict({"ks": [1797], "data": {"held_out": 0}}), digits)
    with pytest.raises(DataError, match="basins.held_out=8 is more than the held-out split"):
        validate_against_data(from_dict({"data": {"held_out": 4}, "basins": {"enabled": True, "held_out": 8}}),
                              digits)


def brute_force(dataset, queries, train):
    """Per-pixel L2 (n, K) from each query to the K-set and (n, n) among the queries, diagonal inf: full
    float64 matrices of direct differences."""
    from scipy.spatial.distance import cdist

    flat = dataset.get(np.arange(len(dataset))).reshape(len(dataset), -1).astype(np.float64)
    root = math.sqrt(flat.shape[1])
    among = cdist(flat[queries], flat[queries]) / root
    np.fill_diagonal(among, np.inf)
    return cdist(flat[queries], flat[train]) / root, among


def test_nearest_other_equals_a_brute_force():
    x = np.random.default_rng(7).normal(size=(23, 5))
    x[9] = x[2]  # a duplicate pair and a triple, across chunks of 4
    x[17] = x[21] = x[4]
    want = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(want, np.inf)
    for chunk in (4, 23, 1024):
        got = nearest_other(x, chunk=chunk)
        assert np.allclose(got, want.min(1), rtol=1e-12, atol=0), chunk
        assert (got[[2, 9, 4, 17, 21]] == 0).all()
    assert nearest_other(x[:1]).tolist() == [np.inf] and nearest_other(x[:0]).shape == (0,)
    # Far from the origin ||x||^2 + ||y||^2 - 2 x.y loses about 1e-16 of the norms (here 3e6, the
    # distances 1e-3): the distance itself is a difference.
    far = 100.0 + 1e-3 * np.random.default_rng(8).normal(size=(40, 300))
    far[30] = far[5]
    want = ((far[:, None] - far[None]) ** 2).sum(-1)
    np.fill_diagonal(want, np.inf)
    got = nearest_other(far, chunk=16)
    assert np.allclose(got, want.min(1), rtol=1e-12, atol=0) and got[5] == got[30] == 0


def test_null_distances_labels_and_fractions_equal_a_brute_force(digits):
    # Thresholds inside the distances' range, so all three labels occur.
    cfg = from_dict({"data": {"held_out": 60}, "classify": {"delta_m": {"l2": 0.33}, "delta_s": {"l2": 0.42}}})
    k = 128
    perm = np.random.default_rng(np.random.SeedSequence([0, 0x5EED])).permutation(len(digits))
    d, ds = brute_force(digits, perm[len(digits) - 60:], perm[:k])
    d_train, d_synth = d.min(1), ds.min(1)
    mem = d_train <= 0.33
    spur = ~mem & (d_synth <= 0.42)
    want = np.where(mem, "memorized", np.where(spur, "spurious", "generalized"))
    assert set(want) == {"memorized", "spurious", "generalized"}
    lab = null_labels(cfg, digits, "l2", k)
    # Every held-out image is a query.
    assert len(lab["label"]) == cfg.data.held_out
    assert np.allclose(lab["d_train"], d_train, rtol=0, atol=1e-12)
    assert np.allclose(lab["d_synth"], d_synth, rtol=0, atol=1e-12)
    assert lab["label"].tolist() == want.tolist()
    two = np.sort(d, 1)[:, :2]
    assert np.allclose(lab["ratio"], two[:, 0] / two[:, 1], atol=1e-12)
    row = null_fractions(cfg, digits, "l2", k, seed=3)
    assert row["n"] == [60] and row["seed"] == [3]
    for name, f in (("memorized", mem), ("spurious", spur), ("generalized", ~mem & ~spur),
                    ("ratio_memorized", two[:, 0] / two[:, 1] < 1 / 3)):
        assert row[name][0] == pytest.approx(f.mean()), name
    # Not computed for a learned metric: an explicit empty row.
    assert null_fractions(cfg, digits, "lpips-alex", k, 0)["n"] == [0]


def test_a_duplicated_held_out_image_is_its_twin_s_reference_at_distance_0(digits):
    cfg = from_dict({"data": {"held_out": 40}})
    x = digits.get(np.arange(len(digits)))
    held = held_out_indices(len(digits), 40, 0)
    x[held[31]] = x[held[3]]
    dup = from_array("digits", x)
    lab = null_labels(cfg, dup, "l2", 64)
    assert lab["d_synth"][3] == 0 and lab["d_synth"][31] == 0
    assert lab["label"][3] == lab["label"][31] == "spurious"
    _, ds = brute_force(dup, held, kset_indices(len(dup), 64, 0))
    assert np.allclose(lab["d_synth"], ds.min(1), rtol=0, atol=1e-12)


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
        assert len(lab["label"]) == cfg.data.held_out
        got = float(np.mean(lab["label"] == "memorized"))
        sd = math.sqrt(chance * (1 - chance) / len(lab["label"]))
        assert abs(got - chance) <= 4 * sd + 1e-9, (k, got, chance)
