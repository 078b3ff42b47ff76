"""Snapshots, variants and twins through the real stages on a local Ray (raystudy.axes)."""

import os
import shutil

import numpy as np
import pytest

from raystudy import axes, tables
from raystudy.config import load_config
from raystudy.splits import kset_indices, permutation
from raystudy.study import STAGES, plan, run
from tests.conftest import TINY

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _mtimes(study):
    return {str(p): p.stat().st_mtime_ns for p in (study / "tables").rglob("part-*.parquet")}


def _rms(a, b):
    """Per-pixel RMS distance between every row of a and every row of b (the l2 metric), brute force."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).mean(-1))


def _same(va, vb) -> bool:
    import pandas as pd

    if va and isinstance(va[0], (np.ndarray, list)):
        return len(va) == len(vb) and all(np.array_equal(x, y) for x, y in zip(va, vb))
    return pd.Series(va, dtype=object).equals(pd.Series(vb, dtype=object))


@pytest.fixture(scope="module")
def alex(tmp_path_factory):
    """A random AlexNet, saved where knn.weights_dir finds it as torchvision's file."""
    import torch
    import torchvision

    weights = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None)
    torch.save(net.state_dict(), weights / "alexnet-owt-7be5be79.pth")
    return net, weights


@pytest.fixture(scope="module")
def memorizer(study_of, alex):
    """The exact memorizer with twins and a snapshot, searched in l2 and LPIPS."""
    return study_of(TINY, "model.type=empirical", "ks=[2, 8]", "twins=true", "train.snapshots=[128]",
                    "generate.steps=20", "knn.metrics=[l2, lpips-alex]", f"knn.weights_dir={alex[1]}")


def test_the_exact_memorizers_twins_never_agree(memorizer, digits):
    """The exact memorizer copies its own K-set, and the twins' K-sets are disjoint: at every
    snapshot, every twin pair is at least as far apart as the two sets' closest pair of images."""
    cfg, study = memorizer
    tw = tables.read_pandas(study, "twins")
    tw = tw[tw.metric == "l2"]
    n = cfg.generate.n_samples
    seen = [*cfg.train.snapshots, cfg.train.images]
    assert sorted(tw.groupby(["K", "images_seen"]).size().items()) == [((k, t), n) for k in cfg.ks for t in seen]
    labels = tables.read_pandas(study, "labels")
    labels = labels[labels.metric == "l2"]
    for (k, seen), g in tw.groupby(["K", "images_seen"]):
        # The two K-sets, independently: the permutation's first K, and its K before the held-out tail.
        perm, end = permutation(len(digits), 0), len(digits) - cfg.data.held_out
        a, b = digits.get(perm[:k]), digits.get(perm[end - k:end])
        d_sets = _rms(a, b).min()
        assert (g["d_twin"] >= d_sets - 1e-6).all(), (k, seen, g["d_twin"].min(), d_sets)
        assert (g["d_own_a"] < 1e-3).all() and (g["d_own_b"] < 1e-3).all()  # copies of their own sets
        assert (g["d_other_a"] >= d_sets - 1e-6).all() and (g["d_other_b"] >= d_sets - 1e-6).all()
        # d_own_a is the labels' d_train of model A, read from the knn stage's neighbours; B's labels are
        # against B's own K-set.
        for twin, col in ((0, "d_own_a"), (1, "d_own_b")):
            lab = labels[(labels.K == k) & (labels.images_seen == seen) & (labels.twin == twin)].set_index("sample_id")
            assert np.array_equal(lab.loc[g.sample_id, "d_train"].to_numpy(), g[col].to_numpy())
        assert (g["d_twin"] >= cfg.classify.delta_m["l2"]).all()  # reproducibility 0
    # The same noise for both twins: the sample seeds of A and B agree sample by sample.
    sm = tables.read_pandas(study, "samples")
    seeds = sm.pivot_table(index=["K", "images_seen", "set", "sample_id"], columns="twin", values="sample_seed")
    assert (seeds[0] == seeds[1]).all()


def test_new_axes_compute_only_what_is_new_and_unchanged_weights_give_identical_tables(tmp_path, ray_local):
    study = tmp_path / "s"
    base = load_config(TINY, ["ks=[2]", "train.images=192"])
    run(base, study, echo=lambda *a: None)
    before = _mtimes(study)
    final_weights = next((study / "models" / "K2-s0" / "unet").glob("*.safetensors"))
    final_mtime = final_weights.stat().st_mtime_ns

    more = load_config(TINY, ["ks=[2]", "train.images=192", "train.snapshots=[128]", "twins=true",
                       "variants={base: {}, wide: {block_out_channels: [32, 32]}}"])
    todo = {st.name: [t.unit for t in t_] for st, t_ in plan(more, study)}
    new = [u for u in STAGES["knn"].units(more) if u.axis != axes.DEFAULT]
    # Only the figures, which draw every axis, are redrawn: every other unit to do is a new one.
    assert todo["knn"] == new and len(new) == 7 and all(
        t.why == "missing" for st, ts in plan(more, study) if st.name != "figures" for t in ts)
    assert todo["train"] == [u for u in STAGES["train"].units(more) if u.axis != axes.DEFAULT]

    run(more, study, echo=lambda *a: None, only="train")
    # The base run's snapshot was made by the same seeded run, stopped there; its final model is untouched.
    assert final_weights.stat().st_mtime_ns == final_mtime
    snap = study / "models" / "K2-s0-snap-00000128"
    assert (snap / "model_index.json").exists() and (study / "models" / "wide.twin-K2-s0-snap-00000128").is_dir()
    # Known answer: weights that do not change after the snapshot give identical tables at both.
    shutil.copytree(study / "models" / "K2-s0" / "unet", snap / "unet", dirs_exist_ok=True)
    run(more, study, echo=lambda *a: None)
    after = _mtimes(study)
    assert all(after[p] == m for p, m in before.items()), "a finished part was rewritten"
    assert plan(more, study) and all(not t for _, t in plan(more, study))

    runs = tables.read_pandas(study, "runs").set_index(["variant", "twin", "images_seen"])
    assert runs.loc[("wide", 0, 192), "params"] > runs.loc[("base", 0, 192), "params"] > 0
    for name, key in (("samples", ["set", "sample_id"]), ("neighbors", ["sample_id"]), ("labels", ["sample_id"]),
                      ("fractions", ["metric"]), ("null_fractions", ["metric"])):
        df = tables.read_pandas(study, name)
        df = df[(df.variant == "base") & (df.twin == 0)]
        at = {s: g.drop(columns="images_seen").sort_values(key).reset_index(drop=True) for s, g in df.groupby("images_seen")}
        assert sorted(at) == [128, 192]
        a, b = at[128], at[192]
        for c in a.columns:
            assert _same(a[c].tolist(), b[c].tolist()), (name, c)
    # ... while the twin, on another K-set and from another start, is another model.
    sm = tables.read_pandas(study, "samples")
    a = np.stack(sm[(sm.variant == "base") & (sm.twin == 0) & (sm.images_seen == 192)].sort_values(["set", "sample_id"]).image)
    b = np.stack(sm[(sm.variant == "base") & (sm.twin == 1) & (sm.images_seen == 192)].sort_values(["set", "sample_id"]).image)
    assert not np.array_equal(a, b)
    assert os.path.exists(study / "tables" / "twins" / "part-l2-wide.i128-K2-s0.parquet")


def test_gaussian_twins_agree_more_as_k_grows(tmp_path, ray_local, digits):
    """The optimal Gaussian denoiser of a K-set (raystudy.models.gaussian) samples mu + S^(1/2) z: twins on
    disjoint K-sets of one distribution estimate mu and S alike for large K, so from the same noise
    they give nearly the same image, ever closer as K grows (while samples of different noise stay
    far apart); the twin distance follows the closed form."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    cfg = load_config(TINY, ["model.type=gaussian", "ks=[8, 64, 512]", "twins=true", "generate.steps=50",
                      "generate.n_samples=12"])
    study = tmp_path / "gauss"
    run(cfg, study, echo=lambda *a: None)
    tw = tables.read_pandas(study, "twins")
    med = tw.groupby("K")["d_twin"].median()
    assert med[8] > med[64] > med[512] and med[512] < 0.15, med.to_dict()
    sm = tables.read_pandas(study, "samples")
    a = np.stack(sm[(sm.K == 512) & (sm.twin == 0) & (sm.set == "eval")].sort_values("sample_id").image)
    assert med[512] < 0.3 * np.median(_rms(a, a)[np.triu_indices(len(a), 1)])  # other noise: far apart
    # The closed form: each twin's sample is its K-set's mu + S^(1/2) z, z the sample's own noise.
    g = tw[tw.K == 512].sort_values("sample_id")
    z = randn_tensor((len(g), *digits.shape), generator=[torch.Generator().manual_seed(int(s)) for s in g.sample_seed])
    z = z.double().reshape(len(g), -1).numpy()
    closed = []
    for twin in (0, 1):
        x = digits.get(kset_indices(len(digits), 512, 0, cfg.data.held_out, twin)).reshape(512, -1)
        lam, U = np.linalg.eigh(np.cov(x.T, bias=True))
        closed.append(np.clip(x.mean(0) + ((z @ U) * np.sqrt(np.maximum(lam, 0))) @ U.T, -1, 1))
    d_closed = np.sqrt(((closed[0] - closed[1]) ** 2).mean(1))
    assert abs(np.median(d_closed) - med[512]) < 0.03, (np.median(d_closed), med[512])


def test_lpips_twin_distances_are_the_lpips_packages(memorizer, alex, digits):
    """The twins table in LPIPS: each pair's d_twin is what the ``lpips`` package itself gives for
    the two samples (a separate lpips.LPIPS given the same AlexNet weights, which the test writes),
    and the exact memorizer's twins are still copies of their own, disjoint, sets."""
    import torch

    from tests.unit.metrics.test_lpips import ALEX_CONVS, preprocess, quiet_lpips

    alex = alex[0]
    cfg, study = memorizer
    tw = tables.read_pandas(study, "twins")
    tw = tw[tw.images_seen == cfg.train.images]
    assert sorted(tw.metric.unique()) == ["l2", "lpips-alex"]
    ref = quiet_lpips("alex").eval()
    sd = ref.net.state_dict()
    for name, i in ALEX_CONVS.items():
        sd[f"{name}.weight"], sd[f"{name}.bias"] = alex.features[i].weight, alex.features[i].bias
    ref.net.load_state_dict(sd)

    def lp(x, y):
        with torch.no_grad():
            return ref(preprocess(x), preprocess(y)).reshape(-1).double().numpy()

    perm, end = permutation(len(digits), 0), len(digits) - cfg.data.held_out
    for k, g in tw[tw.metric == "lpips-alex"].groupby("K"):
        xa = tables.read_samples(study, k, 0, "eval", axes.Axis(twin=0), cfg.train.images)[1]
        xb = tables.read_samples(study, k, 0, "eval", axes.Axis(twin=1), cfg.train.images)[1]
        np.testing.assert_allclose(g.sort_values("sample_id")["d_twin"].to_numpy(), lp(xa, xb), rtol=1e-4, atol=1e-6)
        a, b = digits.get(perm[:k]), digits.get(perm[end - k:end])
        d_sets = min(lp(a[[i] * k], b).min() for i in range(k))
        assert (g["d_twin"] >= d_sets * (1 - 1e-4)).all() and (g["d_own_a"] < 1e-4).all(), (k, d_sets)
