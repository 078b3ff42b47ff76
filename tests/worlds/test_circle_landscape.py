"""The circle's basins and energies (the paper's toy_example.py) against closed forms.

With the exact score, the reverse VE SDE started from x_t draws x_0 from the posterior
p(x_0 | x_t), which for a K-set is softmax_i(-||x_t - x_i||^2 / (2 sigma^2 t)). So a training
point's recovery rate at t is E_z[posterior of itself at x + sigma sqrt(t) z] (Monte Carlo here,
independent of the code under test), and the energy between two points is the exact mixture's
-log p_t difference."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from raystudy import tables
from raystudy.compute.basins import VERecovery, critical_times, log_ball_volume
from raystudy.datasets.toy import CIRCLE_CONFIG
from raystudy.datasets.toy.circle import empirical_score

ANGLES = np.array([0.0, 0.6, 2.5])


def _points():
    return np.stack([np.cos(ANGLES), np.sin(ANGLES)], 1)


def _exact_rate(pts, i, t, sigma=1.0, n=100_000, seed=5):
    z = np.random.default_rng(seed).standard_normal((n, 2))
    y = pts[i] + sigma * math.sqrt(t) * z
    logits = -((y[:, None, :] - pts[None]) ** 2).sum(-1) / (2 * sigma ** 2 * t)
    logits -= logits.max(1, keepdims=True)
    post = np.exp(logits)
    return float((post[:, i] / post.sum(1)).mean())


def _euclid(a, b):
    return (a.double() - b.double()).flatten(1).norm(dim=1)


def test_circle_recovery_rate_and_radius_are_the_exact_posterior_s():
    pts = _points()
    trials = 400
    res = critical_times(None, None, pts[:, None, None, :].astype(np.float32), [11, 12, 13], metric_fn=_euclid,
                         delta=0.1, trials=trials, p=0.9, stride=40, ddim_steps=1, batch_size=3,
                         recovery=VERecovery(empirical_score(torch.tensor(pts, dtype=torch.float32)), 1.0))
    for i in range(3):
        t_i, r_i = res["rate_t"][i], res["rate"][i]
        exact = np.array([_exact_rate(pts, i, t / 1000) for t in t_i])
        se = np.sqrt(exact * (1 - exact) / trials)
        # Binomial noise, plus Euler-Maruyama's discretisation (dt = 1e-3). The reference's own
        # Monte Carlo error (100,000 draws: sd <= 0.0016) is a twentieth of the 0.03 allowed.
        assert np.all(np.abs(r_i - exact) <= 4 * se + 0.03), (i, t_i, r_i, exact)
        # t_crit: the exact curve's first passage, within the one scanned t where it is within noise of p.
        below = np.nonzero(exact < 0.9)[0]
        want = t_i[below[0] - 1] if len(below) and below[0] > 0 else (0 if len(below) else t_i[-1])
        assert abs(res["t_crit"][i] - want) <= 40, (i, res["t_crit"][i], want, exact)
        if res["t_crit"][i]:
            # radius: mean ||x_t - x|| = sigma sqrt(t) E||z||, E||z|| = sqrt(pi / 2) in the plane.
            want_r = math.sqrt(res["t_crit"][i] / 1000) * math.sqrt(math.pi / 2)
            assert res["radius"][i] == pytest.approx(want_r, rel=4 * 0.523 / 1.2533 / math.sqrt(trials))
    # The lone point (angle 2.5, 1.5 rad from the others) keeps its basin longer than the close pair.
    assert res["t_crit"][2] > max(res["t_crit"][0], res["t_crit"][1])
    assert log_ball_volume(0.5, 2) == pytest.approx(math.log(math.pi * 0.25))


@pytest.fixture(scope="module")
def circle(study_of):
    return study_of(CIRCLE_CONFIG, *["model.type=empirical", "ks=[3]", "generate.n_samples=12", "generate.steps=200",
                               "basins.enabled=true", "basins.metric=euclidean", "basins.per_label=2",
                               "basins.train=3", "basins.held_out=1", "basins.trials=40", "basins.stride=90",
                               "basins.delta=0.1", "energy.enabled=true", "energy.t=50", "energy.per_label=1",
                               "energy.train=2", "energy.held_out=1", "energy.train_refs=2", "energy.held_out_refs=1",
                               "energy.points=32"])


def test_circle_study_runs_the_basins_and_energy_stages(circle):
    from raystudy.datasets import load_dataset
    from raystudy.splits import kset_indices

    cfg, out = circle
    b = pd.read_parquet(out / "tables" / "basins")
    assert list(b.columns) == tables.SCHEMAS["basins"].names
    ds = load_dataset(cfg.data)
    pts = ds.get(kset_indices(len(ds), 3, cfg.study.seed))
    pts = pts.reshape(3, 2).astype(np.float64)
    train = b[b.kind == "train"].sort_values("item_id")
    assert len(train) == 3
    rates = pd.read_parquet(out / "tables" / "basin_rates")
    for row in train.itertuples():
        i = int(np.argmin(((pts - load_dataset(cfg.data).get([row.item_id]).reshape(2)) ** 2).sum(1)))
        r = rates[(rates.kind == "train") & (rates.item_id == row.item_id)].sort_values("t")
        exact = np.array([_exact_rate(pts, i, t / 1000) for t in r.t])
        assert np.all(np.abs(r.rate.to_numpy() - exact) <= 4 * np.sqrt(exact * (1 - exact) / 40) + 0.05)


def test_circle_energy_is_the_exact_mixture_s(circle):
    from raystudy.datasets import load_dataset
    from raystudy.splits import kset_indices

    cfg, out = circle
    e = pd.read_parquet(out / "tables" / "energy")
    assert list(e.columns) == tables.SCHEMAS["energy"].names and len(e) > 0
    ds = load_dataset(cfg.data)
    pts = ds.get(kset_indices(len(ds), 3, cfg.study.seed))
    pts = pts.reshape(3, 2).astype(np.float64)
    t = 50 / 1000
    smp = tables.read_samples(out, 3, 0, "eval")

    def neg_log_p(y):
        d = -((y[None] - pts) ** 2).sum(1) / (2 * t)
        return -(np.logaddexp.reduce(d) - math.log(3) - math.log(2 * math.pi * t))

    def point(kind, i):
        if kind == "sample":
            return smp[1][np.searchsorted(smp[0], i)].reshape(2).astype(np.float64)
        return ds.get([i]).reshape(2).astype(np.float64)

    for row in e.itertuples():
        want = neg_log_p(point(row.reference_kind, row.reference_id)) - neg_log_p(point(row.kind, row.item_id))
        assert row.energy == pytest.approx(want, abs=row.quad_error + 1e-3 * (1 + abs(want))), row
        # VE drift: -g^2 s, g = sigma_max = 1, so the drift potential is the energy itself.
        assert row.drift_potential == pytest.approx(row.energy, rel=1e-9, abs=1e-9)
