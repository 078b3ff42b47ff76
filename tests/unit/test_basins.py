"""Critical times: the two-point closed form, DDIM from an arbitrary t, batch independence.

Two training points x0 = -x1 at distance D: the exact memorizer's clean-image prediction is
(D/2) tanh(.) u on the segment between them, and DDIM with eta = 0 keeps x_t on its side of
the bisector, so a trial noised from x0 at step t is recovered (within delta = D/2 in L2, i.e.
on x0's side) with probability q(t) = Phi(sqrt(abar_t / (1 - abar_t)) D / 2).
"""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from raystudy.compute.basins import (
    basins_group,
    critical_times,
    ddim_denoise,
    ddim_grid,
    l2_metric,
    rms_metric,
    scan_times,
    select_items,
)
from raystudy.models.memorizer import EmpiricalEpsilon
from tests.conftest import digits_tensor


@pytest.fixture(scope="module")
def two_points(sched):
    x0 = torch.full((1, 1, 4, 4), 0.25)
    x0[0, 0, ::2, 1::2] = -0.25
    D = float((2 * x0).norm())  # = 2
    model = EmpiricalEpsilon(torch.cat([x0, -x0]), sched.alphas_cumprod)
    trials = 400
    res = critical_times(model, sched, x0, [20250101], metric_fn=l2_metric, delta=D / 2, trials=trials, p=0.9,
                         stride=25, ddim_steps=20, batch_size=1)
    return x0, D, trials, res


def _q(sched, t, D):
    ac = sched.alphas_cumprod.double().numpy()[np.asarray(t)]
    return norm.cdf(np.sqrt(ac / (1 - ac)) * D / 2)


def test_two_point_recovery_rates_match_closed_form(sched, two_points):
    x0, D, trials, res = two_points
    ts, rate = res["rate_t"][0], res["rate"][0]
    assert ts[0] == 1 and np.all(np.diff(ts) == 25) and len(ts) >= 15
    q = _q(sched, ts, D)
    sd = np.sqrt(q * (1 - q) / trials) + 1e-12
    z = (rate - q) / sd
    assert np.all(np.abs(z) <= 4), list(zip(ts, rate, q.round(4), z.round(1)))
    # The curve is actually visited where it is informative (not all 0 or 1).
    assert np.sum((q > 0.6) & (q < 0.99)) >= 8


def test_two_point_t_crit_is_where_the_curve_crosses_p(sched, two_points):
    x0, D, trials, res = two_points
    t = np.arange(1000)
    q = _q(sched, t, D)
    t_star = int(np.flatnonzero(q >= 0.9).max())  # last training step with q >= p
    assert abs(int(res["t_crit"][0]) - t_star) <= 25, (res["t_crit"], t_star)
    # radius: the L2 norm of x_t - x over all pixels; E||x_t - x||^2 = (1 - sqrt(abar))^2 ||x||^2 + (1 - abar) d.
    ab = float(sched.alphas_cumprod.double()[int(res["t_crit"][0])])
    expect = math.sqrt((1 - math.sqrt(ab)) ** 2 * float((x0 ** 2).sum()) + (1 - ab) * x0.numel())
    assert abs(res["radius"][0] / expect - 1) < 0.03, (res["radius"], expect)


def test_two_point_per_trial_survival_matches_product(sched, two_points):
    """Noise is fresh at every t, so P(t_survive >= t_j) = prod_{i <= j} q(t_i)."""
    x0, D, trials, res = two_points
    ts = res["rate_t"][0]
    surv = np.cumprod(_q(sched, ts, D))
    t_surv = res["t_survive"][0]
    for j, t in enumerate(ts):
        frac = np.mean(t_surv >= t)
        sd = math.sqrt(surv[j] * (1 - surv[j]) / trials) + 1e-12
        assert abs(frac - surv[j]) <= 4 * sd + 1e-9, (t, frac, surv[j])
    # Every trial failed before the scan stopped (the stop rule), so no t_surv is the last scanned t.
    assert t_surv.max() < ts[-1]
    ab = sched.alphas_cumprod.double().numpy()
    rl = res["radius_survive"][0][t_surv > 0]
    tl = t_surv[t_surv > 0]
    typical = np.sqrt((1 - np.sqrt(ab[tl])) ** 2 * float((x0 ** 2).sum()) + (1 - ab[tl]) * x0.numel())
    assert np.all(rl > 0.3 * typical) and np.all(rl < 2.5 * typical)


def test_ddim_starts_at_t_and_matches_diffusers_chain(sched):
    """First model call at timestep t (no off-by-one); on a diffusers grid the result is diffusers' DDIM."""
    from diffusers import DDIMScheduler

    dig = digits_tensor()
    model = EmpiricalEpsilon(dig[:6], sched.alphas_cumprod)
    calls = []

    class Spy(torch.nn.Module):
        def forward(self, x, t):
            calls.append(int(t[0]))
            return model(x, t)

    assert ddim_grid(26, 20).tolist()[-1] == 26 and len(ddim_grid(26, 20)) == 20
    assert ddim_grid(3, 20).tolist() == [1, 2, 3]
    x = sched.add_noise(dig[:3], torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                        torch.full((3,), 950))
    ours = ddim_denoise(Spy(), sched, x, 950, 19)
    assert calls == list(range(950, 0, -50))
    # diffusers' own 20-step "leading" DDIM runs 950, 900, ..., 50, 0: its x0 prediction at 50 is ours.
    ref = DDIMScheduler.from_config(sched.config)
    ref.set_timesteps(20)
    y = x.clone()
    for t in ref.timesteps:
        out = ref.step(model(y, t).sample, t, y)
        if int(t) == 50:
            x0_at_50 = out.pred_original_sample
            break
        y = out.prev_sample
    assert torch.allclose(ours, x0_at_50, atol=1e-5), (ours - x0_at_50).abs().max()


def test_item_result_does_not_depend_on_batch(sched):
    dig = digits_tensor()
    train = dig[:6]
    model = EmpiricalEpsilon(train, sched.alphas_cumprod)
    items = torch.cat([train[:2], dig[100:104]])
    seeds = np.array([11, 12, 13, 14, 15, 16])
    kw = dict(metric_fn=rms_metric, delta=0.1, trials=6, p=0.9, stride=50, ddim_steps=8)
    together = critical_times(model, sched, items, seeds, batch_size=6, **kw)
    mixed = critical_times(model, sched, items[[5, 0, 3]], seeds[[5, 0, 3]], batch_size=3, **kw)
    for k_all, k_one in ((0, 1), (5, 0), (3, 2)):
        alone = critical_times(model, sched, items[[k_all]], seeds[[k_all]], batch_size=1, **kw)
        for res, j in ((alone, 0), (mixed, k_one)):
            assert res["t_crit"][j] == together["t_crit"][k_all]
            assert res["radius"][j] == together["radius"][k_all]
            assert np.array_equal(res["t_survive"][j], together["t_survive"][k_all])
            assert np.array_equal(res["radius_survive"][j], together["radius_survive"][k_all])
            assert np.array_equal(res["rate_t"][j], together["rate_t"][k_all])
            assert np.array_equal(res["rate"][j], together["rate"][k_all])
    # Stored memories have a basin, held-out digits none at this delta.
    assert together["t_crit"][:2].min() > 100 and together["t_crit"][2:].max() == 0


def test_basins_group_with_a_unet_writes_the_tables(sched):
    from raystudy import tables
    from raystudy.config import BasinsSection, ModelSection
    from raystudy.models.unet import build_unet

    torch.manual_seed(0)
    unet = build_unet(ModelSection(), (1, 8, 8)).eval()
    dig = digits_tensor()
    cfg = BasinsSection(trials=3, stride=200, ddim_steps=4, batch_size=2, delta=0.1)
    items = {"kind": ["sample", "train", "held-out"], "item_id": [4, 0, 1500], "label": ["memorized", None, None],
             "d_train": [0.05, np.nan, np.nan], "images": dig[[4, 0, 1500]].numpy(), "seeds": [1, 2, 3]}
    out = basins_group(unet, sched, cfg, items, rms_metric, "cpu", K=8, seed=0, metric="l2")
    for name in ("basins", "basin_trials", "basin_rates"):
        tables.to_table(name, out[name])
    assert len(out["basin_trials"]["t_survive"]) == 9
    assert set(out["basin_rates"]["t"]) <= set(scan_times(1000, 200).tolist())
    # by value: the rows are a direct call's, item by item and trial by trial (item-major)
    res = critical_times(unet, sched, items["images"], items["seeds"], metric_fn=rms_metric, delta=cfg.delta,
                         trials=cfg.trials, p=cfg.p, stride=cfg.stride, ddim_steps=cfg.ddim_steps,
                         batch_size=cfg.batch_size, device="cpu")
    np.testing.assert_array_equal(out["basins"]["t_crit"], res["t_crit"])
    np.testing.assert_array_equal(out["basins"]["item_id"], items["item_id"])
    np.testing.assert_array_equal(out["basin_trials"]["t_survive"], res["t_survive"].reshape(-1))
    np.testing.assert_array_equal(out["basin_trials"]["item_id"], np.repeat(items["item_id"], cfg.trials))
    np.testing.assert_array_equal(out["basin_rates"]["rate"], np.concatenate(res["rate"]))


def test_select_items_ranks_each_label_as_the_paper_and_keeps_top_and_bottom_apart():
    """memorized by d_train ascending, spurious by d_synth ascending, generalized by d_synth descending."""
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"sample_id": np.arange(60), "label": rng.choice(["memorized", "spurious", "generalized"], 60),
                       "d_train": rng.random(60).round(2), "d_synth": rng.random(60).round(2)})
    a = select_items(df.sample(frac=1, random_state=1), 4)
    b = select_items(df, 4)
    assert a.sample_id.tolist() == b.sample_id.tolist()
    rule = {"memorized": ("d_train", True), "spurious": ("d_synth", True), "generalized": ("d_synth", False)}
    for lab, (col, asc) in rule.items():
        g = b[b.label == lab]
        full = df[df.label == lab].sort_values([col, "sample_id"], ascending=[asc, True]).sample_id.tolist()
        assert g[g.pick == "top"].sample_id.tolist() == full[:2], lab
        assert g[g.pick == "bottom"].sample_id.tolist() == full[-2:], lab
    assert set(b.pick) == {"top", "bottom"}
    few = select_items(df[df.label == "spurious"].head(3), 4)
    assert len(few) == 3 and few.pick.tolist() == ["top", "top", "bottom"] and few.sample_id.is_unique
    # The earlier rule stays available: every label by d_train.
    old = select_items(df, 4, rank="d_train")
    g = old[old.label == "generalized"]
    full = df[df.label == "generalized"].sort_values(["d_train", "sample_id"]).sample_id.tolist()
    assert g.sample_id.tolist() == full[:2] + full[-2:]


class _Scripted(torch.nn.Module):
    """Predicts eps = 0; records the first call of each DDIM run (its timestep is the scanned t).

    The test's metric_fn sets ``fresh`` after each run, so the next call is the next run's first."""

    def __init__(self):
        super().__init__()
        self.t, self.fresh, self.first_inputs = 0, True, []

    def forward(self, x, t):
        from types import SimpleNamespace

        if self.fresh:
            self.t, self.fresh = int(t[0]), False
            self.first_inputs.append((self.t, x.clone()))
        return SimpleNamespace(sample=torch.zeros_like(x))


def test_scripted_outcomes_give_exact_t_crit_t_surv_and_stop(sched):
    """Trial 0 fails from t = 26 on, trial 1 only at t = 1, every trial from t = 501: known answers."""
    model = _Scripted()

    def metric(a, b):
        t = model.t
        model.fresh = True
        fail = np.zeros(len(a), dtype=bool).reshape(-1, 10)
        fail[:, 0] = t >= 26
        fail[:, 1] = t == 1
        fail[:, :] |= t >= 501
        return torch.as_tensor(fail.reshape(-1).astype(np.float64))

    x = torch.zeros(2, 1, 2, 2)
    res = critical_times(model, sched, x, [5, 6], metric_fn=metric, delta=0.5, trials=10, p=0.9, stride=25,
                         ddim_steps=3, batch_size=2)
    ts = np.arange(1, 502, 25)
    for i in range(2):
        assert res["t_crit"][i] == 476  # rate 0.9 >= p up to 476, 0 at 501
        assert res["t_survive"][i].tolist() == [1, 0] + [476] * 8
        assert res["radius_survive"][i][1] == 0.0
        assert res["rate_t"][i].tolist() == ts.tolist()  # stopped right after 501: rate 0 and all failed
        assert np.allclose(res["rate"][i], [0.9] * 20 + [0.0])


def test_noising_uses_item_generator_at_step_t(sched):
    """x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps with eps from the item's own generator, first t = 1."""
    model = _Scripted()
    x = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    res = critical_times(model, sched, x, [77, 78], metric_fn=lambda a, b: torch.ones(len(a)), delta=0.5,
                         trials=4, p=0.9, stride=25, ddim_steps=3, batch_size=2)
    t, x_t = model.first_inputs[0]
    assert t == 1
    ab = sched.alphas_cumprod[1]
    eps = torch.cat([torch.randn((4, 1, 3, 3), generator=torch.Generator().manual_seed(s)) for s in (77, 78)])
    expect = ab.sqrt() * x.repeat_interleave(4, 0) + (1 - ab).sqrt() * eps
    assert torch.allclose(x_t, expect, atol=1e-7)
    assert res["t_crit"].tolist() == [0, 0] and res["t_survive"].max() == 0 and res["radius"].tolist() == [0, 0]


def test_t_crit_is_first_passage_not_a_lucky_late_t(sched):
    """Rate 1 up to t = 101, 0.8 at t = 126, 1 again until 476, 0 from 501: t_crit is 101, not 476."""
    model = _Scripted()

    def metric(a, b):
        t = model.t
        model.fresh = True
        fail = np.zeros(len(a), dtype=bool).reshape(-1, 10)
        fail[:, :2] = t == 126
        fail[:, :] |= t >= 501
        return torch.as_tensor(fail.reshape(-1).astype(np.float64))

    res = critical_times(model, sched, torch.zeros(1, 1, 2, 2), [5], metric_fn=metric, delta=0.5, trials=10,
                         p=0.9, stride=25, ddim_steps=3, batch_size=1)
    assert res["t_crit"][0] == 101
    assert res["rate_t"][0].tolist() == list(range(1, 502, 25))  # the whole curve is kept
    assert res["t_survive"][0].tolist() == [101, 101] + [476] * 8


class _Linear(torch.nn.Module):
    """eps = 0.8 tanh(2 x): its clean-image predictions leave [-1, 1] at large t."""

    def forward(self, x, t):
        from types import SimpleNamespace

        return SimpleNamespace(sample=0.8 * torch.tanh(2 * x))


def _ddim_clip_at_end(model, sched, x, tau):
    """DDIM (eta = 0) on the ascending grid tau, written out: only the final image is clamped."""
    ac = sched.alphas_cumprod.double()
    x = x.double()
    for i in range(len(tau) - 1, -1, -1):
        a = ac[int(tau[i])]
        a_prev = ac[int(tau[i - 1])] if i > 0 else torch.tensor(1.0, dtype=torch.float64)
        eps = model(x.float(), torch.full((len(x),), int(tau[i]))).sample.double()
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x.clamp(-1, 1).float()


def test_ddim_clips_only_the_final_image(sched):
    model = _Linear()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1
    t = 976
    x_t = sched.add_noise(x, torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(4)),
                          torch.full((4,), t))
    ours = ddim_denoise(model, sched, x_t, t, 20)
    want = _ddim_clip_at_end(model, sched, x_t, ddim_grid(t, 20))
    assert torch.allclose(ours, want, atol=1e-5), (ours - want).abs().max()
    assert ours.abs().max() <= 1.0
    # Clipping every intermediate prediction (diffusers' clip_sample) gives another image here.
    from diffusers import DDIMScheduler

    tau = ddim_grid(t, 20)
    ac = sched.alphas_cumprod[torch.as_tensor(tau)]
    view = DDIMScheduler(num_train_timesteps=len(tau), trained_betas=(1 - ac / torch.cat([ac.new_ones(1), ac[:-1]]))
                         .double().numpy(), clip_sample=True, set_alpha_to_one=True, steps_offset=0)
    view.alphas_cumprod = ac.clone()
    view.set_timesteps(len(tau))
    y = x_t
    for i in range(len(tau) - 1, -1, -1):
        y = view.step(model(y, torch.full((4,), int(tau[i]))).sample, i, y, eta=0.0).prev_sample
    assert (y - want).pow(2).mean().sqrt() > 0.01
