"""The paper-scale rehearsal's world (benchmarks/rehearsal.py), small: imported samples whose labels
are known by construction go through import-samples, knn (l2 and lpips-alex, top-5, d_train and
d_synth), classify and the figures on a real local Ray, and every label must be the known one."""

import sys

import numpy as np

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_every_label_is_the_one_built_in(tmp_path, ray_local):
    import rehearsal

    from raystudy.config import load_config
    from raystudy.importing import import_samples
    from raystudy.study import run

    work = tmp_path / "w"
    truth = rehearsal.make_world(work, k=1500, n=700, files=3)
    assert {s: int((truth == s).sum()) for s in rehearsal.LABELS} == {"memorized": 210, "spurious": 140,
                                                                    "generalized": 350}
    cfg = load_config(work / "rehearsal.yaml", ["generate.part_size=300"])
    import_samples(cfg, work / "study", 1500, 0, work / "eval", work / "ref")
    run(cfg, work / "study", echo=lambda line: None)
    got = rehearsal.check(work, truth)
    for metric in ("l2", "lpips-alex"):
        assert got[metric]["n"] == 700 and got[metric]["wrong"] == 0, got[metric]
    # The null against a brute force written in the benchmark (direct differences, float64).
    null = got["null_l2"]
    assert np.isclose(null["memorized"], null["stored_memorized"]) and np.isclose(null["spurious"],
                                                                                  null["stored_spurious"])
    assert (work / "study" / "figures").is_dir()
