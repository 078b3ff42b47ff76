"""The axes beside K and seed (raystudy.axes): snapshots, variants, twins -- without Ray."""

import json

import numpy as np
import pytest

from raystudy import axes, tables
from raystudy.config import load_config
from raystudy.errors import ConfigError, DataError
from raystudy.splits import held_out_indices, kset, kset_indices
from raystudy.study import STAGES, validate_against_data
from tests.conftest import TINY


def _weights(folder):
    from raystudy.models.unet import load_checkpoint as load_model

    return {k: v.detach().clone() for k, v in load_model(folder).state_dict().items()}


def test_snapshots_are_the_runs_own_ema_weights_and_change_nothing(tmp_path, digits):
    """A snapshot at s images is the EMA model of the same run stopped at s (an independent run
    with train.images = s), and the final model is the one of a run without snapshots."""
    from raystudy.compute.train import read_run, train_one

    cfg = load_config(TINY, ["train.images=256"])
    images = digits.images(kset(cfg, digits, axes.Axis(), 4))
    plain = train_one(cfg, images, 4, 0, tmp_path / "plain")
    snap = {128: (tmp_path / "snap-128", {"fingerprint": "x"})}
    with_snap = train_one(cfg, images, 4, 0, tmp_path / "with", state_path=tmp_path / ".state.pt", snapshots=snap)
    short = train_one(load_config(TINY, ["train.images=128"]), images, 4, 0, tmp_path / "short")
    assert with_snap["final_loss"] == plain["final_loss"] and with_snap["params"] == plain["params"] > 0
    a, b = _weights(tmp_path / "plain"), _weights(tmp_path / "with")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    s, c = _weights(tmp_path / "snap-128"), _weights(tmp_path / "short")
    assert all(np.array_equal(s[k].numpy(), c[k].numpy()) for k in s)
    assert not all(np.array_equal(s[k].numpy(), a[k].numpy()) for k in s)  # it did train on after the snapshot
    rec = read_run(tmp_path / "snap-128")
    assert rec["images_seen"] == 128 and rec["steps"] == 2 and rec["fingerprint"] == "x" and short["steps"] == 2
    # stop_at makes the snapshot alone (a snapshot added to a finished run): the same weights again.
    train_one(cfg, images, 4, 0, tmp_path / "unused", snapshots={128: (tmp_path / "again", {})}, stop_at=128)
    assert not (tmp_path / "unused").exists()
    g = _weights(tmp_path / "again")
    assert all(np.array_equal(g[k].numpy(), s[k].numpy()) for k in s)


def test_config_axes_are_validated_in_one_line():
    cases = {"variants={wide: {block_out_channel: [32, 64]}}": "variants.wide.block_out_channel: unknown model key",
             "variants={wide: {block_out_channels: [12, 24]}}": "variants.wide: model.block_out_channels must be "
                                                               "multiples of model.norm_num_groups",
             "variants={base: {layers_per_block: 2}}": "variants.base is the `model` section itself",
             "train.snapshots=[100]": "not a multiple of train.batch_size (64)",
             "train.snapshots=[384]": "not between 0 and train.images (384)"}
    for override, want in cases.items():
        with pytest.raises(ConfigError) as e:
            load_config(TINY, [override])
        assert want in str(e.value) and "\n" not in str(e.value), (override, str(e.value))
    cfg = load_config(TINY, ["train.snapshots=[256, 128, 256]", "variants={base: {}, wide: {block_out_channels: [32, 64]}}"])
    assert cfg.train.snapshots == (128, 256)
    assert cfg.for_variant("wide").model.block_out_channels == (32, 64) and cfg.model.block_out_channels == (16, 32)


def test_twins_need_two_disjoint_k_sets_before_the_held_out_split(digits):
    n, r = len(digits), 200
    with pytest.raises(DataError) as e:
        validate_against_data(load_config(TINY, ["ks=[2, 799]", "twins=true"]), digits)
    assert "2K = 1598" in str(e.value) and "1597" in str(e.value) and "\n" not in str(e.value)
    validate_against_data(load_config(TINY, ["ks=[2, 798]", "twins=true"]), digits)
    held = set(held_out_indices(n, r, 0).tolist())
    a, b = kset_indices(n, 798, 0, r, 0), kset_indices(n, 798, 0, r, 1)
    assert len(set(a) | set(b)) == 1596 and not (set(b) & held) and not (set(a) & held)
    # Nested like the study's own sets: the twin's smaller sets are its larger ones' first items.
    assert np.array_equal(kset_indices(n, 5, 0, r, 1), b[:5])


def test_default_axis_keeps_units_part_names_and_fingerprints():
    """A study without the new axes has the units, part names and dependencies it always had:
    every stage's fingerprint is the hash of the same keys and values."""
    cfg = load_config(TINY)
    assert STAGES["knn"].units(cfg) == [axes.Unit(2, 0, "l2"), axes.Unit(16, 0, "l2")]
    assert [STAGES["train"].part(u) for u in STAGES["train"].units(cfg)] == ["K2-s0", "K16-s0"]
    deps = STAGES["classify"].depends_on(cfg, axes.Unit(2, 0, "l2"))
    assert not any(k.startswith("axis.") for k in deps) and "variants" not in deps and "twins" not in deps
    # Declaring a base variant (empty overrides) keeps the base units as they were.
    more = load_config(TINY, ["variants={base: {}, wide: {block_out_channels: [32, 64]}}", "twins=true",
                       "train.snapshots=[128]"])
    units = STAGES["knn"].units(more)
    assert units[:2] == [axes.Unit(2, 0, "l2"), axes.Unit(16, 0, "l2")] and len(units) == 2 * 2 * 2 * 2
    # Not the figures: they draw every axis, so a new axis redraws them (and nothing else).
    for st in (s for s in STAGES.values() if s.name != "figures"):
        for u in st.units(cfg):
            assert st.meta(more, u)["fingerprint"] == st.meta(cfg, u)["fingerprint"], (st.name, u)
    assert STAGES["figures"].meta(more, axes.ALL)["fingerprint"] != STAGES["figures"].meta(cfg, axes.ALL)["fingerprint"]
    # Every other unit has a part name of its own, and (K is the part name's, never a key) a
    # fingerprint of its own among the units of its K.
    parts = [STAGES["knn"].part(u) for u in units]
    fps = {(u.K, STAGES["knn"].meta(more, u)["fingerprint"]) for u in units}
    assert len(set(parts)) == len(fps) == len(units)
    assert "l2-wide.twin.i128-K16-s0" in parts
    wide = axes.Axis("wide", 0, None)
    deps = json.loads(STAGES["train"].meta(more, axes.Unit(2, 0, axis=wide))["depends"])
    assert deps["model"]["block_out_channels"] == [32, 64]


def test_parts_without_axis_columns_read_as_the_base_final_model(tmp_path):
    """Parts written before the axis columns (an existing study) read as variant base, twin 0 and
    images_seen = the train.images their stage recorded, and filter like new ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    old = pa.schema([f for f in tables.SCHEMAS["fractions"] if f.name not in tables.AXIS_COLUMNS])
    t = pa.Table.from_pydict({"K": [2], "seed": [0], "metric": ["l2"], "n": [6], "memorized": [0.5],
                              "spurious": [0.0], "generalized": [0.5], "ratio_memorized": [0.5]}, schema=old)
    d = tables.table_dir(tmp_path, "fractions")
    d.mkdir(parents=True)
    pq.write_table(t.replace_schema_metadata({"depends": json.dumps({"train.images": 384})}), d / "part-l2-K2-s0.parquet")
    cfg = load_config(TINY)
    new = {"K": [16], "seed": [0], **axes.columns(cfg, axes.Axis("wide", 1, 128), 1), "metric": ["l2"], "n": [6],
           "memorized": [0.0], "spurious": [0.0], "generalized": [1.0], "ratio_memorized": [0.0]}
    tables.write_part(tmp_path, "fractions", "l2-wide.twin.i128-K16-s0", tables.to_table("fractions", new))
    df = tables.read_pandas(tmp_path, "fractions").sort_values("K")
    assert df[["K", "variant", "twin", "images_seen"]].values.tolist() == [[2, "base", 0, 384], [16, "wide", 1, 128]]
    assert tables.read_unit(tmp_path, "fractions", 2, 0, images_seen=384).num_rows == 1
    assert tables.read_unit(tmp_path, "fractions", 2, 0, images_seen=128).num_rows == 0
    assert tables.read_unit(tmp_path, "fractions", 16, 0, axis=axes.Axis("wide", 1, 128), images_seen=128).num_rows == 1
    assert tables.read_unit(tmp_path, "fractions", 16, 0, images_seen=128).num_rows == 0  # base, twin 0 only
    # rows written today without the axis columns take the same values; without a recorded
    # train.images, images_seen is null, read or written
    bare = tables.table_dir(tmp_path / "bare", "fractions")
    bare.mkdir(parents=True)
    pq.write_table(t, bare / "part-l2-K2-s0.parquet")
    assert tables.read(tmp_path / "bare", "fractions").select(list(tables.AXIS_COLUMNS)).to_pylist() == \
        [{"variant": "base", "twin": 0, "images_seen": None}]
    plain = {c: t[c].to_pylist() for c in old.names}
    for meta, seen in (({"depends": json.dumps({"train.images": 384})}, 384), (None, None)):
        got = tables.to_table("fractions", plain, meta).select(list(tables.AXIS_COLUMNS)).to_pylist()
        assert got == [{"variant": "base", "twin": 0, "images_seen": seen}]
