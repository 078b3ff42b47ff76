"""The adaptive K sweep over the real stage runner (tests/unit/test_adaptive.py replaces the runner
by a known-crossing world)."""

import json

from raystudy import adaptive, tables
from raystudy.config import from_dict


def test_a_real_sweep_runs_the_stages_and_resumes_without_recomputing(tiny_study, tmp_path):
    """The loop over the real stage runner, on a copy of the tiny study (K = 2, 16 done): round 0
    computes nothing new; whatever it proposes is trained by the real stages; a rerun trains
    nothing and records the same rounds."""
    import shutil

    cfg, out = tiny_study
    d = tmp_path / "tiny"
    shutil.copytree(out, d)
    sw = from_dict({**cfg.to_dict(), "sweep": {"enabled": True, "k_min": 2, "k_max": 16, "initial": 2, "rounds": 1,
                                               "per_round": 1, "target_ratio": 1.25}})
    lines = []
    adaptive.run_sweep(sw, d, echo=lines.append)
    rec = json.loads((d / "sweep.json").read_text())
    r0 = rec["rounds"][0]
    assert r0["ks"] == [2, 16]
    assert any(line.startswith("[train] complete, skipped") for line in lines[:12])
    fr = tables.read_pandas(d, "fractions")
    want = sorted(set(r0["ks"]) | {p["K"] for p in r0["next"]})
    assert sorted(fr["K"].unique()) == want
    assert tuple(want) == tuple(sorted(__import__("yaml").safe_load((d / "config.yaml").read_text())["ks"]))
    again = []
    adaptive.run_sweep(sw, d, echo=again.append)
    assert not any(x.endswith("to do (missing)") for x in again if x.startswith("[")), again
    strip = lambda rec: [(r["ks"], r["next"], r["stop"]) for r in rec["rounds"]]
    assert strip(json.loads((d / "sweep.json").read_text())) == strip(rec)
