"""The driver reads only what it draws or labels: the NN grid reads its few samples by id, and
classify reads no images and no index lists (issue 21's driver memory at CIFAR scale)."""

import numpy as np

from raystudy import tables
from raystudy.analysis import images, synthetic


def test_nn_grid_reads_only_the_drawn_rows_and_draws_them(tmp_path, monkeypatch):
    study = synthetic.write_study(tmp_path / "s", ks=(8,), seeds=(0,), n=300)
    rows = {}
    real = images.read_table

    def counting(study_dir, name, columns=None, filters=None, **kw):
        df = real(study_dir, name, columns=columns, filters=filters, **kw)
        rows[name] = rows.get(name, 0) + len(df)
        return df

    monkeypatch.setattr(images, "read_table", counting)
    n, k = 5, 3
    fig = images.nn_grid(study, K=8, label=None, n=n, k=k)
    assert rows["samples"] <= n * (1 + k) and rows["neighbors"] == n, rows
    # The drawn pixels are the right samples': first row, the sample and its nearest ref sample.
    labels = tables.read_pandas(study, "labels")
    sid = images.pick_samples(labels[(labels.K == 8) & (labels.seed == 0)], n)[0]
    sm = tables.read_pandas(study, "samples")
    nb = tables.read_pandas(study, "neighbors").set_index("sample_id")

    def pixels(set_name, i):
        r = sm[(sm.set == set_name) & (sm.sample_id == i) & (sm.K == 8)].iloc[0]
        img = np.asarray(r.image, np.float32).reshape(r.channels, r.height, r.width)
        return ((np.clip(img, -1, 1) + 1) / 2).repeat(3, 0).transpose(1, 2, 0).repeat(8, 0).repeat(8, 1)

    canvas = fig.axes[0].images[0].get_array()
    H = W = 8
    want = pixels("eval", sid)
    np.testing.assert_allclose(canvas[:H * 8, :W * 8], want, atol=1e-6)
    ref = pixels("ref", int(nb.loc[sid, "synth_idx"][0]))
    x = int(round((W + W * 0.45 + k * (W + W * 0.12) - W * 0.12 + W * 0.45) * 8))
    np.testing.assert_allclose(canvas[:H * 8, x:x + W * 8], ref, atol=1e-6)


def test_classify_reads_only_the_distances(tmp_path, monkeypatch):
    import raystudy.stages.classify as classify
    from raystudy.axes import Unit
    from raystudy.config import load_config
    from raystudy.study import CLASSIFY

    study = synthetic.write_study(tmp_path / "s", ks=(8,), seeds=(0,), n=50)
    asked = []
    real = tables.read

    def spy(study_dir, name, columns=None, filters=None, **kw):
        asked.append((name, columns))
        return real(study_dir, name, columns=columns, filters=filters, **kw)

    before = tables.read_pandas(study, "labels").sort_values("sample_id").reset_index(drop=True)
    import shutil

    for t in ("labels", "fractions"):  # the synthetic writer's own parts: classify writes them anew
        shutil.rmtree(tables.table_dir(study, t))
    monkeypatch.setattr(tables, "read", spy)
    cfg = load_config(study / "config.yaml")
    classify.run_classify(CLASSIFY, cfg, study, [Unit(8, 0, "l2")])
    assert asked and all(name != "samples" and columns and not {"train_idx", "synth_idx"} & set(columns)
                         for name, columns in asked), asked
    after = tables.read_pandas(study, "labels").sort_values("sample_id").reset_index(drop=True)
    np.testing.assert_array_equal(after["label"], before["label"])
    np.testing.assert_array_equal(after["d_train"], before["d_train"])


def test_read_by_row_group_equals_a_whole_read(tmp_path):
    """The row-group-wise read returns exactly the rows (and columns) the whole-table read
    does, over several parts of several row groups, and an empty table when nothing matches."""
    import pyarrow.compute as pc

    study = synthetic.write_study(tmp_path / "s", ks=(8, 32), seeds=(0,), n=700)
    parts = [pq for pq in (tables.table_dir(study, "samples")).glob("part-*.parquet")]
    import pyarrow.parquet as pq_

    assert max(pq_.ParquetFile(p).num_row_groups for p in parts) > 1  # written as several row groups
    ids = [0, 5, 255, 256, 257, 511, 699]
    for flt in ((pc.field("K") == 8) & pc.field("sample_id").isin(ids),
                ((pc.field("set") == "ref") & pc.field("sample_id").isin(ids[2:4])) | (pc.field("sample_id") == 3),
                pc.field("sample_id") == 10 ** 6):
        for cols in (None, ["sample_id", "set", "image"]):
            whole = tables.read(study, "samples", columns=cols, filters=flt).sort_by([("set", "ascending"),
                                                                                     ("K", "ascending") if cols is None
                                                                                     else ("set", "ascending"),
                                                                                     ("sample_id", "ascending")])
            by_rg = tables.read(study, "samples", columns=cols, filters=flt, by_row_group=True).sort_by(
                [("set", "ascending"), ("K", "ascending") if cols is None else ("set", "ascending"),
                 ("sample_id", "ascending")])
            assert by_rg.equals(whole), (flt, cols)
    assert tables.read(study, "samples", filters=pc.field("sample_id") == 10 ** 6, by_row_group=True).num_rows == 0
