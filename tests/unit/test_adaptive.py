"""The adaptive K sweep (raystudy.adaptive) on a known-crossing world.

The stage runner is replaced by the world itself: for every K of the round's config that has
no fractions yet, it writes the fractions the stages would (binomial draws of n = 200 around a
logistic in ln K with a known crossing), seeded by K so a K has one answer however it is
reached, and counts the trainings. Everything else (proposals, sweep.json, resume) is the
real code. Seconds, no Ray.
"""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import special

from raystudy import adaptive, tables
from raystudy.config import ConfigError, from_dict

N = 200


class World:
    def __init__(self, k_star, w, seed=0):
        self.k_star, self.w, self.seed, self.trained = k_star, w, seed, []

    def fractions(self, k):
        rng = np.random.default_rng([self.seed, int(k)])
        f = special.expit((np.log(self.k_star) - np.log(k)) / self.w)
        mem, rat = rng.binomial(N, f) / N, rng.binomial(N, f) / N
        spur = rng.binomial(N, 0.05 * np.exp(-np.log(k / self.k_star) ** 2)) / N
        return {"K": [k], "seed": [0], "metric": ["l2"], "n": [N], "memorized": [mem], "spurious": [min(spur, 1 - mem)],
                "generalized": [max(0.0, 1 - mem - spur)], "ratio_memorized": [rat]}

    def run(self, cfg, study_dir, dry_run=False, echo=print, only=None):
        have = set(tables.read_pandas(study_dir, "fractions")["K"]) if (study_dir / "tables").exists() else set()
        for k in cfg.ks:
            if k not in have:
                tables.write_part(study_dir, "fractions", f"K{k}", tables.to_table("fractions", self.fractions(k)))
                self.trained.append(k)


def _cfg(**sweep):
    return from_dict({"sweep": {"enabled": True, "k_min": 2, "k_max": 1797, "initial": 4, "rounds": 6,
                                "per_round": 2, "target_ratio": 1.25, **sweep}})


def test_sweep_config_is_validated():
    for sweep, needle in (({"k_min": 10, "k_max": 5}, "sweep.k_max"), ({"initial": 1}, "sweep.initial"),
                          ({"target_ratio": 1.0}, "sweep.target_ratio"), ({"metric": "lpips-alex"}, "sweep.metric"),
                          ({"rounds": -1}, "sweep.rounds"), ({"bogus": 1}, "unknown key")):
        with pytest.raises(ConfigError, match=needle):
            from_dict({"sweep": {"enabled": True, **sweep}})
    assert from_dict({}).sweep.enabled is False


def test_initial_ks_are_log_spaced_and_distinct():
    assert adaptive.initial_ks(2, 1797, 4) == [round(2 * (1797 / 2) ** (i / 3)) for i in range(4)] == [2, 19, 186, 1797]
    assert adaptive.initial_ks(1, 10, 10) == list(range(1, 11))  # rounding merges: next free integers
    ks = adaptive.initial_ks(2, 1797, 12)
    assert len(ks) == 12 and np.allclose(np.diff(np.log(ks)), np.log(1797 / 2) / 11, atol=0.15)


def _sweep(tmp_path, k_star, w, **sweep):
    world = World(k_star, w)
    d = tmp_path / f"s{k_star:.0f}-{w}"
    adaptive.run_sweep(_cfg(**sweep), d, echo=lambda *a: None, run_stages=world.run)
    return world, json.loads((d / "sweep.json").read_text()), d


def _uniform_width(k_star, w, n_k):
    world = World(k_star, w)
    ks = adaptive.initial_ks(2, 1797, n_k)
    fr = pd.concat([pd.DataFrame(world.fractions(k)) for k in ks], ignore_index=True)
    row = adaptive.summarize(fr, "l2")
    return adaptive.width(row), row


@pytest.mark.parametrize("w", [0.15, 1.0], ids=["sharp", "broad"])
def test_adaptive_sweep_finds_the_crossing_with_fewer_trainings_than_a_uniform_grid(tmp_path, w):
    hits, adaptive_n, uniform_n = 0, [], []
    for k_star in (45.0, 90.0, 300.0):
        world, rec, _ = _sweep(tmp_path, k_star, w)
        last = rec["rounds"][-1]
        assert last["k_cross_lo"] is not None and last["k_cross_hi"] is not None
        hits += last["k_cross_lo"] <= k_star <= last["k_cross_hi"]
        assert len(world.trained) == len(set(world.trained)) == last["trainings"]
        # the uniform log grid over the same range that first reaches the adaptive sweep's width
        n_k = next(n for n in range(4, 80) if _uniform_width(k_star, w, n)[0] <= last["width"])
        adaptive_n.append(last["trainings"])
        uniform_n.append(n_k)
        assert last["stop"].startswith("crossing's width"), last["stop"]
    assert hits == 3
    assert sum(adaptive_n) < sum(uniform_n), (adaptive_n, uniform_n)
    print(f"w={w}: adaptive trainings {adaptive_n}, uniform grid for the same width {uniform_n}")


def test_sweep_json_records_each_round_and_why(tmp_path):
    world, rec, d = _sweep(tmp_path, 60.0, 0.15)
    assert rec["sweep"]["per_round"] == 2 and rec["metric"] == "l2"
    r0 = rec["rounds"][0]
    assert r0["ks"] == [2, 19, 186, 1797] and r0["round"] == 0
    for a, b in zip(rec["rounds"], rec["rounds"][1:]):
        assert b["ks"] == sorted(set(a["ks"]) | {p["K"] for p in a["next"]})
        assert all(p["reason"] for p in a["next"]) and a["stop"] is None
        # each crossing K proposed lies inside the interval the round reported
        for p in a["next"]:
            if p["reason"].startswith("crossing"):
                assert a["k_cross_lo"] < p["K"] < (a["k_cross_hi"] or np.inf)
    # the interval narrows (the honest width never grows)
    widths = [r["width"] or np.inf for r in rec["rounds"]]
    assert widths[-1] < widths[0] and widths[-1] <= 1.25


def test_a_resumed_sweep_proposes_the_same_k(tmp_path):
    _, whole, _ = _sweep(tmp_path / "a", 60.0, 1.0)

    class Interrupted(Exception):
        pass

    world = World(60.0, 1.0)
    calls = []

    def stop_in_round_2(cfg, study_dir, **kw):
        calls.append(tuple(cfg.ks))
        if len(calls) == 3:
            raise Interrupted
        world.run(cfg, study_dir)

    d = tmp_path / "b"
    with pytest.raises(Interrupted):
        adaptive.run_sweep(_cfg(), d, echo=lambda *a: None, run_stages=stop_in_round_2)
    n_before = len(world.trained)
    adaptive.run_sweep(_cfg(), d, echo=lambda *a: None, run_stages=world.run)
    resumed = json.loads((d / "sweep.json").read_text())
    strip = lambda rec: [(r["ks"], r["next"], r["stop"]) for r in rec["rounds"]]
    assert len(whole["rounds"]) >= 4 and strip(resumed) == strip(whole)
    # the rounds already run were not trained again
    assert len(world.trained) == len(set(world.trained)) == whole["rounds"][-1]["trainings"] > n_before


def test_propose_is_a_plain_function_of_the_summary_row():
    row = {"k_cross": 48.6, "k_cross_lo": 44.1, "k_cross_hi": 54.0, "k_cross_bracket_lo": 32.0,
           "k_cross_bracket_hi": 128.0, "k_cross_resolved": False, "emm": 33.2, "emm_lo": 30.0, "emm_hi": 36.9,
           "emm_bracket_lo": 8.0, "emm_bracket_hi": 128.0, "emm_resolved": True, "spurious_peak_k": 32,
           "spurious_peak_k_lo": 0.0, "spurious_peak_k_hi": np.inf}
    grid = [2, 8, 32, 128, 512, 1797]
    # 2 K evenly in log inside the crossing's interval; EMM's interval (x1.23) is narrow enough, so
    # the third goes beside the spurious peak, on its wider side (32 to K_max), at the log midpoint
    new, stop = adaptive.propose(row, grid, 2, 1797, 3, 1.25)
    want = [round(44.1 * (54.0 / 44.1) ** (i / 3)) for i in (1, 2)] + [round(np.sqrt(32 * 1797.5))]
    assert stop is None and [p["K"] for p in new] == want == [47, 50, 240]
    assert "no grid K between 32 and 128" in new[0]["reason"] and new[2]["reason"].startswith("spurious peak")
    # EMM unresolved (its bracket 8..128 is x16): the third goes inside EMM's interval instead
    new, _ = adaptive.propose(dict(row, emm_resolved=False), grid, 2, 1797, 3, 1.25)
    assert [p["K"] for p in new] == [round(np.sqrt(30 * 36.9)), 47, 50] and new[0]["reason"].startswith("EMM")
    # the fit's interval alone (x1.22) would stop the sweep; the bracket (x4) does not, until a K is inside
    assert adaptive.width(row) == 4.0
    done = dict(row, k_cross_resolved=True)
    assert adaptive.propose(done, [2, 8, 32, 46, 128], 2, 1797, 2, 1.25) == \
        ([], "crossing's width x1.22 <= target x1.25")


def test_the_report_shows_the_sweep(tmp_path):
    from raystudy.analysis import report

    _, rec, d = _sweep(tmp_path, 60.0, 1.0)
    page = report.write_report([d], tmp_path / "r", n_boot=50, echo=lambda *a: None).read_text()
    assert "Adaptive K sweep" in page
    for r in rec["rounds"]:
        assert ", ".join(map(str, r["ks"])) in page
        for p in r["next"]:
            assert f"K = {p['K']}: " in page
    assert rec["rounds"][-1]["stop"].replace("<", "&lt;") in page  # the table escapes < (and & >), not quotes


def test_demo_adaptive_config_loads():
    from raystudy.config import load_config
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "configs" / "demo-adaptive.yaml")
    # The range is all digits can give after the held-out split, and the first K are log-spaced over it.
    assert cfg.sweep.k_max == 1797 - cfg.data.held_out
    first = adaptive.initial_ks(cfg.sweep.k_min, cfg.sweep.k_max, cfg.sweep.initial)
    assert cfg.sweep.enabled and first[0] == cfg.sweep.k_min and first[-1] == cfg.sweep.k_max
    assert len(first) == cfg.sweep.initial and np.ptp(np.diff(np.log(first))) < 0.1
    # as cheap as the demo: no more trainings than the demo's grid has K
    demo = load_config(ROOT / "configs" / "demo.yaml")
    assert cfg.sweep.initial + cfg.sweep.rounds * cfg.sweep.per_round <= len(demo.ks) * len(demo.seeds)




def test_the_report_reads_the_sweep_the_loop_wrote(tmp_path):
    from raystudy.analysis.report import sweep_html

    _, rec, d = _sweep(tmp_path, 60.0, 0.15)
    assert tables.read_sweep(d) == rec
    page = sweep_html(d)
    at = [page.find(f"<td>{', '.join(map(str, r['ks']))}</td>") for r in rec["rounds"]]
    assert len(at) > 1 and 0 < at[0] and at == sorted(at)  # a row per round, in order
    # a study without a sweep, and a sweep.json cut short: no record, no section
    assert tables.read_sweep(tmp_path / "none") is None and sweep_html(tmp_path / "none") == ""
    (d / "sweep.json").write_text(json.dumps(rec)[:100])
    assert tables.read_sweep(d) is None and sweep_html(d) == ""
