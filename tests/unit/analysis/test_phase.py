"""The phase diagram's numbers (raystudy.analysis.phase): by value against independent
computations, and the intervals' coverage on simulated worlds with a known answer.

The worlds: the memorized fraction at (K, t) is exactly a logistic in ln t centred at
tau_K = c K^b, each cell a binomial draw of n = 200 samples. tau_mem's and b's 95% intervals
must cover the truth in at least 90% of runs, with resolved transitions (6 snapshots, width
0.4 in ln t), with sharp unresolved ones on 3 snapshots (the digits-phase config's count), and
with K censored at both ends, and with three seeds whose tau scatter per K. No Ray, no torch.
"""


import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special
from scipy import stats as sps

from raystudy.analysis import phase as P
from raystudy.analysis import summaries
from raystudy.analysis import transition as T

KS = np.array([8, 16, 32, 64, 128])
SNAPS6 = np.geomspace(1e3, 2e4, 6).astype(int)
SNAPS3 = np.array([1000, 4000, 16000])
N = 200


def f_mem(t, tau, w):
    return special.expit((np.log(t) - np.log(tau)) / w)


def world(rng, b, c, w, ks=KS, ts=SNAPS6, seeds=(0,), variant="base", jitter=0.0):
    """A ``fractions`` table with the phase axes: memorized ~ logistic in ln t centred at c K^b;
    ``jitter``: each (seed, K)'s tau scaled by exp(N(0, jitter)) (seed-to-seed spread that
    differs per K, so it moves b)."""
    rows = []
    for s in seeds:
        for k in ks:
            off = np.exp(rng.normal(0, jitter)) if jitter else 1.0
            m = rng.binomial(N, f_mem(ts, c * k ** b * off, w)) / N
            rows.append(pd.DataFrame({"K": int(k), "seed": s, "metric": "l2", "n": N, "memorized": m,
                                      "spurious": 0.0, "generalized": 1 - m, "ratio_memorized": m,
                                      "variant": variant, "images_seen": ts.astype(np.int64)}))
    return pd.concat(rows, ignore_index=True)


def cp(x, n, level=0.95):
    """Clopper-Pearson from its beta-quantile definition (not transition.clopper_pearson)."""
    a = (1 - level) / 2
    lo = sps.beta.ppf(a, x, n - x + 1) if x > 0 else 0.0
    hi = sps.beta.ppf(1 - a, x + 1, n - x) if x < n else 1.0
    return lo, hi


# -- a crossing along any axis ---------------------------------------------------------------------

def test_crossing_along_time_is_the_increasing_logistic_fit():
    ts = np.geomspace(500, 50000, 8)
    n = np.full(len(ts), 400.0)
    rng = np.random.default_rng(3)
    m = rng.binomial(400, f_mem(ts, 4000.0, 0.5)).astype(float)
    c = T.fit_crossing_along(ts, m, n, increasing=True)

    # brute force: the binomial MLE of an increasing logistic in ln t, fitted directly
    def nll(p):
        z = (np.log(ts) - p[0]) / np.exp(p[1])
        return -(m * special.log_expit(z) + (n - m) * special.log_expit(-z)).sum()

    best = min((optimize.minimize(nll, s0, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12})
                for s0 in ([np.log(3000), np.log(0.3)], [np.log(6000), np.log(1.0)], [np.log(1500), np.log(0.1)])),
               key=lambda r: r.fun)
    assert c.k == pytest.approx(np.exp(best.x[0]), rel=2e-3)
    assert c.width == pytest.approx(np.exp(best.x[1]), rel=2e-2)
    assert c.lo < c.k < c.hi
    # the fit's interval edges are where the profile LR reaches chi2_1(0.95), by brute force over w
    for edge in (c.fit_lo, c.fit_hi):
        prof = optimize.minimize_scalar(lambda lw, e=edge: nll([np.log(e), lw]), bounds=(-4, 3), method="bounded")
        assert 2 * (prof.fun - best.fun) == pytest.approx(sps.chi2.ppf(0.95, 1), abs=0.05)
    # the bracket by definition: the last snapshot significantly below 1/2, the first significantly above
    lo_, hi_ = zip(*(cp(x, 400) for x in m))
    below = ts[np.array(hi_) < 0.5]
    above = ts[np.array(lo_) > 0.5]
    assert c.bracket_lo == below.max() and c.bracket_hi == above.min()
    # decreasing along the axis is fit_crossing itself (the K transition is unchanged)
    ks = np.array([2.0, 8, 32, 128, 512])
    mk = rng.binomial(200, special.expit((np.log(40) - np.log(ks)) / 0.7)).astype(float)
    assert T.fit_crossing_along(ks, mk, np.full(5, 200.0)) == T.fit_crossing(ks, mk, np.full(5, 200.0))


def test_exponent_profile_edge_is_the_joint_likelihood_ratio():
    """At b_lo and b_hi, the joint binomial log-likelihood maximised over the centre and every
    K's width by scipy (not the grids of transition.py) is chi2_1(0.95) / 2 below its maximum."""
    rng = np.random.default_rng(11)
    fr = world(rng, 1.0, 100.0, 0.4)
    e = P.tau_exponent(fr).iloc[0]
    lk = np.log(KS.astype(float))
    d = lk - lk.mean()
    lt = np.log(SNAPS6.astype(float))
    m = np.array([np.rint(fr[fr.K == k].sort_values("images_seen")["memorized"] * N) for k in KS])

    def nll(p, b):
        z = (lt[None, :] - (p[0] + b * d)[:, None]) / np.exp(p[1:])[:, None]
        return -(m * special.log_expit(z) + (N - m) * special.log_expit(-z)).sum()

    def prof(b):
        start = np.r_[np.log(100) + lk.mean(), np.full(len(KS), np.log(0.4))]
        return optimize.minimize(nll, start, args=(b,), method="Nelder-Mead",
                                 options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20000, "maxfev": 20000}).fun

    best = optimize.minimize_scalar(prof, bounds=(0.5, 1.5), method="bounded", options={"xatol": 1e-6})
    assert e["b"] == pytest.approx(best.x, abs=0.01)
    for edge in (e["b_lo"], e["b_hi"]):
        assert 2 * (prof(edge) - best.fun) == pytest.approx(sps.chi2.ppf(0.95, 1), abs=0.1)
    # c: tau at K = 1 of the fitted line
    assert e["c"] * 32 ** e["b"] == pytest.approx(100.0 * 32, rel=0.15)


# -- the phase table, the crossings per axis -------------------------------------------------------

def test_phase_table_by_value():
    rng = np.random.default_rng(2)
    fr = pd.concat([world(rng, 1.0, 100.0, 0.4, ts=SNAPS3, variant="small"),
                    world(rng, 1.0, 50.0, 0.4, ts=SNAPS3, variant="wide")], ignore_index=True)
    fr["spurious"] = 0.25 * fr["generalized"]
    fr["generalized"] = 0.75 * fr["generalized"]
    fr["twin"] = 0
    twin = fr.copy()
    twin["twin"], twin["memorized"] = 1, 1.0  # the second model of twins: not the transition
    null = fr[["K", "seed", "metric", "variant", "images_seen"]].assign(n=100, memorized=0.01, spurious=0.02,
                                                                        generalized=0.97, ratio_memorized=0.0)
    runs_ = pd.DataFrame({"K": [8, 8], "seed": [0, 0], "variant": ["small", "wide"], "params": [1000, 4000]})
    pt = P.phase_table(pd.concat([fr, twin]), null, runs_)
    assert len(pt) == 2 * 3 * len(KS)
    for r in pt.itertuples():
        g = fr[(fr.variant == r.variant) & (fr.images_seen == r.images_seen) & (fr.K == r.K)]
        x = int(round(g["memorized"].iloc[0] * N))
        assert r.memorized == pytest.approx(x / N)
        assert (r.memorized_lo, r.memorized_hi) == pytest.approx(cp(x, N), abs=1e-9)
        assert r.spurious == pytest.approx(g["spurious"].iloc[0])
        assert r.null_memorized == pytest.approx(0.01) and r.params == {"small": 1000, "wide": 4000}[r.variant]


def test_tables_without_axes_are_todays_study():
    rng = np.random.default_rng(5)
    fr = world(rng, 1.0, 100.0, 0.4, ts=np.array([4096])).drop(columns=["variant", "images_seen"])
    fr["memorized"] = rng.binomial(N, special.expit((np.log(40) - np.log(fr["K"])) / 0.5)) / N
    assert not P.has_axes(fr) and P.has_axes(fr, pd.DataFrame({"K": [1]}))
    assert P.has_axes(world(rng, 1.0, 100.0, 0.4))
    cb = P.crossings_by_axis(fr)
    sm = summaries.transition_summary(fractions=fr)
    assert len(cb) == 1 and cb["variant"].iloc[0] == "base" and cb["images_seen"].iloc[0] == 0
    for col in sm.columns:
        assert cb[col].iloc[0] == sm[col].iloc[0] or (pd.isna(cb[col].iloc[0]) and pd.isna(sm[col].iloc[0])), col
    assert P.tau_mem(fr).empty and P.tau_exponent(fr).empty  # one snapshot: no training-time axis


def test_crossing_per_snapshot_and_variant_is_the_transition_summary_of_each():
    rng = np.random.default_rng(8)
    # the K transition moves with training time: memorized at (K, t) = logistic in ln K, crossing t / 50
    rows = []
    for variant, scale in (("small", 50.0), ("wide", 20.0)):
        for t in SNAPS3:
            ks = np.array([2, 8, 32, 128, 512])
            m = rng.binomial(N, special.expit((np.log(t / scale) - np.log(ks)) / 0.5)) / N
            rows.append(pd.DataFrame({"K": ks, "seed": 0, "metric": "l2", "n": N, "memorized": m, "spurious": 0.0,
                                      "generalized": 1 - m, "ratio_memorized": m, "variant": variant,
                                      "images_seen": t}))
    fr = pd.concat(rows, ignore_index=True)
    runs_ = pd.DataFrame({"K": [2, 2], "seed": [0, 0], "variant": ["small", "wide"], "params": [10, 40]})
    cb = P.crossings_by_axis(fr, runs_, n_boot=100)
    assert len(cb) == 6 and cb["final"].sum() == 2
    for r in cb.itertuples():
        sub = fr[(fr.variant == r.variant) & (fr.images_seen == r.images_seen)].drop(columns=["variant", "images_seen"])
        want = summaries.transition_summary(fractions=sub, n_boot=100).iloc[0]
        assert (r.k_cross, r.k_cross_lo, r.k_cross_hi) == (want.k_cross, want.k_cross_lo, want.k_cross_hi)
        assert r.params == (10 if r.variant == "small" else 40)
    # the crossings move as the world says: later in training, larger K; the wider model, larger K
    for _, g in cb.groupby("variant"):
        assert g.sort_values("images_seen")["k_cross"].is_monotonic_increasing
    fin = cb[cb["final"]].set_index("variant")
    assert fin.loc["wide", "k_cross_lo"] > fin.loc["small", "k_cross_hi"]


# -- the onset from the losses --------------------------------------------------------------------

EVALS = np.arange(1, 9) * 256
TIMESTEPS = np.array([100, 400, 800])


def curves(rng, depart=None, level=1, step=1.5, K=8, seed=0, variant="base", twin=0, n=24, evals=EVALS,
           timesteps=TIMESTEPS):
    """A ``loss_curves`` table of one run, with its per-item losses (E, L, n) for training and
    held-out items: each item its own difficulty (mean 0.4), a decline both sets share (0.5 at
    the first evaluation, falling), small noise; from evaluation ``depart`` on, the held-out
    losses at ``level`` are ``step`` higher (>> the noise's standard error, 0.05 / sqrt(n), and
    more than the training loss itself: a relative gap above ``onset.RHO``)."""
    e, L = len(evals), len(timesteps)
    shared = 0.5 / (1.0 + np.arange(e))[:, None, None]
    tr = rng.gamma(2.0, 0.2, (1, L, n)) + shared + 0.05 * rng.standard_normal((e, L, n))
    ho = rng.gamma(2.0, 0.2, (1, L, n)) + shared + 0.05 * rng.standard_normal((e, L, n))
    if depart is not None:
        ho[depart:, level] += step
    rows = [{"K": K, "seed": seed, "variant": variant, "twin": twin, "images_seen": int(evals[i]), "level": j,
             "timestep": int(timesteps[j]), "train_loss": tr[i, j].mean(), "held_out_loss": ho[i, j].mean(),
             "n_train": n, "n_held_out": n, "train_losses": tr[i, j], "held_out_losses": ho[i, j]}
            for i in range(e) for j in range(L)]
    return pd.DataFrame(rows), tr, ho


def test_tau_gap_reads_the_table_as_the_rule_does():
    from raystudy import onset

    rng = np.random.default_rng(11)
    opened, tr8, ho8 = curves(rng, depart=4, level=1, K=8)
    closed, tr32, ho32 = curves(rng, depart=None, K=32)
    twin, _, _ = curves(rng, depart=1, level=0, K=8, twin=1)  # the twin model's run: not the study's
    early, tr4, ho4 = curves(rng, depart=0, level=2, K=4)  # the gap large from the first evaluation
    lc = pd.concat([opened, closed, twin, early], ignore_index=True).sample(frac=1.0, random_state=3)  # any order
    got = P.tau_gap(lc).set_index("K")
    assert list(got.index) == [4, 8, 32]
    # the known departure: the evaluation it was put at, the level it was put at
    r = got.loc[8]
    assert r["tau_gap"] == EVALS[4] and not r["censored"] and r["gap_timestep"] == TIMESTEPS[1]
    # by value: the rule and its interval on the arrays themselves
    want = onset.gap_onset(EVALS, tr8, ho8)
    assert r["tau_gap"] == want["tau_gap"] and r["gap_timestep"] == TIMESTEPS[want["level"]]
    assert (r["tau_gap_lo"], r["tau_gap_hi"]) == onset.onset_bracket(EVALS, tr8, ho8, 0.95, tau=want["tau_gap"])
    assert r["gap"] == pytest.approx((ho8[-1].mean(-1) - tr8[-1].mean(-1)).mean(), rel=1e-12)
    assert (r["t_min"], r["t_max"], r["n_evals"]) == (EVALS[0], EVALS[-1], len(EVALS))
    # no departure: censored, as the rule says of its arrays
    c = got.loc[32]
    assert onset.gap_onset(EVALS, tr32, ho32)["censored"]
    assert c["censored"] and np.isnan(c["tau_gap"]) and c["gap_timestep"] == -1
    assert (c["tau_gap_lo"], c["tau_gap_hi"]) == onset.onset_bracket(EVALS, tr32, ho32, 0.95)
    # open at the start: tau_gap its first evaluation, a bound, marked so; the others are not
    assert onset.gap_onset(EVALS, tr4, ho4)["open_at_start"]
    e = got.loc[4]
    assert e["open_at_start"] and not e["censored"] and e["tau_gap"] == EVALS[0] and e["gap_timestep"] == TIMESTEPS[2]
    assert not r["open_at_start"] and not c["open_at_start"]


def test_onset_relation_by_hand():
    # per run: (variant, K, seed, tau_gap or NaN for censored); every run evaluated from 256 up to
    # 20,000, except the runs open at the start (open_at_start: tau_gap is their first evaluation)
    runs = [("base", 4, 0, 2000), ("base", 8, 0, 1000), ("base", 8, 1, 4000), ("base", 16, 0, 3000),
            ("base", 16, 1, 3000), ("base", 24, 0, 3000), ("base", 32, 0, 5000), ("base", 64, 0, 7000),
            ("base", 64, 1, np.nan), ("base", 128, 0, np.nan), ("base", 128, 1, np.nan), ("small", 8, 0, 1000)]
    at_start = [("base", 48, 0, 256), ("base", 96, 0, 2000)]  # the second run's first evaluation at 2,000
    gaps = pd.DataFrame([{"variant": v, "K": k, "seed": s, "tau_gap": float(t), "censored": bool(np.isnan(t)),
                          "open_at_start": False, "t_min": 256, "t_max": 20000} for v, k, s, t in runs] +
                        [{"variant": v, "K": k, "seed": s, "tau_gap": float(t), "censored": False,
                          "open_at_start": True, "t_min": t, "t_max": 20000} for v, k, s, t in at_start])
    # tau_mem per K: '' (crossed inside the snapshots 1,000..20,000), 'before' (memorized at 1,000), 'after'
    mems = [("base", 4, np.nan, "before"), ("base", 8, 6000, ""), ("base", 16, 12000, ""), ("base", 24, 500, ""),
            ("base", 32, np.nan, "after"), ("base", 48, 10000, ""), ("base", 64, 10000, ""),
            ("base", 96, 1500, ""), ("base", 128, np.nan, "after"), ("small", 8, 5000, "")]
    taus = pd.DataFrame([{"metric": "l2", "variant": v, "K": k, "tau": float(t), "censored": c, "t_min": 1000,
                          "t_max": 20000} for v, k, t, c in mems])
    rel = P.onset_relation(gaps, taus).set_index("variant")
    # the ratio: over K where neither is censored (8, 16, 24; 64 has a censored seed; 48 and 96 are
    # bounds), ln tau_gap averaged over seeds, a t interval (2 df) of ln(tau_mem / tau_gap) over those K
    lr = np.array([np.log(6000) - (np.log(1000) + np.log(4000)) / 2, np.log(12000 / 3000), np.log(500 / 3000)])
    assert np.exp(lr) == pytest.approx([3.0, 4.0, 1 / 6])
    half = sps.t.ppf(0.975, 2) * lr.std(ddof=1) / np.sqrt(3)
    b = rel.loc["base"]
    assert b["ratio"] == pytest.approx(np.cbrt(3.0 * 4.0 / 6.0), rel=1e-12)  # the geometric mean
    assert (b["ratio_lo"], b["ratio_hi"]) == pytest.approx((np.exp(lr.mean() - half), np.exp(lr.mean() + half)),
                                                           rel=1e-12)
    assert b["n_k"] == 3 and b["metric"] == "l2"
    # the order, each tau as the range it is known to lie in: K = 4 memorized before 1,000 < 2,000
    # (memorization first); 8, 16 gap first; 24 memorization first; 32 gap at 5,000 < memorization
    # after 20,000 (gap first); 64 memorization at 10,000 < the gap's bound 20,000 (memorization
    # first); 128 both beyond 20,000 (unknown); 48 the gap open by 256 < memorization at 10,000
    # (gap first); 96 the gap open by 2,000, memorization at 1,500 (unknown: either may be first)
    order = {4: (0, 1), 8: (1, 1), 16: (1, 1), 24: (0, 1), 32: (1, 1), 48: (1, 1), 64: (0, 1), 96: (0, 0),
             128: (0, 0)}
    assert (b["gap_first"], b["n_ordered"]) == tuple(np.sum(list(order.values()), axis=0)) == (4, 7)
    # one K: its ratio, no interval
    s = rel.loc["small"]
    assert s["ratio"] == pytest.approx(5.0) and np.isnan(s["ratio_lo"]) and np.isnan(s["ratio_hi"])
    assert (s["n_k"], s["gap_first"], s["n_ordered"]) == (1, 1, 1)


def test_show_says_where_each_runs_gap_opened(tmp_path):
    from raystudy import onset, tables
    from raystudy.analysis import synthetic
    from raystudy.study import fractions_records, fractions_text

    rng = np.random.default_rng(12)
    opened, tr, ho = curves(rng, depart=3, level=2, K=8)
    closed, _, _ = curves(rng, depart=None, K=32)
    d = synthetic.write_study(tmp_path / "s", ks=(8, 32), seeds=(0,), n=12, train_log=False, stages=False)
    before_text, before_csv = fractions_text(d), fractions_records(d, "csv")
    lc = pd.concat([opened, closed], ignore_index=True)
    tables.write_part(d, "loss_curves", "all", tables.to_table("loss_curves", {c: lc[c].to_list() for c in lc}))
    lo, hi = onset.onset_bracket(EVALS, tr, ho, 0.95, tau=onset.gap_onset(EVALS, tr, ho)["tau_gap"])
    assert np.isfinite(hi)
    text = fractions_text(d)
    assert text.startswith(before_text + "\n")
    assert text.splitlines()[-2:] == [f"K=8 seed 0: the held-out gap opened at {EVALS[3]:,} images ({lo:,.0f}-{hi:,.0f})",
                                      f"K=32 seed 0: the held-out gap did not open by {EVALS[-1]:,} images"]
    assert fractions_records(d, "csv") == before_csv  # for scripts: the fractions alone
    # a second variant is named
    lines = P.onset_lines(pd.concat([opened, closed.assign(variant="narrow")], ignore_index=True))
    assert lines[-1] == f"K=32 narrow seed 0: the held-out gap did not open by {EVALS[-1]:,} images"


# -- twins ----------------------------------------------------------------------------------------

def _twins_table(d_twin, K, seed=0, metric="l2", own=0.0, other=1.0):
    n = len(d_twin)
    return pd.DataFrame({"K": K, "seed": seed, "variant": "base", "images_seen": np.int64(1000), "metric": metric,
                         "sample_id": np.arange(n), "sample_seed": np.arange(n) + 10_000, "d_twin": d_twin,
                         "d_own_a": own, "d_other_a": other, "d_own_b": own, "d_other_b": other})


def _sqrtm(c):
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _rms(a, b):
    return np.sqrt(((a - b) ** 2).mean(-1))


def test_reproducibility_of_two_worlds_with_known_answers():
    """Digits split into two disjoint K-sets. The exact memorizer's limit (each twin returns the
    image of its own set nearest to the shared noise) never agrees: d_twin >= the distance between
    the sets. The Gaussian denoiser's limit (each twin returns mean + L z of a Gaussian fitted to its
    own set, symmetric square root of its covariance) agrees once K is large: two disjoint sets
    of one distribution estimate it alike (the digits' two disjoint halves, K = 898)."""
    from sklearn.datasets import load_digits

    x = load_digits().data / 8.0 - 1.0
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x))
    z = rng.normal(size=(200, x.shape[1]))
    rows = []
    for k in (8, 32, 128, 512, 898):
        a, b = x[perm[:k]], x[perm[-k:]]
        pa = a[np.argmin(((z[:, None] * 0.5 - a[None]) ** 2).sum(-1), 1)]
        pb = b[np.argmin(((z[:, None] * 0.5 - b[None]) ** 2).sum(-1), 1)]
        cross = _rms(a[:, None], b[None]).min()
        mem = _twins_table(_rms(pa, pb), k, metric="l2")
        assert (mem["d_twin"] >= cross).all() and cross > 0.1  # the known answer, before the analysis
        rows.append(mem.assign(variant="memorizer"))
        sa, sb = [s.mean(0) + z @ _sqrtm(np.cov(s.T)) for s in (a, b)]
        rows.append(_twins_table(_rms(sa, sb), k, metric="l2").assign(variant="gaussian"))
    rep = P.reproducibility(pd.concat(rows, ignore_index=True), {"l2": 0.1})
    m = rep[rep.variant == "memorizer"]
    assert (m["reproducible"] == 0).all() and m["reproducible_hi"].to_numpy() == pytest.approx(1 - 0.025 ** (1 / 200))
    g = rep[rep.variant == "gaussian"].sort_values("K")
    assert g["reproducible"].iloc[-1] == 1.0 and g["reproducible"].iloc[0] == 0.0
    assert g["reproducible"].is_monotonic_increasing and g["median_d_twin"].is_monotonic_decreasing


def test_reproducibility_by_value():
    rng = np.random.default_rng(1)
    parts = []
    for s in (0, 1):
        d = rng.uniform(0, 0.2, 50)
        d[:3] = 0.1  # at delta_m exactly: not closer than it
        parts.append(_twins_table(d, 16, seed=s, own=rng.uniform(0, 1, 50), other=rng.uniform(1, 2, 50)))
    tw = pd.concat(parts, ignore_index=True)
    rep = P.reproducibility(tw, {"l2": 0.1}, n_boot=500).iloc[0]
    per_seed = [(g["d_twin"] < 0.1).mean() for _, g in tw.groupby("seed")]
    assert rep["reproducible"] == pytest.approx(np.mean(per_seed))
    assert rep["median_d_twin"] == pytest.approx(np.median(tw["d_twin"]))
    assert rep["median_d_own"] == pytest.approx(np.median(np.r_[tw["d_own_a"], tw["d_own_b"]]))
    lo, hi = cp(int((tw["d_twin"] < 0.1).sum()), 100)
    assert rep["reproducible_lo"] <= lo + 1e-12 and rep["reproducible_hi"] >= hi - 1e-12  # widened to hold it
    one = P.reproducibility(parts[0], {"l2": 0.1}).iloc[0]
    assert (one["reproducible_lo"], one["reproducible_hi"]) == pytest.approx(cp(int((parts[0]["d_twin"] < 0.1).sum()), 50))
    # the study's delta_m, not the default
    assert P.reproducibility(tw, {"l2": 0.3}).iloc[0]["reproducible"] == 1.0


# -- the report -----------------------------------------------------------------------------------

# The axes' columns as issue 20 fixes them; where raystudy.tables does not have them yet, the test
# adds them to the schemas (the stages' branch adds them for real).
AXES_COLUMNS = {
    "fractions": [("variant", "string"), ("images_seen", "int64"), ("twin", "int32")],
    "null_fractions": [("variant", "string"), ("images_seen", "int64")],
    "runs": [("variant", "string"), ("params", "int64")],
}
TWINS = [("K", "int32"), ("seed", "int32"), ("variant", "string"), ("images_seen", "int64"), ("metric", "string"),
         ("sample_id", "int32"), ("sample_seed", "int64"), ("d_twin", "float64"), ("d_own_a", "float64"),
         ("d_other_a", "float64"), ("d_own_b", "float64"), ("d_other_b", "float64")]


@pytest.fixture
def axes_schemas(monkeypatch):
    import pyarrow as pa

    from raystudy import tables

    for name, cols in AXES_COLUMNS.items():
        schema = tables.SCHEMAS[name]
        for col, typ in cols:
            if col not in schema.names:
                schema = schema.append(pa.field(col, pa.type_for_alias(typ)))
        monkeypatch.setitem(tables.SCHEMAS, name, schema)
    if "twins" not in tables.SCHEMAS:
        monkeypatch.setitem(tables.SCHEMAS, "twins", pa.schema([(c, pa.type_for_alias(t)) for c, t in TWINS]))
    return tables


def _write(tables, study, name, df):
    """``df`` as one part of ``name`` in its schema (a schema column ``df`` lacks is null)."""
    import pyarrow as pa

    schema = tables.SCHEMAS[name]
    cols = {f.name: (pa.array(df[f.name].to_numpy(), type=f.type) if f.name in df else pa.nulls(len(df), f.type))
            for f in schema}
    tables.write_part(study, name, "0", pa.Table.from_pydict(cols, schema=schema))


def test_report_draws_the_phase_section_from_the_tables(tmp_path, axes_schemas):
    import html

    import matplotlib
    import yaml

    matplotlib.use("Agg")
    from raystudy.analysis import load
    from raystudy.analysis.report import relation_words, write_report

    rng = np.random.default_rng(4)
    ks = np.array([8, 16, 32, 64, 128])
    fr = pd.concat([world(rng, 1.0, 60.0, 0.4, ks, SNAPS3, (0, 1), "small"),
                    world(rng, 1.0, 30.0, 0.4, ks, SNAPS3, (0, 1), "base")], ignore_index=True)
    fr["twin"] = 0
    fr2 = fr.assign(twin=1, memorized=1.0, generalized=0.0)  # the twin models: never the transition
    study = tmp_path / "phase"
    study.mkdir()
    # the main model (raystudy.axes.main_checkpoint): the config's first variant, at train.images
    (study / "config.yaml").write_text(yaml.safe_dump({"study": {"name": "phase"}, "ks": ks.tolist(),
                                                       "train": {"images": int(max(SNAPS3))},
                                                       "variants": {"base": {}, "small": {}},
                                                       "classify": {"delta_m": {"l2": 0.2}}}, sort_keys=False))
    _write(axes_schemas, study, "fractions", pd.concat([fr, fr2], ignore_index=True))
    _write(axes_schemas, study, "null_fractions", fr.assign(n=100, memorized=0.02, spurious=0.0, generalized=0.98))
    _write(axes_schemas, study, "runs", pd.DataFrame({"K": [8, 8], "seed": [0, 0], "variant": ["small", "base"],
                                                      "params": [5000, 20000], "wall_s": [1.0, 1.0]}))
    tw = pd.concat([_twins_table(rng.uniform(0, 0.4, 40), int(k), seed=s).assign(images_seen=16000, variant=v)
                    for k in ks for s in (0, 1) for v in ("small", "base")], ignore_index=True)
    _write(axes_schemas, study, "twins", tw)
    # the base runs' loss curves: each gap opens at a known evaluation, earlier for smaller K
    evals = np.geomspace(250, 16000, 10).astype(np.int64)
    lc = pd.concat([curves(rng, depart=2 + i // 2, K=int(k), seed=s, evals=evals)[0]
                    for i, k in enumerate(ks) for s in (0, 1)], ignore_index=True)
    _write(axes_schemas, study, "loss_curves", lc)

    page = write_report(study, n_boot=100, echo=lambda *a: None)
    text = page.read_text()
    rep_dir = page.parent
    assert "id='phase'" in text and "variant base at its final snapshot (16000 images seen)" in text
    for fig in ("phase", "phase_size", "tau_mem", "crossing_axes", "twins", "gap"):
        assert (rep_dir / f"{fig}.png").stat().st_size > 1000, fig
    # the numbers beside the page are the notebook functions' (twin == 0 rows only)
    st = load(study, tables=["fractions", "twins"])
    assert len(st.fractions) == 2 * len(fr) and set(st.twins.columns) >= {c for c, _ in TWINS}
    want = P.tau_exponent(fr).drop(columns=["censored_K"])
    got = pd.read_csv(rep_dir / "tau_exponent.csv").drop(columns=["study", "censored_K"])
    pd.testing.assert_frame_equal(got[want.columns], want, check_dtype=False)
    rep = pd.read_csv(rep_dir / "reproducibility.csv")
    by_hand = tw.groupby(["variant", "K", "seed"])["d_twin"].apply(lambda d: (d < 0.2).mean()) \
        .groupby(["variant", "K"]).mean()  # the study's delta_m (0.2), not the default 0.1
    got = rep.set_index(["variant", "K"])["reproducible"]
    assert got.to_numpy() == pytest.approx(by_hand.loc[got.index].to_numpy())
    # the transition summary is of one model (base, final snapshot), not pooled over the axes
    final = fr[(fr.variant == "base") & (fr.images_seen == 16000)].drop(columns=["variant", "images_seen", "twin"])
    sm = pd.read_csv(rep_dir / "summary.csv")
    assert sm["k_cross"].iloc[0] == pytest.approx(summaries.transition_summary(fractions=final, n_boot=100)["k_cross"].iloc[0])
    cb = pd.read_csv(rep_dir / "crossings_by_axis.csv")
    assert len(cb) == 6 and set(cb.loc[cb["final"], "params"]) == {5000, 20000}
    # tau_gap per run and tau_mem / tau_gap: the notebook's tables, the relation in words
    gaps = P.tau_gap(lc)
    assert len(gaps) == 2 * len(ks) and not gaps["censored"].any()
    got = pd.read_csv(rep_dir / "tau_gap.csv").drop(columns="study")
    pd.testing.assert_frame_equal(got[gaps.columns], gaps, check_dtype=False)
    rel = P.onset_relation(gaps, P.tau_mem(fr, n_boot=100))
    got = pd.read_csv(rep_dir / "onset_relation.csv").drop(columns="study")
    pd.testing.assert_frame_equal(got[rel.columns], rel, check_dtype=False)
    assert "<h3>tau_gap per K</h3>" in text and "tau_mem (l2)" in text
    for r in rel.itertuples():
        assert relation_words(r) in html.unescape(text), relation_words(r)


def test_report_of_a_study_without_axes_has_no_phase_section(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from raystudy.analysis.report import write_report
    from raystudy.analysis.synthetic import write_study

    study = write_study(tmp_path / "plain", ks=(2, 8, 32, 128), seeds=(0,), n=20)
    page = write_report(study, n_boot=50, echo=lambda *a: None)
    assert "id='phase'" not in page.read_text() and not (page.parent / "tau_mem.csv").exists()
