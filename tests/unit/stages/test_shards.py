"""Sharded parts: a unit of a streaming stage is several parts, and completeness counts them.
No Ray here: parts are written by hand as the actors write them."""

import numpy as np

from raystudy import tables
from raystudy.axes import Unit
from raystudy.config import load_config
from raystudy.stages import shards as stage_shards
from raystudy.stages.shards import shard_meta, shard_name, sharded_stored, shards, shards_to_write
from raystudy.study import STAGES
from tests.conftest import TINY


def _stage(name):
    st = STAGES[name]
    if st.stored is None:  # until study.py plugs the sharded parts in
        import dataclasses

        st = dataclasses.replace(st, stored=sharded_stored({"generate": "samples", "knn": "neighbors"}[name]))
    return st


def _write(study, name, part, meta):
    t = tables.SCHEMAS[name].empty_table().replace_schema_metadata(meta)
    return tables.write_part(study, name, part, t)


def _shard_names(cfg, unit, rows):
    base = STAGES["generate"].part(unit)
    return [shard_name(base, i, s) for s in ("eval", "ref") for i, _, _ in shards(cfg.generate.n_samples, rows)]


def test_shards_cover_every_row_once():
    assert shards(7, 3) == [(0, 0, 3), (1, 3, 6), (2, 6, 7)]
    assert shards(6, 10_000) == [(0, 0, 6)]
    for n, r in ((50_000, 10_000), (10_001, 10_000), (1, 5)):
        cover = np.concatenate([np.arange(lo, hi) for _, lo, hi in shards(n, r)])
        np.testing.assert_array_equal(cover, np.arange(n))


def test_a_unit_is_complete_only_when_all_its_parts_agree(tmp_path):
    cfg = load_config(TINY)
    gen = _stage("generate")
    unit = Unit(2, 0)
    names = _shard_names(cfg, unit, 4)  # n_samples 6 in parts of 4: 2 per set
    meta = shard_meta(gen.meta(cfg, unit), len(names), 4)
    assert len(names) == 4 and names[0] == "K2-s0-eval-00000"
    assert unit in [t.unit for t in gen.missing(cfg, tmp_path)]
    for n in names[:-1]:
        _write(tmp_path, "samples", n, meta)
    # One shard short: still missing (the stage redoes only that shard, see below).
    assert [(t.unit, t.why) for t in gen.missing(cfg, tmp_path) if t.unit == unit] == [(unit, "missing")]
    last = _write(tmp_path, "samples", names[-1], meta)
    assert unit not in [t.unit for t in gen.missing(cfg, tmp_path)]
    # Stale: every part carries the fingerprint, so a changed upstream key is named.
    todo = gen.missing(load_config(TINY, ["generate.steps=7"]), tmp_path)
    assert (unit, "stale (generate.steps: 4 -> 7)") in [(t.unit, t.why) for t in todo]
    # Parts cut two ways (a crash, then a re-run with another part size) are not complete.
    _write(tmp_path, "samples", shard_name("K2-s0", 2, "eval"), shard_meta(gen.meta(cfg, unit), 6, 2))
    assert unit in [t.unit for t in gen.missing(cfg, tmp_path)]
    # The other K is untouched by all this: K2's files never match K20's or s01's.
    _write(tmp_path, "samples", "K2-s01-eval-00000", meta)
    assert sorted(stage_shards._unit_files(tmp_path, "samples", "K2-s0")) == sorted(names + ["K2-s0-eval-00002"])
    assert last.exists()


def test_only_absent_shards_are_written_and_nothing_else_of_the_unit_survives(tmp_path):
    cfg = load_config(TINY)
    gen = _stage("generate")
    unit = Unit(16, 0)
    names = _shard_names(cfg, unit, 4)
    meta = shard_meta(gen.meta(cfg, unit), len(names), 4)
    kept = _write(tmp_path, "samples", names[0], meta)
    mtime = kept.stat().st_mtime_ns
    old = load_config(TINY, ["generate.steps=7"])
    stale = _write(tmp_path, "samples", names[1], shard_meta(gen.meta(old, unit), len(names), 4))
    other_cut = _write(tmp_path, "samples", "K16-s0-ref-00007", shard_meta(gen.meta(cfg, unit), 16, 1))
    temp = tables.table_dir(tmp_path, "samples") / ".part-K16-s0-eval-00001.parquet.0123456789ab.tmp"
    temp.write_bytes(b"half a file")
    neighbour = _write(tmp_path, "samples", "K16-s01-eval-00000", meta)  # another unit: left alone
    todo = shards_to_write(tmp_path, "samples", "K16-s0", names, meta)
    assert todo == names[1:]
    assert kept.exists() and kept.stat().st_mtime_ns == mtime
    assert not any(p.exists() for p in (stale, other_cut, temp))
    assert neighbour.exists()


