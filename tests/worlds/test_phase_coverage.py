"""The phase diagram's intervals against the truth: tau_mem's and b's 95% intervals cover it in
at least 90% of simulated runs, in the worlds of tests/unit/analysis/test_phase.py (the
memorized fraction at (K, t) a logistic in ln t centred at c K^b, binomial cells of n = 200):
resolved transitions, sharp ones on three snapshots, K censored at both ends, and three seeds
whose tau scatter per K. 100 runs per world. No Ray, no torch."""

import functools

import numpy as np
import pytest

from raystudy.analysis import phase as P
from tests.unit.analysis.test_phase import KS, SNAPS3, SNAPS6, world


@functools.lru_cache(maxsize=None)
def runs(kind: str, n_runs: int = 100):
    """Per simulated run: (true b, true taus, tau_mem table, tau_exponent bounds, exclude)."""
    rng = np.random.default_rng({"smooth": 1, "sharp": 2, "censored": 3, "seeds": 4}[kind])
    out = []
    for _ in range(n_runs):
        b = rng.uniform(0.6, 1.4)
        if kind == "censored":  # the line's ends leave the snapshots: K censored at both ends
            c = 100.0 * np.exp(rng.uniform(-0.3, 0.3))
            ks = np.array([4, 8, 16, 32, 64, 128, 512])
        else:
            c, ks = np.exp(rng.uniform(np.log(50), np.log(150))), KS
        w = 0.1 if kind == "sharp" else 0.4
        ts = SNAPS3 if kind == "sharp" else SNAPS6
        seeds = (0, 1, 2) if kind == "seeds" else (0,)
        fr = world(rng, b, c, w, ks, ts, seeds, jitter=0.25 if kind == "seeds" else 0.0)
        taus = dict(zip(ks, c * ks.astype(float) ** b))
        tau = P.tau_mem(fr, n_boot=200) if kind != "seeds" else None
        bounds = P.tau_exponent(fr).iloc[0]
        excl = P.tau_exponent(fr, censored="exclude").iloc[0] if kind == "censored" else None
        out.append((b, taus, tau, bounds, excl, fr))
    return out


def coverage_b(kind, which=3):
    rs = runs(kind)
    return float(np.mean([r[which].b_lo <= r[0] <= r[which].b_hi for r in rs])), \
        float(np.median([r[which].b_hi - r[which].b_lo for r in rs]))


@pytest.mark.parametrize("kind", ["smooth", "sharp", "censored", "seeds"])
def test_exponent_interval_covers_the_true_exponent(kind):
    cov, width = coverage_b(kind)
    assert cov >= 0.90, (kind, cov, width)
    # and it says something: resolved transitions pin b to +-0.1, three sharp snapshots to +-0.4,
    # three seeds scattering per K to +-0.4
    assert width < {"smooth": 0.2, "sharp": 0.9, "censored": 0.3, "seeds": 1.0}[kind], width
    for r in runs(kind):
        assert r[3].b_lo <= r[3].b <= r[3].b_hi


def test_censored_k_are_named_and_excluding_them_still_covers():
    rs = runs("censored")
    for _b, _taus, tau, bounds, excl, fr in rs:
        t_min, t_max = fr["images_seen"].min(), fr["images_seen"].max()
        # censoring by definition: pooled memorized never > 1/2, or already > 1/2 at the first snapshot
        want = []
        for k, g in fr.groupby("K"):
            g = g.sort_values("images_seen")
            if not (g["memorized"] > 0.5).any() or g["memorized"].iloc[0] > 0.5:
                want.append(int(k))
        assert bounds["censored_K"] == ",".join(map(str, want))
        assert set(tau.loc[tau["censored"] != "", "K"]) == set(want)
        # a censored K's interval reaches beyond the snapshots on its open side
        for t in tau[tau["censored"] == "after"].itertuples():
            assert t.tau_hi > t_max
        for t in tau[tau["censored"] == "before"].itertuples():
            assert t.tau_lo < t_min
        # exclude = the fit on the uncensored K alone
        if want and len(set(fr["K"]) - set(want)) >= 2:
            alone = P.tau_exponent(fr[~fr["K"].isin(want)]).iloc[0]
            assert (alone["b_lo"], alone["b_hi"]) == pytest.approx((excl["b_lo"], excl["b_hi"]))
    assert np.mean([bool(r[3]["censored_K"]) for r in rs]) > 0.9  # the world does censor
    cov = np.mean([r[4].b_lo <= r[0] <= r[4].b_hi for r in rs])
    assert cov >= 0.90, cov
    # the bounds carry information: kept in, they narrow b's interval
    assert np.median([r[3].b_hi - r[3].b_lo for r in rs]) < np.median([r[4].b_hi - r[4].b_lo for r in rs])


@pytest.mark.parametrize("kind", ["smooth", "sharp", "censored"])
def test_tau_mem_interval_covers_each_k(kind):
    hits, total = 0, 0
    for _b, taus, tau, *_ in runs(kind):
        for t in tau.itertuples():
            hits += t.tau_lo <= taus[t.K] <= t.tau_hi
            total += 1
            assert t.tau_bracket_lo <= t.tau_lo <= t.tau <= t.tau_hi <= t.tau_bracket_hi
    assert hits / total >= 0.90, hits / total


# The coverage table of docs/guides/phase-diagram.md:
if __name__ == "__main__":  # PYTHONPATH=$PWD .venv/bin/python tests/worlds/test_phase_coverage.py
    print("| world | b covered (bounds) | median width of b | b covered (censored K excluded) | tau_mem covered per K |")
    for kind in ("smooth", "sharp", "censored", "seeds"):
        cov, width = coverage_b(kind)
        excl = f"{coverage_b(kind, 4)[0]:.2f}" if kind == "censored" else "-"
        if kind == "seeds":
            tau = "-"
        else:
            hits = [t.tau_lo <= r[1][t.K] <= t.tau_hi for r in runs(kind) for t in r[2].itertuples()]
            tau = f"{np.mean(hits):.2f}"
        print(f"| {kind} | {cov:.2f} | {width:.2f} | {excl} | {tau} |")
