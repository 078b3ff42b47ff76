"""The whole study on a real local Ray: every stage, every table, and a re-run that does nothing."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from raystudy import tables
from raystudy.config import load_config
from raystudy.study import run
from tests.conftest import TINY, copy_study


def _snapshot(study_dir):
    files = sorted(p for p in (study_dir / "tables").rglob("*") if p.is_file())
    files += sorted((study_dir / "figures").glob("*.png"))
    return {str(p): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files}


@pytest.fixture
def study(tiny_study):
    return tiny_study


def test_every_table_has_its_schema_and_rows(study):
    cfg, out = study
    n_groups, n = len(cfg.ks) * len(cfg.seeds), cfg.generate.n_samples
    expect = {"runs": n_groups, "samples": 2 * n * n_groups, "neighbors": n * n_groups,
              "labels": n * n_groups, "fractions": n_groups, "train_log": 6 * n_groups}
    for name, rows in expect.items():
        df = pd.read_parquet(out / "tables" / name)  # plain pandas: no raystudy, no torch needed
        assert list(df.columns) == tables.SCHEMAS[name].names, name
        assert len(df) == rows, name
    runs = pd.read_parquet(out / "tables" / "runs")
    assert (runs.images_seen == cfg.train.images).all() and runs.final_loss.notna().all()
    log = pd.read_parquet(out / "tables" / "train_log")
    assert sorted(log[log.K == 2].images_seen) == [64, 128, 192, 256, 320, 384] and log.loss.notna().all()
    nb = pd.read_parquet(out / "tables" / "neighbors")
    assert all(len(v) == cfg.knn.k for v in nb.synth_idx)
    # K=2 has only two training images: the rest of the top-k is padding.
    k2 = nb[nb.K == 2]
    assert all((np.asarray(v)[2:] == -1).all() for v in k2.train_idx)
    fr = pd.read_parquet(out / "tables" / "fractions")
    np.testing.assert_allclose(fr[["memorized", "spurious", "generalized"]].sum(axis=1), 1.0)
    assert (out / "figures" / "transition.png").stat().st_size > 1000
    assert (out / "figures" / "nn_grid.png").stat().st_size > 1000
    assert load_config(out / "config.yaml") == cfg


def test_neighbors_match_brute_force_on_stored_samples(study, digits):
    cfg, out = study
    from raystudy.splits import kset_indices

    samples = pd.read_parquet(out / "tables" / "samples")
    nb = pd.read_parquet(out / "tables" / "neighbors").sort_values(["K", "sample_id"])
    for k in cfg.ks:
        idx = kset_indices(len(digits), k, cfg.study.seed)
        train = digits.get(idx)
        ev = samples[(samples.K == k) & (samples.set == "eval")].sort_values("sample_id")
        x = np.stack(ev.image.to_numpy()).astype(np.float64)
        d = np.sqrt(((x[:, None] - train.reshape(k, -1)[None]) ** 2).mean(-1))
        got = nb[nb.K == k]
        np.testing.assert_allclose(np.stack(got.train_dist.to_numpy())[:, 0], d.min(1), rtol=1e-5)
        np.testing.assert_array_equal(np.stack(got.train_idx.to_numpy())[:, 0], idx[d.argmin(1)])


def test_rerun_does_no_work_and_changes_nothing(study):
    cfg, out = study
    before = _snapshot(out)
    said = []
    run(cfg, out, echo=said.append)
    assert _snapshot(out) == before
    for stage in ("train", "generate", "knn", "classify", "figures"):
        assert any(s.startswith(f"[{stage}] complete, skipped") for s in said), stage


def test_lost_part_is_regenerated_identically(study, tmp_path):
    cfg, out = study
    out = copy_study(out, tmp_path)

    def k16():
        return pd.read_parquet(out / "tables" / "samples", filters=[("K", "==", 16)]).sort_values(["set", "sample_id"])

    old = k16()
    for name in ("samples", "neighbors", "labels"):
        for p in (out / "tables" / name).glob("*K16-s0*"):
            p.unlink()
    said = []
    run(cfg, out, echo=said.append)
    assert "[train] complete, skipped" in said and "[generate] 1 to do (missing)" in said
    new = k16()
    np.testing.assert_allclose(np.stack(new.image.to_numpy()), np.stack(old.image.to_numpy()), atol=1e-5)
    assert (new.sample_seed.to_numpy() == old.sample_seed.to_numpy()).all()


def test_adding_a_metric_computes_only_that_metric(study, tmp_path, monkeypatch):
    import torch
    import torchvision

    cfg, out = study
    out = copy_study(out, tmp_path)
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), weights / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached weights elsewhere
    l2_parts = {p: p.stat().st_mtime_ns for p in (out / "tables" / "neighbors").glob("part-l2-*")}
    with_lpips = load_config(TINY, ["knn.metrics=[l2, lpips-alex]", f"knn.weights_dir={weights}"])
    said = []
    run(with_lpips, out, echo=said.append)
    assert f"[knn] {len(cfg.ks) * len(cfg.seeds)} to do (missing)" in said
    assert {p: p.stat().st_mtime_ns for p in l2_parts} == l2_parts
    lab = pd.read_parquet(out / "tables" / "labels")
    assert sorted(lab.metric.unique()) == ["l2", "lpips-alex"]
    lp = lab[lab.metric == "lpips-alex"]
    assert len(lp) == cfg.generate.n_samples * len(cfg.ks) and (lp.d_train > 0).all()
    # The ratio test is the l2 one whatever the row's metric.
    l2 = lab[lab.metric == "l2"].set_index(["K", "sample_id"]).ratio
    np.testing.assert_allclose(lp.set_index(["K", "sample_id"]).ratio.loc[l2.index], l2)
    fr = pd.read_parquet(out / "tables" / "fractions")
    assert sorted(fr.metric.unique()) == ["l2", "lpips-alex"]


def test_missing_backbone_fails_before_any_work(study, tmp_path, monkeypatch, offline):
    from raystudy.metrics.lpips import WeightsMissing

    cfg, out = study
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    bad = load_config(TINY, ["knn.metrics=[l2, lpips-vgg]", f"knn.weights_dir={tmp_path}"])
    before = _snapshot(out), (out / "config.yaml").read_text()
    with pytest.raises(WeightsMissing, match="vgg16-397923af.pth") as e:
        run(bad, out, echo=lambda s: None)
    assert "\n" not in str(e.value)
    assert not list((out / "tables" / "neighbors").glob("part-lpips-vgg-*"))
    # A run that fails its checks leaves the study folder as it was: config.yaml too.
    assert (_snapshot(out), (out / "config.yaml").read_text()) == before


def test_corrupt_model_is_one_line_before_any_work(study, tmp_path):
    from raystudy.models.unet import CheckpointError

    cfg, out = study
    copy = copy_study(out, tmp_path)
    for p in (copy / "tables" / "samples").glob("part-K16-*"):
        p.unlink()
    for f in (copy / "models" / "K16-s0").rglob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="K16-s0") as e:
        run(cfg, copy, echo=lambda s: None)
    assert "\n" not in str(e.value)


def test_changing_knn_k_recomputes_neighbours_and_labels_only(study, tmp_path):
    cfg, out = study
    copy = copy_study(out, tmp_path)
    samples = {p: p.stat().st_mtime_ns for p in (copy / "tables" / "samples").glob("*.parquet")}
    said = []
    run(load_config(TINY, ["knn.k=4"]), copy, echo=said.append)
    assert "[knn] 2 to do (stale)" in said and "[classify] 2 to do (stale)" in said
    assert "[generate] complete, skipped" in said
    nb = pd.read_parquet(copy / "tables" / "neighbors")
    assert all(len(v) == 4 for v in nb.synth_idx) and len(nb) == 2 * cfg.generate.n_samples
    assert {p: p.stat().st_mtime_ns for p in samples} == samples


def test_changed_training_settings_are_refused_in_one_line(study, capsys):
    from raystudy.cli import main

    cfg, out = study
    before = (out / "config.yaml").read_text()
    assert main(["run", str(TINY), "--study", str(out), "--set", "train.lr=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("raystudy: error:") and f"train.lr: {cfg.train.lr} -> 0.5" in err and "\n" not in err
    assert (out / "config.yaml").read_text() == before
    # --dry-run says the same, per stage, and fails as the run would (a pre-flight check).
    assert main(["run", str(TINY), "--study", str(out), "--set", "train.lr=0.5", "--dry-run"]) == 2
    said = capsys.readouterr().out
    assert "train: reads -; writes runs, train_log, loss_curves; 0 of 2 missing, 2 stale (refused)" in said
    assert "generate: reads runs; writes samples; 0 of 2 missing, 2 stale (recomputed)" in said


def test_corrupt_lpips_weights_are_one_line_before_any_work(study, tmp_path, capsys, monkeypatch):
    from raystudy.cli import main

    cfg, out = study
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    (tmp_path / "vgg16-397923af.pth").write_bytes(b"\x00not a checkpoint")
    before = _snapshot(out), (out / "config.yaml").read_text()
    code = main(["run", str(TINY), "--study", str(out), "--set", "knn.metrics=[l2, lpips-vgg]",
                 "--set", f"knn.weights_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "vgg16-397923af.pth" in err and "\n" not in err
    assert (_snapshot(out), (out / "config.yaml").read_text()) == before


def test_cluster_too_small_for_one_worker_is_one_line(study, tmp_path):
    from raystudy.errors import ClusterError

    cfg, out = study
    copy = copy_study(out, tmp_path)
    for p in (copy / "tables" / "samples").glob("part-K16-*"):
        p.unlink()
    before = _snapshot(copy), (copy / "config.yaml").read_text()
    with pytest.raises(ClusterError, match="cannot hold one generate worker needing 64 CPU") as e:
        run(load_config(TINY, ["generate.cpus_per_worker=64"]), copy, echo=lambda s: None)
    assert "\n" not in str(e.value)
    assert (_snapshot(copy), (copy / "config.yaml").read_text()) == before


