"""The gap onset rule (raystudy.onset) on per-item losses built with a known answer: where the
held-out curve leaves the training curve, how often it fires on curves that never part, that a
significant but small gap is no onset, a gap open from the first evaluation, and the same answer
online (GapWatch) as on the whole run. tau_gap's bracket (onset_bracket) against a walk over the
evaluations written out, and how often it holds a known truth in simulated runs."""

import numpy as np
from scipy import stats as sps

from raystudy.onset import ALPHA, CONFIRM, RHO, GapWatch, gap_onset, gap_z, onset_bracket, relative_gap, relative_se, threshold

E, L, N = 24, 6, 32
SEEN = 64 * np.arange(1, E + 1)
DRIFT = np.exp(-np.linspace(0, 1.5, E))  # every item's loss falls alike over the run
SCALE = np.linspace(1.0, 0.2, L)  # and is smaller at higher noise levels


def _curves(rng, step_at=None, level=2, size=1.0, spike=False, noise=0.01, n_train=N, n_held=N, scale=SCALE):
    """Per-item losses (E, L, n) of a run whose items all get easier alike (a common drift) with
    items of their own difficulty, a level's losses in proportion to ``scale``; the held-out
    items at ``level`` rise by ``size`` from evaluation ``step_at`` on (at that evaluation only
    with ``spike``)."""
    drift, scale = DRIFT[:, None, None], np.asarray(scale)[None, :, None]

    def items(n):
        difficulty = rng.uniform(0.5, 1.5, n)[None, None, :]
        return scale * difficulty * drift + noise * rng.standard_normal((E, L, n))

    tr, ho = items(n_train), items(n_held)
    if step_at is not None:
        ho[step_at:step_at + 1 if spike else E, level] += size
    return tr, ho


def _z_by_loop(tr, ho):
    """The rule's statistic written out item by item: per evaluation and level, the held-out
    items' mean rise since evaluation 0 less the training items', over its standard error
    (sample variances, ddof 1)."""
    z = np.zeros(tr.shape[:2])
    for e in range(tr.shape[0]):
        for lv in range(tr.shape[1]):
            a = [ho[e, lv, i] - ho[0, lv, i] for i in range(ho.shape[2])]
            b = [tr[e, lv, j] - tr[0, lv, j] for j in range(tr.shape[2])]
            ma, mb = sum(a) / len(a), sum(b) / len(b)
            va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
            vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
            se = (va / len(a) + vb / len(b)) ** 0.5
            z[e, lv] = (ma - mb) / se if se > 0 else 0.0
    return z


def test_gap_z_equals_the_rule_written_out():
    rng = np.random.default_rng(0)
    tr, ho = _curves(rng, step_at=9, size=0.5, n_train=32, n_held=17)  # unequal batches
    z = gap_z(tr, ho)
    assert z.shape == (E, L) and np.all(z[0] == 0)
    np.testing.assert_allclose(z, _z_by_loop(tr, ho), rtol=1e-9, atol=1e-12)
    assert np.abs(z[9:, 2]).min() > 3  # the loop is not comparing zeros


def test_onset_at_the_known_evaluation_and_level():
    rng = np.random.default_rng(1)
    for step_at, level in [(7, 2), (1, 0), (E - 2, 5)]:
        tr, ho = _curves(rng, step_at=step_at, level=level, size=1.0)
        o = gap_onset(SEEN, tr, ho)
        assert o["tau_gap"] == SEEN[step_at] and o["index"] == step_at and o["level"] == level
        assert not o["censored"] and o["z_threshold"] == threshold(L)
        np.testing.assert_array_equal(o["z"], gap_z(tr, ho).max(1))
    # The level is the onset evaluation's, not the confirming one's: a larger rise at another
    # level from the next evaluation on does not take it.
    tr, ho = _curves(rng, step_at=7, level=2, size=1.0)
    ho[8:, 4] += 5.0
    o = gap_onset(SEEN, tr, ho)
    assert o["tau_gap"] == SEEN[7] and o["level"] == 2 and np.argmax(gap_z(tr, ho)[8]) == 4
    # The threshold is Bonferroni's over the levels.
    assert threshold(L) == sps.norm.ppf(1 - ALPHA / L)
    # Evaluations where the weights had not moved (each repeats the first exactly, z = 0) before a
    # clear departure: the departure's evaluation.
    tr, ho = _curves(rng, step_at=8, size=1.0)
    tr[1:8], ho[1:8] = tr[0], ho[0]
    assert np.all(gap_z(tr, ho)[:8] == 0) and gap_onset(SEEN, tr, ho)["tau_gap"] == SEEN[8]


def test_a_single_evaluation_spike_or_a_last_evaluation_rise_is_no_onset():
    rng = np.random.default_rng(2)
    tr, ho = _curves(rng, step_at=10, size=1.0, spike=True)
    o = gap_onset(SEEN, tr, ho)
    assert o["z"][10] > 10 and o["z"][11] < o["z_threshold"]  # crossed once, by far
    assert o["censored"] and np.isnan(o["tau_gap"]) and o["level"] == -1
    # A rise at the last evaluation has nothing to confirm it.
    tr, ho = _curves(rng, step_at=E - 1, size=1.0)
    assert gap_onset(SEEN, tr, ho)["censored"]
    # Curves that never part: censored.
    o = gap_onset(SEEN, *_curves(rng))
    assert o["censored"] and np.isnan(o["tau_gap"]) and o["index"] == -1


def test_false_alarm_rate_is_small_and_a_real_departure_is_found():
    """300 runs whose training and held-out items are drawn alike (a common drift, items of their
    own difficulty, evaluation noise): few show an onset, by the rule or by its significance half
    alone. The same runs with the held-out items at one level rising by 4 standard errors of the
    gap from evaluation 12 on mostly do: that level's loss is small next to the evaluation noise,
    so 4 standard errors are also more than the loss itself (a relative gap above RHO) and the
    test is one of the statistic's power."""
    rng = np.random.default_rng(3)
    runs, thr = 300, threshold(L)
    scale = SCALE.copy()
    scale[3] = 0.05
    onsets = significant = crossings = found = on_time = 0
    # One standard error of the gap's rise at evaluation 12, level 3: a per-item difference
    # varies by the drift times the spread of the difficulties (uniform, variance 1/12) and by
    # the noise of two evaluations; two batches of N.
    noise = 0.05
    item_var = (scale[3] * (DRIFT[12] - 1)) ** 2 / 12 + 2 * noise ** 2
    se = np.sqrt(2 * item_var / N)
    assert 4 * se > scale[3] * DRIFT[12]  # the rise is more than the training loss there
    for _ in range(runs):
        tr, ho = _curves(rng, noise=noise, scale=scale)
        o = gap_onset(SEEN, tr, ho)
        onsets += not o["censored"]
        crossings += int((o["z"][1:] > thr).sum())
        # the significance half confirmed, written out: two evaluations in a row above thr
        significant += bool(np.any((o["z"][1:-1] > thr) & (o["z"][2:] > thr)))
        tr, ho = _curves(rng, step_at=12, level=3, size=4 * se, noise=noise, scale=scale)
        o = gap_onset(SEEN, tr, ho)
        found += not o["censored"]
        on_time += o["tau_gap"] == SEEN[12]
    assert onsets / runs <= 0.05 and significant / runs <= 0.05
    # Single evaluations do cross (near the nominal rate): the statistic is not silent by
    # construction, the confirmation is what keeps the run-level rate of its half down.
    assert 0.2 * ALPHA < crossings / (runs * (E - 1)) < 3 * ALPHA
    assert found / runs >= 0.7 and on_time / runs >= 0.5


def test_gap_watch_follows_the_rule_online():
    rng = np.random.default_rng(5)
    tr, ho = _curves(rng, step_at=6, level=1, size=1.0)
    whole = gap_onset(SEEN, tr, ho)
    watch = GapWatch()
    for e in range(E):
        got = watch.add(SEEN[e], tr[e], ho[e])
        if e < 6 + CONFIRM - 1:  # known only once the next evaluation confirms it
            assert got is None and watch.onset is None and watch.message() is None
        else:
            assert got is watch.onset
    assert watch.onset["tau_gap"] == whole["tau_gap"] == SEEN[6]
    assert watch.onset["level"] == whole["level"] == 1
    assert f"{SEEN[6]:,}" in watch.message()
    # With the ratio tau_mem / tau_gap the message also says where memorization is expected.
    ratio_watch = GapWatch(ratio=3.0)
    for e in range(E):
        ratio_watch.add(SEEN[e], tr[e], ho[e])
    assert f"{SEEN[6] * 3:,}" in ratio_watch.message()
    # Curves that never part: never an onset.
    quiet = GapWatch()
    for e, (a, b) in enumerate(zip(*_curves(rng))):
        assert quiet.add(SEEN[e], a, b) is None


def test_weights_that_stop_changing():
    """Evaluations after e0 repeat e0's per-item losses exactly (a model that stopped changing).
    Each evaluation's z and relative gap depend only on it and the first one, so repeats copy
    e0's: an onset found by e0 stays where it was; with none by e0, the repeats confirm one at e0
    exactly when e0's gap is open (z above the threshold and relative gap >= RHO at one level),
    and none otherwise."""
    rng = np.random.default_rng(6)
    e0 = 12

    def frozen(tr, ho):
        tr, ho = tr.copy(), ho.copy()
        tr[e0 + 1:], ho[e0 + 1:] = tr[e0], ho[e0]
        return tr, ho

    cases = {"before": _curves(rng, step_at=5, size=1.0), "at e0": _curves(rng, step_at=e0, size=1.0),
             "none": _curves(rng)}
    for name, (tr, ho) in cases.items():
        tr, ho = frozen(tr, ho)
        first = gap_onset(SEEN[:e0 + 1], tr[:e0 + 1], ho[:e0 + 1])
        stat_e0 = first["z"][e0]
        open_e0 = bool(np.any((gap_z(tr, ho)[e0] > first["z_threshold"]) & (relative_gap(tr, ho)[e0] >= RHO)))
        for m in range(e0 + 2, E + 1):
            o = gap_onset(SEEN[:m], tr[:m], ho[:m])
            np.testing.assert_array_equal(o["z"][e0:], stat_e0)
            if not first["censored"]:
                assert o["tau_gap"] == first["tau_gap"], name
            elif open_e0:
                assert o["tau_gap"] == SEEN[e0], name
            else:
                assert o["censored"], name
        # Each case exercises the branch it is named after.
        assert {"before": not first["censored"],
                "at e0": first["censored"] and open_e0,
                "none": first["censored"] and not open_e0}[name]
    # Weights that never changed at all: every evaluation equals the first, nothing opens.
    tr, ho = _curves(rng)
    tr[:], ho[:] = tr[0], ho[0]
    o = gap_onset(SEEN, tr, ho)
    assert o["censored"] and np.all(o["z"] == 0)


def test_relative_gap_by_hand():
    # one evaluation, two levels; three training items and two held-out ones (unequal batches:
    # a ratio of means, not a mean of per-item ratios)
    tr = np.array([[[0.1, 0.2, 0.6], [1.0, 1.0, 1.0]]])
    ho = np.array([[[0.6, 1.0], [0.5, 1.5]]])
    # level 0: 1 - 0.3 / 0.8; level 1: the same means, no gap
    np.testing.assert_allclose(relative_gap(tr, ho), [[1 - 0.3 / 0.8, 0.0]], rtol=1e-12, atol=1e-15)
    # the training items denoised perfectly: 1; the held-out ones better: negative
    np.testing.assert_allclose(relative_gap(np.zeros((2, 1, 3)), np.ones((2, 1, 2))), [[1.0], [1.0]])
    assert relative_gap(np.full((1, 1, 2), 2.0), np.ones((1, 1, 2)))[0, 0] == -1.0
    # the result's relative: its largest level per evaluation
    rng = np.random.default_rng(7)
    tr, ho = _curves(rng, step_at=5, size=1.0)
    by_hand = [[1 - tr[e, lv].sum() / N / (ho[e, lv].sum() / N) for lv in range(L)] for e in range(E)]
    np.testing.assert_allclose(gap_onset(SEEN, tr, ho)["relative"], np.max(by_hand, axis=1), rtol=1e-12)


def test_a_significant_but_small_gap_is_no_onset():
    """2,000 items per batch: from evaluation 8 on the training losses at level 2 are 10% below
    what they were, a rise of the gap of many standard errors but a relative gap near 0.1: no
    onset, by the whole run or online, and the bracket says the relative gap never reached RHO
    (every evaluation significantly below it). The rule's rho lowered to 0.05 (a parameter of
    each) finds it; the same curves with the training losses there cut to 0.4 of
    theirs (relative gap near 0.6) are an onset at evaluation 8 at the default RHO."""
    rng = np.random.default_rng(8)
    step_at, level, n = 8, 2, 2000
    tr, ho = _curves(rng, n_train=n, n_held=n)
    small, large = tr.copy(), tr.copy()
    small[step_at:, level] *= 0.9
    large[step_at:, level] *= 0.4
    o = gap_onset(SEEN, small, ho)
    z, rel = gap_z(small, ho), relative_gap(small, ho)
    assert np.all(z[step_at:, level] > o["z_threshold"]) and z[step_at, level] > 5 * o["z_threshold"]
    assert np.all((rel[step_at:, level] > 0.05) & (rel[step_at:, level] < 0.15))
    assert o["censored"] and not o["open_at_start"] and np.isnan(o["tau_gap"])
    watch = GapWatch()
    assert all(watch.add(SEEN[e], small[e], ho[e]) is None for e in range(E))
    assert onset_bracket(SEEN, small, ho) == (np.inf, np.inf)
    # rho is each one's parameter
    o = gap_onset(SEEN, small, ho, rho=0.05)
    assert o["tau_gap"] == SEEN[step_at] and o["level"] == level
    watch = GapWatch(rho=0.05)
    for e in range(E):
        watch.add(SEEN[e], small[e], ho[e])
    assert watch.onset["tau_gap"] == SEEN[step_at]
    assert onset_bracket(SEEN, small, ho, rho=0.05) == (SEEN[step_at], SEEN[step_at])
    # large in relative terms too: an onset
    o = gap_onset(SEEN, large, ho)
    assert np.all(relative_gap(large, ho)[step_at:, level] > RHO)
    assert o["tau_gap"] == SEEN[step_at] and o["level"] == level and not o["open_at_start"]


def test_a_gap_open_from_the_first_evaluation():
    """Training losses at level 4 at 0.3 of the held-out ones' size from the first evaluation on
    (relative gap near 0.7 throughout, its rise since the first evaluation nil): the gap opened
    before the first evaluation, tau_gap is the first one, a bound. One evaluation so at the start
    is not enough, nor a start below RHO."""
    rng = np.random.default_rng(9)
    tr, ho = _curves(rng)
    always = tr.copy()
    always[:, 4] *= 0.3
    o = gap_onset(SEEN, always, ho)
    assert np.all(relative_gap(always, ho)[:, 4] > RHO) and np.all(gap_z(always, ho)[1:, 4] < threshold(L))
    assert o["open_at_start"] and not o["censored"]
    assert o["tau_gap"] == SEEN[0] and o["index"] == 0 and o["level"] == 4
    # online: known at the second evaluation, the first that can show it
    watch = GapWatch()
    assert watch.add(SEEN[0], always[0], ho[0]) is None
    got = watch.add(SEEN[1], always[1], ho[1])
    assert got is watch.onset and got["open_at_start"] and got["tau_gap"] == SEEN[0]
    for e in range(2, E):
        watch.add(SEEN[e], always[e], ho[e])
    assert watch.onset is got
    # above RHO at the first evaluation only, or at the second only: not open at the start
    for e in (0, 1):
        once = tr.copy()
        once[e, 4] *= 0.3
        rel = relative_gap(once, ho)
        assert rel[e, 4] > RHO and rel[1 - e].max() < RHO
        assert not gap_onset(SEEN, once, ho)["open_at_start"]
    # curves that never part: not open at the start
    assert not gap_onset(SEEN, tr, ho)["open_at_start"]


def _relative_by_loop(tr, ho):
    """``1 - mean r / mean h`` per evaluation and level and its delta-method standard error,
    written out item by item: the gradient of 1 - r / h is (-1 / h, r / h^2), the two means are
    independent, each with variance (sample variance, ddof 1) / n."""
    rel, se = np.zeros(tr.shape[:2]), np.zeros(tr.shape[:2])
    for e in range(tr.shape[0]):
        for lv in range(tr.shape[1]):
            a, b = list(tr[e, lv]), list(ho[e, lv])
            r, h = sum(a) / len(a), sum(b) / len(b)
            var_r = sum((x - r) ** 2 for x in a) / (len(a) - 1) / len(a)
            var_h = sum((x - h) ** 2 for x in b) / (len(b) - 1) / len(b)
            rel[e, lv] = 1 - r / h
            se[e, lv] = (var_r / h ** 2 + r ** 2 * var_h / h ** 4) ** 0.5
    return rel, se


def _bracket_by_walk(seen, tr, ho, level=0.95, rho=RHO, tau=None):
    """The bracket as a walk over the evaluations: each evaluation at which every level's relative
    gap is significantly below rho moves the lower end past it; the first at which some level's
    is significantly above ends the walk there (the upper end). Each level's two-sided bound at
    ``level``, Bonferroni over the levels. tau widens it."""
    rel, se = _relative_by_loop(tr, ho)
    n_lev = tr.shape[1]
    zb = sps.norm.ppf(1 - (1 - level) / 2 / n_lev)
    lo_at, hi_at = 0, None
    for e in range(len(seen)):
        if any(rel[e, lv] - zb * se[e, lv] > rho for lv in range(n_lev)):
            hi_at = e
            break
        if all(rel[e, lv] + zb * se[e, lv] < rho for lv in range(n_lev)):
            lo_at = e + 1
    lo = float(seen[lo_at]) if lo_at < len(seen) else np.inf
    hi = float(seen[hi_at]) if hi_at is not None else np.inf
    if tau is not None and not np.isnan(tau):
        lo, hi = min(lo, tau), max(hi, tau)
    return lo, hi


def _with_relative(rng, target, level=2, n_train=32, n_held=17):
    """Curves (unequal batches) whose training losses at ``level`` are scaled per evaluation so
    that the relative gap there is ``target`` (E,) exactly; the other levels as drawn (near 0)."""
    tr, ho = _curves(rng, n_train=n_train, n_held=n_held)
    r, h = tr[:, level].mean(-1), ho[:, level].mean(-1)
    tr[:, level] *= ((1 - np.asarray(target, float)) * h / r)[:, None]
    return tr, ho


def test_relative_se_equals_the_delta_method_written_out():
    rng = np.random.default_rng(10)
    tr, ho = _with_relative(rng, np.linspace(0, 0.9, E))
    rel, se = _relative_by_loop(tr, ho)
    np.testing.assert_allclose(relative_gap(tr, ho), rel, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(relative_se(tr, ho), se, rtol=1e-10)
    assert se.min() > 0.01  # the loop is not comparing zeros
    # and it is the spread of the relative gap over fresh draws of the items: 4,000 draws of one
    # evaluation (a training loss at 0.4 of the held-out one, log-normal items), their standard
    # deviation against the mean standard error
    d = rng.lognormal(0, 0.5, (4000, 1, 2, 40))
    tr1, ho1 = 0.4 * d[..., 0, :], d[..., 1, :]
    spread = relative_gap(tr1, ho1).std()
    assert abs(relative_se(tr1, ho1).mean() / spread - 1) < 0.05


def test_onset_bracket_equals_a_walk_over_the_evaluations():
    """Relative gaps set per evaluation at level 0 or 2 (the others near 0), 32 training and 17
    held-out items: a level's bound at 0.95 over 6 levels is at most +-0.3 here at a relative gap
    of 0, +-0.15 at 1/2, so 0.2 is significantly below 1/2, 0.75 above, and 1/2 itself neither."""
    rng = np.random.default_rng(11)
    up = np.r_[np.zeros(8), 0.1, 0.2, 0.5, 0.5, 0.75, np.full(E - 13, 0.9)]
    # a bump to 1/2 (neither below nor above) between gaps near 0, another just before the rise
    bump = np.r_[np.zeros(5), 0.5, 0.5, 0, 0, 0, 0.5, np.full(E - 11, 0.9)]
    # a bump well above 1/2, back to 0, then the rise: the bracket ends at the bump
    early = np.r_[np.zeros(5), 0.9, np.zeros(9), np.full(E - 15, 0.9)]
    # 1/2 exactly from evaluation 12 on: never significantly above
    flat = np.r_[np.zeros(12), np.full(E - 12, 0.5)]
    cases = {"up": (up, (10, 12)), "bump": (bump, (10, 11)), "early": (early, (5, 5)), "flat": (flat, (12, None)),
             "below": (np.full(E, 0.1), (None, None))}
    for name, (target, (lo_at, hi_at)) in cases.items():
        for lv in (0, 2):
            tr, ho = _with_relative(rng, target, level=lv)
            got = onset_bracket(SEEN, tr, ho)
            assert got == _bracket_by_walk(SEEN, tr, ho), name
            # where the walk stops on these curves: known from the gaps set, not only by the walk
            want = tuple(float(SEEN[i]) if i is not None else np.inf for i in (lo_at, hi_at))
            assert got == want, name
            # narrower bounds (level 0.6) or another rho: the walk still agrees
            assert onset_bracket(SEEN, tr, ho, level=0.6) == _bracket_by_walk(SEEN, tr, ho, level=0.6), name
            assert onset_bracket(SEEN, tr, ho, rho=0.3) == _bracket_by_walk(SEEN, tr, ho, rho=0.3), name
    # the rise holds the first evaluation at which the relative gap reaches 1/2
    assert np.argmax(up >= RHO) == 10
    # tau_gap is kept inside: outside the bracket it widens it, inside it changes nothing
    tr, ho = _with_relative(rng, up)
    lo, hi = onset_bracket(SEEN, tr, ho)
    for tau in (SEEN[3], SEEN[11], SEEN[20], np.nan, None):
        got = onset_bracket(SEEN, tr, ho, tau=tau)
        assert got == _bracket_by_walk(SEEN, tr, ho, tau=tau)
    assert onset_bracket(SEEN, tr, ho, tau=SEEN[3]) == (SEEN[3], hi)
    assert onset_bracket(SEEN, tr, ho, tau=SEEN[20]) == (lo, SEEN[20])
    assert onset_bracket(SEEN, tr, ho, tau=SEEN[11]) == (lo, hi) == (SEEN[10], SEEN[12])
    tr, ho = _with_relative(rng, flat)
    assert onset_bracket(SEEN, tr, ho, tau=SEEN[20]) == (SEEN[12], np.inf)


def _coverage_world(rng, rate, noise, start=8, n=32):
    """One simulated run: items of their own difficulty (log-normal), a loss that falls by half
    over training for both sets alike, per-evaluation noise of each item's loss (relative), and
    from evaluation ``start`` on the expected training loss at level 0 below the held-out one by
    ``rate`` more per evaluation (down to 5% of it). Returns the curves and the truth: the first
    evaluation whose expected relative gap reaches RHO."""
    d_tr, d_ho = rng.lognormal(0, 0.5, (2, 1, L, n))
    drift = np.linspace(1, 0.5, E)[:, None, None]
    frac = np.clip(1 - rate * np.clip(np.arange(E) - start + 1, 0, None), 0.05, 1)
    mult = np.ones((E, L, 1))
    mult[:, 0, 0] = frac
    tr = d_tr * drift * mult * (1 + noise * rng.standard_normal((E, L, n)))
    ho = d_ho * drift * (1 + noise * rng.standard_normal((E, L, n)))
    return tr, ho, int(np.argmax(1 - frac >= RHO))


def test_the_bracket_holds_a_known_onset():
    """150 simulated runs in each of two worlds (the gap growing by 0.15 or by 0.5 of the held-out
    loss per evaluation, item noise 0.3): the bracket holds the truth in at least 90% of them.
    tau_gap alone, as a bracket (tau, tau), holds it in far fewer: the rule finds the onset an
    evaluation or two early or late, and the bracket's width is what covers that."""
    rng = np.random.default_rng(12)
    runs = 150
    point = 0
    for rate, truth_at in ((0.15, 11), (0.5, 8)):
        held = 0
        for _ in range(runs):
            tr, ho, true = _coverage_world(rng, rate, 0.3)
            assert true == truth_at
            tau = gap_onset(SEEN, tr, ho)["tau_gap"]
            lo, hi = onset_bracket(SEEN, tr, ho, tau=tau)
            held += lo <= SEEN[true] <= hi
            point += tau == SEEN[true]
        assert held / runs >= 0.9, rate
    assert point / (2 * runs) < 0.7


def test_open_at_start_needs_a_significant_gap():
    """200 runs of 32 items per set with log-normal difficulties, whose expected relative gap at
    one level is RHO itself from the start: the training batch is easier by chance in many of
    them, its relative gap above RHO at both first evaluations (the items' difficulty persists),
    but that is not significant and none is open at the start. At 0.8 (a training loss at a
    fifth of the held-out one) nearly every run is."""
    rng = np.random.default_rng(13)
    runs = 200

    def start(mult):
        d_tr, d_ho = rng.lognormal(0, 0.5, (2, 1, L, 32))
        m = np.ones((1, L, 1))
        m[0, 0, 0] = mult
        tr = d_tr * m * (1 + 0.3 * rng.standard_normal((2, L, 32)))
        ho = d_ho * (1 + 0.3 * rng.standard_normal((2, L, 32)))
        above = bool((relative_gap(tr, ho) >= RHO).any(axis=1).all())
        return above, gap_onset(SEEN[:2], tr, ho)["open_at_start"]

    at_rho = [start(0.5) for _ in range(runs)]
    assert sum(a for a, _ in at_rho) / runs > 0.25
    assert sum(o for _, o in at_rho) / runs <= 0.02
    large = [start(0.2) for _ in range(runs)]
    assert sum(o for _, o in large) / runs >= 0.95
