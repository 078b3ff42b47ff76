"""How the basin numbers' rules differ, on the same simulated Bernoulli outcomes (no model).

Items have two-point basins (tests/unit/test_basins.py): a trial noised to step t is recovered with
q(t) = Phi(sqrt(abar_t / (1 - abar_t)) D / 2), D drawn per item; each (item, trial, t) outcome is
an independent draw, as fresh noise at every t makes it. On those outcomes:

* t_crit, first passage (ours now) vs the largest t with rate >= p (ours before);
* t_survive (per trial, uncensored) vs the paper's find_opt_time Tc, written out here from its
  rule: Tc starts at 1, a trial's Tc is the last t it survived continuously, and the scan of a
  *batch* stops, before updating Tc, at the first t where every item's rate is < p.

Deterministic (seeded); prints one table. Usage: python benchmarks/basin_rules.py [n_items]
"""

import sys

import numpy as np
from scipy.stats import norm


def main(n_items: int = 640, trials: int = 10, p: float = 0.9, stride: int = 25, seed: int = 0,
         floor: float = 0.5) -> dict:
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - betas)
    ts = np.arange(1, 1000, stride)
    rng = np.random.default_rng(seed)
    D = rng.uniform(0.5, 8.0, n_items)
    q = norm.cdf(np.sqrt(abar[ts] / (1 - abar[ts]))[None] * D[:, None] / 2)          # (items, t)
    # floor 0.5: the two-point world, where a trial from pure noise still lands on the right side
    # half the time; floor 0: q rescaled to (q - 1/2) / (1/2), a ball a pure-noise trial never hits.
    q = q if floor == 0.5 else (q - 0.5) / 0.5
    ok = rng.random((n_items, trials, len(ts))) < q[:, None, :]                        # (items, trials, t)
    rate = ok.mean(1)
    above = rate >= p
    last_above = np.where(above.any(1), ts[np.where(above, np.arange(len(ts)), -1).max(1)], 0)
    first_below = np.where((~above).any(1), np.argmax(~above, 1), len(ts))
    first_passage = np.where(first_below > 0, ts[np.maximum(first_below - 1, 0)], 0)
    fail = ~ok
    first_fail = np.where(fail.any(2), np.argmax(fail, 2), len(ts))                    # (items, trials)
    t_survive = np.where(first_fail > 0, ts[np.maximum(first_fail - 1, 0)], 0)

    def paper_tc(batch: int) -> np.ndarray:
        out = np.zeros((n_items, trials), dtype=np.int64)
        for s in range(0, n_items, batch):
            sl = slice(s, s + batch)
            tc = np.ones((len(D[sl]), trials), dtype=np.int64)
            alive = np.ones_like(tc, dtype=bool)
            for j, t in enumerate(ts):
                alive &= ok[sl, :, j]
                if (rate[sl, j] < p).all():
                    break
                tc = np.where(alive, t, tc)
            out[sl] = tc
        return out

    res = {"items": n_items, "t_crit differs (share of items)": float((last_above != first_passage).mean()),
           "t_crit differs by up to (strides)": int(np.abs(last_above - first_passage).max() // stride),
           "mean t_crit, largest t with rate >= p": float(last_above.mean()),
           "mean t_crit, first passage": float(first_passage.mean()),
           "mean t_survive (ours, uncensored)": float(t_survive.mean())}
    for b in (1, 64):
        res[f"mean paper Tc, batch {b}"] = float(paper_tc(b).mean())
    return res


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 640
    a, b = main(n, floor=0.5), main(n, floor=0.0)
    print(f"{'':40s} {'q -> 1/2':>10s} {'q -> 0':>10s}")
    for k in a:
        print(f"{k:40s} {a[k]:10.3f} {b[k]:10.3f}" if isinstance(a[k], float) else f"{k:40s} {a[k]:10d} {b[k]:10d}")
