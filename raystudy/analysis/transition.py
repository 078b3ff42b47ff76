"""Where the transition is, with intervals that know what the K grid can and cannot tell.

Per K, an exact (Clopper-Pearson) interval for a fraction over samples: 0/200 has an upper
bound of 1.8%, not 0. With several seeds, a hierarchical bootstrap (seeds, then samples
within each seed) because seed-to-seed spread is larger than sample noise; its interval is
widened to contain the exact one, so a K that is 0/200 in every seed is never a point.

A level crossing (memorized = 1/2; EMM, the ratio test's memorized fraction = 0.9) comes
from two constructions, and the reported interval is their intersection:

* **fit**: a two-parameter logistic in ln K, ``f(K) = expit((x_q - ln K) / w + logit(q))``
  (``x_q`` = ln of the K where f = q, ``w`` = width in ln K), fitted by binomial likelihood
  over the pooled counts. Its interval is the profile-likelihood set of ``x_q``
  (``2 (l_max - l_profile) <= phi * chi2_1``), the profile maximised over ``w`` on a grid
  that reaches w -> 0 (a step). ``phi`` >= 1 is the seeds' overdispersion (Pearson chi2
  of the per-seed counts about their pooled fraction, over its degrees of freedom), i.e. a
  quasi-likelihood interval: with one seed, phi = 1.
* **bracket**: model-free, assuming only that the true curve decreases. A grid K whose
  exact interval lies above q is below the crossing; one whose interval lies below q is
  above it. The bracket runs from the largest K significantly above to the smallest K
  significantly below (0 / inf when there is none). When no grid K lies strictly inside
  it, the grid has not resolved the transition and :func:`raystudy.analysis.summaries.describe`
  says "between 32 and 128".

The fit is clipped to the bracket because the logistic is a model and the bracket is not;
if they do not overlap (the curve is far from a logistic) the bracket alone is reported.
``tests/worlds/test_transition_intervals.py`` checks the coverage of the result on simulated labels,
sharp and broad, on the demo's grid and a refined one.

Nothing here imports torch or Ray: numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import special, stats

# The fit's grids: x_q reaches PAD (in ln K) beyond the measured K, w spans a step (0.01,
# far below the demo's grid spacing ln 4) to a nearly flat curve.
PAD = 1.5
N_X = 201
W_GRID = np.geomspace(0.01, 20.0, 60)


def clopper_pearson(x, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided ``level`` interval for a binomial proportion x / n (vectorised)."""
    x = np.asarray(x, float)
    n = np.asarray(n, float)
    a = (1 - level) / 2
    with np.errstate(invalid="ignore"):
        lo = np.where(x > 0, stats.beta.ppf(a, x, n - x + 1), 0.0)
        hi = np.where(x < n, stats.beta.ppf(1 - a, x + 1, n - x), 1.0)
    return lo, hi


def fraction_intervals(counts: list[np.ndarray], ns: list[np.ndarray], level: float = 0.95,
                       n_boot: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per K (one array of per-seed counts and sizes each): the ``level`` interval of the mean
    over seeds of the per-seed fraction. One seed: Clopper-Pearson. Several: the percentile
    interval of a hierarchical bootstrap (draw seeds with replacement, then each drawn seed's
    count binomially from its own fraction), widened to contain the pooled Clopper-Pearson."""
    rng = np.random.default_rng(seed)
    lo, hi = clopper_pearson([np.sum(c) for c in counts], [np.sum(n) for n in ns], level)
    a = (1 - level) / 2
    for i, (c, n) in enumerate(zip(counts, ns)):
        if len(c) == 1:
            continue
        c, n = np.asarray(c, float), np.asarray(n, float)
        pick = rng.integers(0, len(c), size=(n_boot, len(c)))
        draws = rng.binomial(n[pick].astype(int), (c / n)[pick]) / n[pick]
        mean = draws.mean(1)
        lo[i] = min(lo[i], np.quantile(mean, a, method="inverted_cdf"))
        hi[i] = max(hi[i], np.quantile(mean, 1 - a, method="inverted_cdf"))
    return lo, hi


def overdispersion(counts: list[np.ndarray], ns: list[np.ndarray]) -> float:
    """phi >= 1: the seeds' Pearson chi2 about each K's pooled fraction over its degrees of
    freedom (K with one seed, or pooled fraction 0 or 1, add nothing)."""
    chi2, df = 0.0, 0
    for c, n in zip(counts, ns):
        c, n = np.asarray(c, float), np.asarray(n, float)
        p = c.sum() / n.sum()
        if len(c) < 2 or p <= 0 or p >= 1:
            continue
        chi2 += float(((c - n * p) ** 2 / (n * p * (1 - p))).sum())
        df += len(c) - 1
    return max(1.0, chi2 / df) if df else 1.0


def bracket(ks, lo, hi, q: float = 0.5) -> tuple[float, float]:
    """(largest K significantly above q, smallest K significantly below q) for a decreasing
    curve, from per-K intervals [lo, hi]; 0 / inf where there is none. Where the data
    contradict a decreasing curve (a K above q beyond one below it), the bracket widens to
    hold every contradiction."""
    ks, lo, hi = np.asarray(ks, float), np.asarray(lo, float), np.asarray(hi, float)
    above, below = lo > q, hi < q
    b_lo = ks[above].max() if above.any() else 0.0
    b_hi = ks[below].min() if below.any() else np.inf
    if b_lo > b_hi:
        before = above & (ks < b_hi)
        after = below & (ks > b_lo)
        b_lo = ks[before].max() if before.any() else 0.0
        b_hi = ks[after].min() if after.any() else np.inf
    return float(b_lo), float(b_hi)


@dataclass(frozen=True)
class Crossing:
    """The K where a decreasing fraction equals ``q``. ``k``: the fitted value, inside
    [``lo``, ``hi``], the reported interval (fit interval clipped to the bracket);
    ``fit_lo`` / ``fit_hi``: the profile-likelihood interval alone; ``bracket_lo`` /
    ``bracket_hi``: grid K (0 / inf when open); ``resolved``: some grid K lies strictly
    inside the bracket; ``width``: the fitted w in ln K; ``phi``: the overdispersion used.
    0 means below the smallest K reached, inf beyond the largest."""

    q: float
    k: float
    lo: float
    hi: float
    fit_lo: float
    fit_hi: float
    bracket_lo: float
    bracket_hi: float
    resolved: bool
    width: float
    phi: float

    def columns(self, prefix: str) -> dict:
        d = asdict(self)
        out = {prefix: d["k"], f"{prefix}_lo": d["lo"], f"{prefix}_hi": d["hi"]}
        for key in ("fit_lo", "fit_hi", "bracket_lo", "bracket_hi", "resolved", "width"):
            out[f"{prefix}_{key}"] = d[key]
        return out


def _loglik(xq, w, x, m, n, q):
    """Binomial log-likelihood on a grid: xq (A,), w (B,) -> (A, B).

    m log p + (n - m) log(1 - p) = n log p - (n - m) z, with p = expit(z): one special call."""
    z = (xq[:, None, None] - x[None, None, :]) / w[None, :, None] + special.logit(q)
    return special.log_expit(z) @ n - z @ (n - m)


def profile_loglik(xs, x, m, n, q):
    """The logistic's log-likelihood of counts ``m`` of ``n`` at ``x`` (ln K), profiled over
    its width w at each crossing x_q of ``xs`` (level ``q``), and the maximising w: the coarse
    w grid, then a golden-section search in ln w between the best grid point's neighbours (the
    likelihood's ridge in (x_q, w) is narrow when n is large). The crossing fit and the phase
    diagram's exponent (:func:`raystudy.analysis.phase.exponent_fit`) share it."""
    ll = _loglik(xs, W_GRID, x, m, n, q)
    j = ll.argmax(1)
    lo = np.log(W_GRID[np.maximum(j - 1, 0)])
    hi = np.log(W_GRID[np.minimum(j + 1, len(W_GRID) - 1)])
    g = (np.sqrt(5) - 1) / 2

    def at(lw):  # the log-likelihood at (xs[i], exp(lw[i])) for every i
        z = (xs[:, None] - x[None, :]) / np.exp(lw)[:, None] + special.logit(q)
        return special.log_expit(z) @ n - z @ (n - m)

    for _ in range(25):
        c, d = hi - g * (hi - lo), lo + g * (hi - lo)
        left = at(c) >= at(d)
        hi, lo = np.where(left, d, hi), np.where(left, lo, c)
    lw = (lo + hi) / 2
    best = at(lw)
    grid_best = ll[np.arange(len(xs)), j]
    better = best >= grid_best
    return np.where(better, best, grid_best), np.where(better, np.exp(lw), W_GRID[j])


def lr_interval(grid, lr, thr):
    """The accepted region of a likelihood-ratio profile ``lr`` on ``grid`` (lr <= thr): its
    ends, linearly interpolated between the last accepted and first rejected point, and the
    first and last accepted indices. An end accepted at the grid's edge is the edge (the caller
    decides whether that means open); where no point is accepted (a better maximum found off
    this grid), the point nearest to acceptance stands alone."""
    lr = np.asarray(lr, float)
    ok = np.flatnonzero(lr <= thr)
    if len(ok) == 0:  # no crossing to interpolate: extrapolating the two nearest would leave the grid
        a = int(np.argmin(lr))
        return float(grid[a]), float(grid[a]), a, a
    a, b = int(ok[0]), int(ok[-1])

    def cut(i, j):  # i outside, j inside
        t = (thr - lr[j]) / (lr[i] - lr[j])
        return float(grid[j] + t * (grid[i] - grid[j]))

    lo = float(grid[0]) if a == 0 else cut(a - 1, a)
    hi = float(grid[-1]) if b == len(grid) - 1 else cut(b + 1, b)
    return lo, hi, a, b


def _edges(grid, prof, thr):
    """:func:`lr_interval` of a log-likelihood profile against its own maximum."""
    return lr_interval(grid, 2 * (prof.max() - prof), thr)


def fit_crossing(ks, m, n, q: float = 0.5, level: float = 0.95, phi: float = 1.0,
                 per_k: tuple | None = None) -> Crossing:
    """Fit the logistic to counts ``m`` of ``n`` at ``ks`` and return the ``q`` crossing with
    its intervals (see the module docstring). ``per_k``: the per-K (lo, hi) intervals that
    decide the bracket (default: Clopper-Pearson of m / n)."""
    ks = np.asarray(ks, float)
    m, n = np.asarray(m, float), np.asarray(n, float)
    if ks.ndim != 1 or len(ks) != len(m) or len(ks) != len(n) or len(ks) == 0:
        raise ValueError("ks, m and n must be 1-d and of one length")
    x = np.log(ks)
    lo_k, hi_k = per_k if per_k is not None else clopper_pearson(m, n, level)
    b_lo, b_hi = bracket(ks, lo_k, hi_k, q)
    resolved = bool(np.any((ks > b_lo) & (ks < b_hi)))

    thr = phi * stats.chi2.ppf(level, 1)
    grid = np.linspace(x.min() - PAD, x.max() + PAD, N_X)
    prof, _ = profile_loglik(grid, x, m, n, q)
    _, _, a, b = _edges(grid, prof, thr)
    # the same on a grid fine enough for large n: the accepted region and one step beyond it
    fx = np.linspace(grid[max(a - 1, 0)], grid[min(b + 1, N_X - 1)], N_X)
    fprof, fw = profile_loglik(fx, x, m, n, q)
    top = max(prof.max(), fprof.max())
    # on a flat ridge (no point inside a sharp transition) any point of the ridge is a maximum,
    # which is why the interval, not k, is the answer there
    i1 = int(np.argmax(fprof))
    xq, w = fx[i1], float(fw[i1])
    # against ``top``: the coarse maximum may be the better one (a ridge at the grid's end)
    lo_x, hi_x, _, _ = lr_interval(fx, 2 * (top - fprof), thr)
    fit_lo = 0.0 if a == 0 else float(np.exp(lo_x))
    fit_hi = np.inf if b == N_X - 1 else float(np.exp(hi_x))

    lo, hi = max(fit_lo, b_lo), min(fit_hi, b_hi)
    if lo > hi:  # the logistic does not fit where the data say the crossing is: keep the bracket
        lo, hi = b_lo, b_hi
    k = float(np.clip(np.exp(xq), lo, hi))
    return Crossing(q=q, k=k, lo=float(lo), hi=float(hi), fit_lo=fit_lo, fit_hi=fit_hi, bracket_lo=b_lo,
                    bracket_hi=b_hi, resolved=resolved, width=w, phi=float(phi))


def _inverse(v: float) -> float:
    return np.inf if v == 0 else (0.0 if np.isinf(v) else 1.0 / v)


def fit_crossing_along(xs, m, n, q: float = 0.5, level: float = 0.95, phi: float = 1.0,
                       per_k: tuple | None = None, increasing: bool = False) -> Crossing:
    """:func:`fit_crossing` along any positive axis (training-set size, images seen, parameter
    count). A fraction that *increases* along it (memorized over training time) is the decreasing
    one in 1 / x: the logistic in ln(1 / x) is the logistic in ln x mirrored, so the fit, its
    profile interval and the bracket are those of :func:`fit_crossing` on 1 / x, mapped back
    (0 <-> inf, lo <-> hi); the width in ln x is unchanged. ``increasing=False`` is exactly
    :func:`fit_crossing`."""
    if not increasing:
        return fit_crossing(xs, m, n, q, level, phi, per_k)
    c = fit_crossing(1.0 / np.asarray(xs, float), m, n, q, level, phi, per_k)
    return Crossing(q=c.q, k=_inverse(c.k), lo=_inverse(c.hi), hi=_inverse(c.lo), fit_lo=_inverse(c.fit_hi),
                    fit_hi=_inverse(c.fit_lo), bracket_lo=_inverse(c.bracket_hi), bracket_hi=_inverse(c.bracket_lo),
                    resolved=c.resolved, width=c.width, phi=c.phi)


def peak_bracket(ks, f, lo, hi) -> tuple[float, float]:
    """Where a unimodal curve's maximum can be, from per-K values and intervals: every grid K
    whose upper bound reaches the largest lower bound may be the highest grid point, and the
    true maximum lies between the neighbours of the first and last such K (0 / inf past the
    grid's ends)."""
    ks = np.asarray(ks, float)
    cand = np.flatnonzero(np.asarray(hi, float) >= np.max(lo))
    i, j = cand[0], cand[-1]
    return (float(ks[i - 1]) if i > 0 else 0.0), (float(ks[j + 1]) if j + 1 < len(ks) else np.inf)


# The peak fit's grids: the centre reaches PAD beyond the measured ln K; the spread from a
# bump far narrower than the demo's grid spacing to one wider than the whole sweep.
PEAK_S = np.geomspace(0.1, 8.0, 28)
PEAK_H = np.geomspace(1e-4, 1.0, 80)


@dataclass(frozen=True)
class Peak:
    """Where a unimodal fraction is highest and how high. ``k`` inside [``lo``, ``hi``]: the
    fitted peak K with its interval (profile likelihood clipped to :func:`peak_bracket`, the
    bracket alone where they do not overlap); ``fit_lo`` / ``fit_hi``: the fit's interval alone;
    ``height`` in [``height_lo``, ``height_hi``]: the fitted peak value with its profile interval
    (the curve's maximum, which may lie between grid K and above every grid value). ``fits``: the
    bump's deviance is not significant (p >= 0.05); where it is, the data are no Gaussian bump
    (e.g. a peak that rises slowly and falls sharply) and the model-free answer is reported
    instead: the K bracket, and for the height the grid maximum's lower bound up to 1 (a unimodal
    curve's maximum is at least its value at any grid K); ``fit_p``: that p-value."""

    k: float
    lo: float
    hi: float
    fit_lo: float
    fit_hi: float
    bracket_lo: float
    bracket_hi: float
    height: float
    height_lo: float
    height_hi: float
    fits: bool = True
    fit_p: float = 1.0

    def columns(self, prefix: str) -> dict:
        return {f"{prefix}_{key}" if key != "k" else prefix: v for key, v in asdict(self).items()}


def _bump_loglik(mu, s, h, x, m, n):
    """The bump's binomial log-likelihood on the grid (A, B, C); h near 1 is kept off p = 1.
    m log p = m log h + m log g: only the (n - m) log(1 - p) term needs the whole grid."""
    with np.errstate(over="ignore"):
        g = np.exp(-((x[None, None, :] - mu[:, None, None]) ** 2) / (2 * s[None, :, None] ** 2))  # (A, B, K)
    p = np.minimum(h[None, None, :, None] * g[:, :, None, :], 1 - 1e-12)
    hits = np.log(np.maximum(g, 1e-300)) @ m  # (A, B)
    return hits[:, :, None] + np.log(h)[None, None, :] * m.sum() + np.log1p(-p) @ (n - m)


def _bump_g(mu, ls, x):
    """exp(-(ln K - mu)^2 / (2 s^2)) for arrays ``mu``, ``ls`` = ln s of one shape (...): (..., K)."""
    with np.errstate(over="ignore"):  # a spread whose square is inf is a flat bump, g = 1
        return np.exp(-((x - np.asarray(mu)[..., None]) ** 2) / (2 * np.exp(2 * np.asarray(ls))[..., None]))


def _ll_at(g, lh, m, c):
    """The bump's log-likelihood at height e^lh over shapes ``g`` (..., K); outside the model
    (some p >= 1) a wall, as for the grid."""
    p = np.exp(lh)[..., None] * g
    ll = (np.log(np.maximum(p, 1e-300)) * m).sum(-1) + (np.log1p(-np.minimum(p, 1 - 1e-12)) * c).sum(-1)
    return np.where((p >= 1).any(-1), -1e12, ll)


def _best_lh(g, m, c):
    """The height profiled out: for each shape g (..., K), the ln h that maximises the binomial
    likelihood, and that maximum. In u = ln h the log-likelihood is concave, with derivative
    M - sum c p / (1 - p) (M = sum m, c = n - m): its root, by Newton's method kept inside a
    shrinking bracket. h stays below 1 / max g (p < 1); M = 0 sends h to 0, where the likelihood is 1."""
    M = float(m.sum())
    top = np.log((1 - 1e-12) / np.maximum(g.max(-1), 1e-300))
    lo, hi = np.full(top.shape, -700.0), top
    if M == 0:
        return lo, np.zeros(top.shape)
    u = np.clip(np.log(M / np.maximum((c * g).sum(-1) + M * g.max(-1), 1e-300)), lo, hi)
    for _ in range(60):
        p = np.exp(u)[..., None] * g
        r = p / (1 - p)
        f = M - (c * r).sum(-1)
        lo, hi = np.where(f > 0, u, lo), np.where(f > 0, hi, u)
        step = u + f / np.maximum((c * r / (1 - p)).sum(-1), 1e-300)
        inside = (step > lo) & (step < hi)
        new = np.where(inside, step, (lo + hi) / 2)
        if np.all(np.abs(new - u) < 1e-12):
            u = new
            break
        u = new
    return u, _ll_at(g, u, m, c)


def _golden(f, lo, hi, iters: int = 25):
    """Maximise ``f`` (vectorised over the bracket arrays ``lo``, ``hi``) by golden-section
    search, one new evaluation per step: the argmax and the maximum."""
    g = (np.sqrt(5) - 1) / 2
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        left = fc >= fd  # the maximum is in [lo, d]: d becomes c's old point, c is new
        hi, lo = np.where(left, d, hi), np.where(left, lo, c)
        c_new = np.where(left, hi - g * (hi - lo), d)
        d_new = np.where(left, c, lo + g * (hi - lo))
        f_new = f(np.where(left, c_new, d_new))
        fc, fd = np.where(left, f_new, fd), np.where(left, fc, f_new)
        c, d = c_new, d_new
    better = fc >= fd
    return np.where(better, c, d), np.where(better, fc, fd)


def _neighbours(grid, j):
    """The bracket [grid[j - 1], grid[j + 1]] around grid points ``j`` (clipped at the ends)."""
    return grid[np.maximum(j - 1, 0)], grid[np.minimum(j + 1, len(grid) - 1)]


def _profile_mu(mus, x, m, c):
    """Profile log-likelihood at each peak position ``mus``: h profiled out exactly
    (:func:`_best_lh`), ln s by golden-section search between the neighbours of the best of
    PEAK_S (the ridge in (mu, s) is narrow when n is large)."""
    ls = np.log(PEAK_S)
    _, grid = _best_lh(_bump_g(mus[:, None], ls[None, :], x), m, c)
    j = grid.argmax(1)
    lo, hi = _neighbours(ls, j)
    _, best = _golden(lambda v: _best_lh(_bump_g(mus, v, x), m, c)[1], lo, hi)
    return np.maximum(best, grid[np.arange(len(mus)), j])


def _profile_lh(lhs, mu, x, m, c):
    """Profile log-likelihood at each height ln h of ``lhs``: (mu, ln s) maximised by nested
    golden-section searches between the neighbours of the best point of the (``mu``, PEAK_S) grid."""
    ls = np.log(PEAK_S)
    grid = _ll_at(_bump_g(mu[:, None, None], ls[None, :, None], x), lhs[None, None, :], m, c)  # (A, B, H)
    flat = grid.reshape(-1, len(lhs)).argmax(0)
    ja, jb = np.unravel_index(flat, grid.shape[:2])
    mu_lo, mu_hi = _neighbours(mu, ja)
    s_lo, s_hi = _neighbours(ls, jb)

    def over_s(mu_v):
        return _golden(lambda v: _ll_at(_bump_g(mu_v, v, x), lhs, m, c), s_lo, s_hi)[1]

    _, best = _golden(over_s, mu_lo, mu_hi)
    return np.maximum(best, grid[ja, jb, np.arange(len(lhs))])


def fit_peak(ks, m, n, level: float = 0.95, phi: float = 1.0, per_k: tuple | None = None) -> Peak:
    """Fit a Gaussian bump in ln K, f = h exp(-(ln K - mu)^2 / (2 s^2)), to counts ``m`` of ``n``
    at ``ks`` by binomial likelihood, and return its peak K = e^mu and height h with
    profile-likelihood intervals (``phi``: the seeds' overdispersion, as for crossings): a grid
    over (mu, s, h) finds the region, then each profile point is maximised over the other two
    parameters (the height in closed-form Newton steps, the others by golden-section search
    around the best grid point; a grid alone leaves the profile ragged enough to move the
    interval's ends). ``per_k``: per-K (lo, hi) intervals that decide the
    model-free bracket (default Clopper-Pearson). The K interval is clipped to the bracket, and
    the likelihood-ratio threshold is deliberately conservative (see the code);
    ``tests/worlds/test_transition_intervals.py`` checks both intervals' coverage on simulated bumps,
    narrow and wide, on two grids."""
    ks = np.asarray(ks, float)
    m, n = np.asarray(m, float), np.asarray(n, float)
    x = np.log(ks)
    f = m / np.maximum(n, 1)
    top = int(np.argmax(f))
    lo_k, hi_k = per_k if per_k is not None else clopper_pearson(m, n, level)
    b_lo, b_hi = peak_bracket(ks, f, lo_k, hi_k)
    # The chi2_1 quantile at (1 + level) / 2, not at level: a narrow peak is carried by two or
    # three grid K, where the likelihood ratio is not yet chi2_1 (at the nominal 3.84 a peak of
    # height 0.3 and spread 0.4 in ln K on the refined grid was covered in 0.89 of 200 runs).
    thr = phi * stats.chi2.ppf((1 + level) / 2, 1)
    mu = np.linspace(x.min() - PAD, x.max() + PAD, 121)
    ll = _bump_loglik(mu, PEAK_S, PEAK_H, x, m, n)
    _, _, a, b = _edges(mu, ll.max(axis=(1, 2)), thr + 2.0)  # a margin for the grid's coarseness
    fine = np.linspace(mu[max(a - 1, 0)], mu[min(b + 1, len(mu) - 1)], 49)
    prof_mu = _profile_mu(fine, x, m, n - m)
    i = int(np.argmax(prof_mu))
    lo_x, hi_x, a2, b2 = _edges(fine, prof_mu, thr)
    fit_lo = 0.0 if a2 == 0 and fine[0] <= mu[0] else float(np.exp(lo_x))
    fit_hi = np.inf if b2 == len(fine) - 1 and fine[-1] >= mu[-1] else float(np.exp(hi_x))
    # the height's profile, on log h around the grid's accepted region
    lh_grid = np.log(PEAK_H)
    _, _, c1, c2 = _edges(lh_grid, ll.max(axis=(0, 1)), thr + 2.0)
    lh = np.linspace(lh_grid[max(c1 - 1, 0)], lh_grid[min(c2 + 1, len(lh_grid) - 1)], 41)
    prof_h = _profile_lh(lh, mu, x, m, n - m)
    h_lo, h_hi, _, _ = _edges(lh, prof_h, thr)
    height = float(np.exp(lh[int(np.argmax(prof_h))]))
    height_lo, height_hi = float(np.exp(h_lo)), float(np.exp(h_hi))
    # goodness of fit: the binomial deviance of the best bump against the saturated model
    sat = float((m * np.log(np.where(m > 0, f, 1))).sum() + ((n - m) * np.log(np.where(n - m > 0, 1 - f, 1))).sum())
    dev = max(2 * (sat - float(prof_mu[i])), 0.0)
    df = max(len(ks) - 3, 1)
    fit_p = float(stats.chi2.sf(dev, df))
    fits = fit_p >= 0.05
    lo, hi = max(fit_lo, b_lo), min(fit_hi, b_hi)
    if lo > hi or not fits:
        lo, hi = b_lo, b_hi
    if not fits:
        height, height_lo, height_hi = float(f[top]), float(lo_k[top]), 1.0
    k = float(np.clip(np.exp(fine[i]), lo, hi)) if fits else float(ks[top])
    return Peak(k=k, lo=float(lo), hi=float(hi), fit_lo=fit_lo, fit_hi=fit_hi, bracket_lo=b_lo, bracket_hi=b_hi,
                height=height, height_lo=height_lo, height_hi=height_hi, fits=fits, fit_p=fit_p)
