"""The twins stage without Ray: on a small study written here (both twins' samples, their
neighbours searched by compute.knn as the knn stage does), each sample's distance to its own
K-set is the neighbors table's, and every twins column equals a brute force written here."""

import numpy as np
import pyarrow.compute as pc
import pytest

from raystudy import axes, tables
from raystudy.compute.knn import References
from raystudy.config import load_config
from raystudy.metrics import get_metric
from raystudy.splits import kset
from raystudy.stages.twins import run_twins, twin_units
from raystudy.study import GENERATE, KNN, TWINS
from tests.conftest import TINY


@pytest.fixture(scope="module")
def twin_study(tmp_path_factory, digits):
    """Per model: eval and ref sets of copies of its own K-set, every third exact, the others
    noisy; its neighbours in l2 and euclidean."""
    study = tmp_path_factory.mktemp("twins") / "s"
    cfg = load_config(TINY, ["twins=true", "ks=[2, 16]", "knn.metrics=[l2, euclidean]", "generate.n_samples=7"])
    rng, n = np.random.default_rng(29), cfg.generate.n_samples
    for a in axes.model_axes(cfg):
        for k in cfg.ks:
            u = axes.Unit(k, 0, axis=a)
            idx = kset(cfg, digits, a, k)
            own = digits.get(idx)
            for name in ("eval", "ref"):
                noise = np.where(np.arange(n) % 3 == 0, 0.0, 0.3)[:, None, None, None] * rng.normal(size=(n, 1, 8, 8))
                x = np.clip(own[rng.integers(0, k, n)] + noise, -1, 1).astype(np.float32)
                tables.write_part(study, "samples", f"{GENERATE.part(u)}-{name}", tables.to_table("samples", tables.samples_rows(
                    k, 0, name, np.arange(n), np.arange(n) + 1000 * k, x, axes.columns(cfg, a, n)), GENERATE.meta(cfg, u)))
            ids, ev = tables.read_samples(study, k, 0, "eval", a, a.seen(cfg))
            ref_ids, ref = tables.read_samples(study, k, 0, "ref", a, a.seen(cfg))
            for m in cfg.knn.metrics:
                nb = References(get_metric(m), own, idx, ref, ref_ids).neighbors(ev, cfg.knn.k)
                mu = axes.Unit(k, 0, m, a)
                tables.write_part(study, "neighbors", KNN.part(mu), tables.to_table("neighbors", {
                    "K": np.full(n, k), "seed": np.full(n, 0), **axes.columns(cfg, a, n), "sample_id": ids,
                    "metric": np.full(n, m), **nb}, KNN.meta(cfg, mu)))
    run_twins(TWINS, cfg, study, twin_units(cfg))
    return cfg, study


def _dist(metric: str, x, y) -> np.ndarray:
    """All pairwise distances in the metric's units: per-pixel RMS (l2) or plain Euclidean."""
    x, y = x.reshape(len(x), -1).astype(np.float64), y.reshape(len(y), -1).astype(np.float64)
    sq = ((x[:, None] - y[None]) ** 2).sum(-1)
    return np.sqrt(sq / x.shape[1] if metric == "l2" else sq)


def test_own_distances_are_the_knn_stages_and_every_column_a_brute_force(twin_study, digits):
    cfg, study = twin_study
    tw = tables.read_pandas(study, "twins")
    assert len(tw) == 2 * 2 * cfg.generate.n_samples
    for (m, k), g in tw.groupby(["metric", "K"]):
        g = g.sort_values("sample_id")
        a, b = axes.Axis(), axes.Axis(twin=1)
        xa = tables.read_samples(study, k, 0, "eval", a, a.seen(cfg))[1]
        xb = tables.read_samples(study, k, 0, "eval", b, b.seen(cfg))[1]
        set_a, set_b = digits.get(kset(cfg, digits, a, k)), digits.get(kset(cfg, digits, b, k))
        for col, x, s in (("d_own_a", xa, set_a), ("d_other_a", xa, set_b), ("d_own_b", xb, set_b),
                          ("d_other_b", xb, set_a)):
            np.testing.assert_allclose(g[col].to_numpy(), _dist(m, x, s).min(1), rtol=1e-12, atol=1e-12, err_msg=col)
        np.testing.assert_allclose(g["d_twin"].to_numpy(), np.diag(_dist(m, xa, xb)), rtol=1e-12, atol=1e-12)
        assert (g["d_own_a"].iloc[::3] == 0).all() and (g["d_own_b"].iloc[::3] == 0).all()  # the exact copies
        # Read, not searched again: bit for bit the nearest train_dist of each twin's own unit.
        for col, ax in (("d_own_a", a), ("d_own_b", b)):
            nb = tables.read_unit(study, "neighbors", axes.Unit(k, 0, m, ax), cfg)
            assert np.array_equal(g[col].to_numpy(), pc.list_element(nb["train_dist"], 0).to_numpy()), (m, k, col)
