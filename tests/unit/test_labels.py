import numpy as np

from raystudy.compute.classify import fractions, label_distances, label_samples, ratio_test
from raystudy.compute.knn import References
from raystudy.metrics import PixelL2
from raystudy.splits import kset_indices


def _brute(queries, refs):
    d = np.sqrt(((queries[:, None, :].astype(np.float64) - refs[None].astype(np.float64)) ** 2).sum(-1))
    return d


def test_neighbors_and_labels_agree_with_brute_force():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(40, 1, 4, 4)).astype(np.float32)
    train_idx = rng.permutation(1000)[:40]  # dataset indices, not positions
    ref = rng.normal(size=(30, 1, 4, 4)).astype(np.float32)
    q = np.concatenate([train[:5] + 0.01 * rng.normal(size=(5, 1, 4, 4)).astype(np.float32),
                        ref[:5] + 0.01 * rng.normal(size=(5, 1, 4, 4)).astype(np.float32),
                        rng.normal(size=(10, 1, 4, 4)).astype(np.float32)])
    refs = References(PixelL2(), train, train_idx, ref, np.arange(100, 130))
    out = refs.neighbors(q, k=4)

    d_t = _brute(q.reshape(20, -1), train.reshape(40, -1)) / 4.0  # per-pixel RMS: sqrt(D) = 4
    d_s = _brute(q.reshape(20, -1), ref.reshape(30, -1)) / 4.0
    order_t, order_s = np.argsort(d_t, 1)[:, :4], np.argsort(d_s, 1)[:, :4]
    np.testing.assert_array_equal(out["train_idx"], train_idx[order_t])
    np.testing.assert_allclose(out["train_dist"], np.take_along_axis(d_t, order_t, 1), rtol=1e-6)
    np.testing.assert_array_equal(out["synth_idx"], 100 + order_s)
    np.testing.assert_allclose(out["synth_dist"], np.take_along_axis(d_s, order_s, 1), rtol=1e-6)

    delta_m, delta_s = 0.05, 0.05
    labels = label_samples(out["train_dist"][:, 0], out["synth_dist"][:, 0], delta_m, delta_s)
    expect = ["memorized" if a <= delta_m else "spurious" if b <= delta_s else "generalized"
              for a, b in zip(d_t.min(1), d_s.min(1))]
    assert list(labels) == expect
    assert set(labels) == {"memorized", "spurious", "generalized"}


def test_ratio_test_brute_force():
    rng = np.random.default_rng(1)
    nn = np.sort(rng.uniform(0, 1, size=(100, 2)), axis=1)
    ratio, mem = ratio_test(nn[:, 0], nn[:, 1])
    np.testing.assert_allclose(ratio, nn[:, 0] / nn[:, 1])
    assert (mem == (nn[:, 0] / nn[:, 1] < 1 / 3)).all()
    assert ratio_test([0.0], [0.0])[1][0]  # an exact duplicate twice over is still a copy


def test_fractions_sum_to_one():
    labels = np.array(["memorized"] * 3 + ["spurious"] + ["generalized"] * 4 + ["memorized"] * 2)
    K = np.array([2] * 8 + [4] * 2)
    ratio_mem = np.array([True, True, False] + [False] * 5 + [True, False])
    out = fractions(K, np.zeros(10, int), np.array(["l2"] * 10), labels, ratio_mem)
    assert out["K"] == [2, 4] and out["n"] == [8, 2]
    assert out["ratio_memorized"] == [2 / 8, 0.5]
    assert out["memorized"] == [3 / 8, 1.0] and out["spurious"] == [1 / 8, 0.0]


def test_oracles_training_images_memorized_held_out_not(digits):
    k = 64
    train_idx = kset_indices(len(digits), k, seed=0)
    train = digits.get(train_idx)
    held = np.setdiff1d(np.arange(len(digits)), train_idx)[:200]
    held_images = digits.get(held)
    refs = References(PixelL2(), train, train_idx, held_images, held)
    mem = refs.neighbors(train, k=2)
    assert (mem["train_idx"][:, 0] == train_idx).all()
    lab = label_samples(mem["train_dist"][:, 0], np.full(k, 1.0), 0.1, 0.1)
    assert (lab == "memorized").all()
    out = refs.neighbors(held_images, k=2)
    lab = label_samples(out["train_dist"][:, 0], np.full(len(held), 1.0), 0.1, 0.1)
    assert not (lab == "memorized").any()
    assert out["train_dist"][:, 0].min() > 0.1


def test_embeddings_spilled_to_disk_search_the_same(tmp_path, digits):
    from raystudy.datasets import LazyImages

    idx = kset_indices(len(digits), 300, 0)
    lazy = LazyImages(digits, idx)
    queries = digits.get(np.arange(40)) + 0.01
    ref = digits.get(np.arange(1000, 1050))
    in_ram = References(PixelL2(), digits.get(idx), idx, ref, np.arange(50))
    spilled = References(PixelL2(), lazy, idx, ref, np.arange(50), shard_size=64, max_ram_bytes=1000,
                         spill_dir=tmp_path, chunk=64)
    assert isinstance(spilled.train_emb, np.memmap) and not isinstance(in_ram.train_emb, np.memmap)
    assert list(tmp_path.iterdir()) == []  # the spill file is unlinked once mapped
    a, b = in_ram.neighbors(queries, 5), spilled.neighbors(queries, 5)
    for c in a:
        np.testing.assert_array_equal(a[c], b[c])


def test_ratio_test_without_a_second_neighbour_is_undefined():
    # K = 1: the missing second neighbour is stored as distance inf (index -1).
    nn1 = np.array([0.0, 0.01, 0.5, 2.0])
    for missing in (np.inf, np.nan):
        ratio, mem = ratio_test(nn1, np.full(4, missing))
        assert np.isnan(ratio).all() and not mem.any()
    # Mixed rows: only the row that has a second neighbour gets a ratio.
    ratio, mem = ratio_test([0.1, 0.1], [0.5, np.inf])
    assert ratio[0] == 0.2 and mem[0] and np.isnan(ratio[1]) and not mem[1]
    # Exact duplicates (two identical training images) stay a copy; nn2 = 0 < nn1 is no copy.
    ratio, mem = ratio_test([0.0, 0.3], [0.0, 0.0])
    assert ratio[0] == 0.0 and mem[0] and ratio[1] == np.inf and not mem[1]


def test_label_distances_reads_the_nearest_and_tests_the_ratio_on_l2():
    """One set of distances labelled (the classify stage's and the chance level's rule): the label from
    the nearest distance to the K-set and to the reference set, the ratio from the L2 pair, which
    need not be the metric's; K = 1 (no second L2 neighbour) has no ratio."""
    rng = np.random.default_rng(2)
    n = 200
    train = np.sort(rng.uniform(0, 0.2, size=(n, 3)), 1)
    synth = np.sort(rng.uniform(0, 0.2, size=(n, 3)), 1)
    l2 = np.sort(rng.uniform(0, 1, size=(n, 2)), 1)
    l2[:5, 1] = np.inf
    delta_m, delta_s = 0.04, 0.1
    out = label_distances(train, synth, l2, delta_m, delta_s)
    expect = ["memorized" if t[0] <= delta_m else "spurious" if s[0] <= delta_s else "generalized"
              for t, s in zip(train, synth)]
    assert list(out["label"]) == expect and set(expect) == {"memorized", "spurious", "generalized"}
    np.testing.assert_array_equal(out["d_train"], train[:, 0])
    np.testing.assert_array_equal(out["d_synth"], synth[:, 0])
    ratio = l2[:, 0] / l2[:, 1]
    np.testing.assert_allclose(out["ratio"][5:], ratio[5:], rtol=1e-15)
    assert np.isnan(out["ratio"][:5]).all() and not out["ratio_memorized"][:5].any()
    np.testing.assert_array_equal(out["ratio_memorized"][5:], ratio[5:] < 1 / 3)
    assert 0 < out["ratio_memorized"].sum() < n - 5
