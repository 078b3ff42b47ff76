"""The one rule of the stage mechanism, on real Parquet parts and without Ray."""

import json

import numpy as np

from raystudy import tables
from raystudy.axes import Unit
from raystudy.config import load_config
from raystudy.study import STAGES, plan_lines
from tests.conftest import TINY


def _write(study, stage, cfg, unit):
    """The unit's parts as its stage writes them: streaming stages one shard per set."""
    from raystudy.stages.shards import shard_meta, shard_name

    sets = {"generate": ("eval", "ref"), "knn": (None,)}.get(stage.name)
    meta = stage.meta(cfg, unit)
    parts = ({stage.part(unit): meta} if sets is None else
             {shard_name(stage.part(unit), 0, s): shard_meta(meta, len(sets), cfg.generate.part_size) for s in sets})
    for name in stage.writes:
        for part, m in parts.items():
            tables.write_part(study, name, part, tables.SCHEMAS[name].empty_table().replace_schema_metadata(m))


def test_units_are_missing_fresh_or_stale_with_the_key_that_changed(tmp_path):
    cfg = load_config(TINY)
    knn = STAGES["knn"]
    assert [t.why for t in knn.missing(cfg, tmp_path)] == ["missing", "missing"]
    for u in knn.units(cfg):
        _write(tmp_path, knn, cfg, u)
    assert knn.missing(cfg, tmp_path) == []
    # Upstream keys are part of the fingerprint: a sampler change makes neighbours stale...
    todo = knn.missing(load_config(TINY, ["generate.steps=7"]), tmp_path)
    assert [t.why for t in todo] == ["stale (generate.steps: 4 -> 7)"] * 2
    # ... a training change too; a resource change or a new threshold does not.
    assert f"train.lr: {load_config(TINY).train.lr} -> 0.5" in knn.missing(load_config(TINY, ["train.lr=0.5"]), tmp_path)[0].why
    for harmless in ("train.cpus_per_trial=2", "knn.workers=1", "knn.batch_size=3", "classify.delta_m.l2=0.5",
                     "generate.workers=1", "train.checkpoint_every=64", "ray.num_cpus=1", "study.name=other"):
        assert knn.missing(load_config(TINY, [harmless]), tmp_path) == [], harmless
    # More K: only the new units are missing.
    more = load_config(TINY, ["ks=[2, 16, 64]"])
    assert [(t.unit, t.why) for t in knn.missing(more, tmp_path)] == [(Unit(64, 0, "l2"), "missing")]


def test_classify_depends_on_its_own_metrics_thresholds_only(tmp_path):
    cfg = load_config(TINY, ["knn.metrics=[l2, lpips-alex]"])
    cl = STAGES["classify"]
    for u in cl.units(cfg):
        _write(tmp_path, cl, cfg, u)
    todo = cl.missing(load_config(TINY, ["knn.metrics=[l2, lpips-alex]", "classify.delta_m.lpips-alex=0.05"]), tmp_path)
    assert sorted(t.unit for t in todo) == [Unit(2, 0, "lpips-alex"), Unit(16, 0, "lpips-alex")]
    old = load_config(TINY).classify.delta_m["lpips-alex"]
    assert todo[0].why == f"stale (classify.delta_m.lpips-alex: {old} -> 0.05)"
    meta = tables.part_meta(tmp_path, "labels", "lpips-alex-K2-s0")
    deps = json.loads(meta["depends"])
    assert deps["classify.delta_m.lpips-alex"] == old and "classify.delta_m.l2" not in deps
    assert deps["knn.k"] == 3 and deps["train.lr"] == 0.002


def test_dry_run_lines_name_reads_writes_and_reasons(tmp_path):
    cfg = load_config(TINY)
    for st in (STAGES["train"], STAGES["generate"]):
        for u in st.units(cfg):
            _write(tmp_path, st, cfg, u)
    lines = plan_lines(load_config(TINY, ["generate.n_samples=9"]), tmp_path)
    assert lines[0] == "train: reads -; writes runs, train_log, loss_curves; 0 of 2 missing, 0 stale"
    assert lines[1].startswith("generate: reads runs; writes samples; 0 of 2 missing, 2 stale (recomputed): "
                               "2/0 stale (generate.n_samples: 6 -> 9)")
    assert lines[2] == "knn: reads samples; writes neighbors; 2 of 2 missing, 0 stale"
    assert np.all(["figures" in lines[-1]])


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    import pytest

    target = tmp_path / "x.txt"
    with pytest.raises(RuntimeError):
        with tables.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    tables.write_text(target, "whole")
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]
    # A folder is replaced whole.
    d = tmp_path / "d"
    for text in ("one", "two"):
        with tables.atomic_path(d) as tmp:
            tmp.mkdir()
            (tmp / "f").write_text(text)
    assert (d / "f").read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["d", "x.txt"]


def test_each_stage_books_the_workers_its_config_names():
    """What must fit the cluster before a stage runs is the stage's own fact, read from its config."""
    cfg = load_config(TINY, ["train.cpus_per_trial=3", "train.gpus_per_trial=0.5", "generate.cpus_per_worker=5",
                      "generate.gpus_per_worker=0.25", "knn.faiss_threads=7", "knn.gpus_per_worker=0.125"])
    got = {n: st.resources(cfg) for n, st in STAGES.items()}
    assert got["train"] == ("training trial", 3, 0.5)
    for n in ("generate", "basins", "energy"):
        assert got[n] == (f"{n} worker", 5, 0.25)
    assert got["knn"] == ("knn worker", 7, 0.125)
    assert got["classify"] == ("classify worker", 7, 0) and got["twins"] == ("twins worker", 7, 0)
    two = load_config(TINY, ["train.cpus_per_trial=4", "train.gpus_per_trial=1", "train.workers=2"])
    assert STAGES["train"].resources(two) == ("training worker", 2, 0.5)
