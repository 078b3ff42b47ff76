"""The 2-D circle through the study's own stages: the same tables, schemas and classify code
as an image study, and its known answers (K=2 memorizes, K=9 has spurious attractors,
K=1000 learns the circle's energy)."""

import json

import numpy as np
import pandas as pd
import pytest

from raystudy import tables
from raystudy.config import load_config
from raystudy.datasets.toy import CIRCLE_CONFIG
from raystudy.datasets.toy.attractors import attractors, energy_vs_dense_am
from raystudy.study import run


def _cfg(*overrides):
    return load_config(CIRCLE_CONFIG, ["ks=[2, 9, 1000]", *overrides])


@pytest.fixture(scope="module")
def toy(study_of):
    return study_of(CIRCLE_CONFIG, "ks=[2, 9, 1000]")


def test_circle_study_writes_the_image_study_tables(toy):
    cfg, out = toy
    n = cfg.generate.n_samples * len(cfg.ks)
    rows = {"runs": 3, "samples": 2 * n, "neighbors": 2 * n, "labels": 2 * n, "fractions": 6}
    for name, count in rows.items():
        df = pd.read_parquet(out / "tables" / name)
        assert list(df.columns) == tables.SCHEMAS[name].names and len(df) == count, name
    # The same classify code as an image study: labels follow the paper's rule on the stored distances.
    from raystudy.compute.classify import label_samples

    lab = pd.read_parquet(out / "tables" / "labels")
    eu = lab[lab.metric == "euclidean"]
    np.testing.assert_array_equal(eu.label, label_samples(eu.d_train, eu.d_synth, 0.02, 0.02))
    # Euclidean distances in the plane, checked against brute force on the stored samples.
    from raystudy.datasets import load_dataset
    from raystudy.splits import kset_indices

    ds = load_dataset(cfg.data)
    smp = pd.read_parquet(out / "tables" / "samples")
    for k in cfg.ks:
        train = ds.get(kset_indices(len(ds), k, cfg.study.seed))
        x = np.stack(smp[(smp.K == k) & (smp.set == "eval")].sort_values("sample_id").image.to_numpy())
        d = np.sqrt(((x[:, None] - train.reshape(k, 2)[None]) ** 2).sum(-1)).min(1)
        np.testing.assert_allclose(eu[eu.K == k].sort_values("sample_id").d_train, d, rtol=1e-5, atol=1e-7)
    said = []
    run(cfg, out, echo=said.append)
    assert all(f"[{s}] complete, skipped" in said for s in ("train", "generate", "knn", "classify", "figures"))
    for f in ("landscapes", "surface3d", "learned_vs_exact", "transition", "memorized_vs_chance"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 1000, f
    report = json.loads((out / "attractors.json").read_text())
    assert set(report) >= {"2", "9", "1000", "dense_am", "chance_memorized"}


def test_rerun_relabels_with_new_thresholds_and_refuses_other_training(toy, tmp_path):
    import shutil

    from raystudy.errors import StudyError

    cfg, out = toy
    copy = tmp_path / "toy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("ray_results"))
    samples = {p: p.stat().st_mtime_ns for p in (copy / "tables" / "samples").glob("*.parquet")}
    said = []
    run(_cfg("classify.delta_m.euclidean=1e-9", "classify.delta_s.euclidean=1e-9"), copy, echo=said.append)
    assert "[generate] complete, skipped" in said and "[classify] 3 to do (stale)" in said
    fr = pd.read_parquet(copy / "tables" / "fractions")
    eu = fr[fr.metric == "euclidean"]
    assert (eu.generalized == 1.0).all() and (eu.memorized == 0.0).all()
    assert {p: p.stat().st_mtime_ns for p in samples} == samples
    before = (copy / "config.yaml").read_text()
    images = _cfg().train.images
    with pytest.raises(StudyError, match=rf"train.images: {images} -> {images + 512}") as e:
        run(_cfg(f"train.images={images + 512}"), copy, echo=lambda s: None)
    assert "\n" not in str(e.value) and (copy / "config.yaml").read_text() == before


def test_k2_memorizes(toy):
    cfg, out = toy
    fr = pd.read_parquet(out / "tables" / "fractions")
    assert fr[(fr.K == 2) & (fr.metric == "euclidean")].memorized.iloc[0] >= 0.95


def test_k9_has_spurious_attractors_and_the_labels_say_so(toy):
    # The trained MLP, not the exact memorizer: the memorizer at t_min returns only training
    # points, and spurious states are the network's interpolation between neighbours.
    from raystudy.datasets import load_dataset
    from raystudy.splits import kset_indices
    from raystudy.tables import read_samples

    cfg, out = toy
    ds = load_dataset(cfg.data)
    train = ds.get(kset_indices(len(ds), 9, cfg.study.seed))
    samples = read_samples(out, 9, 0, "eval")[1].reshape(-1, 2).astype(np.float64)
    att = attractors(samples, train.reshape(9, 2), 0.02)
    spurious = [a for a in att if a["kind"] == "spurious" and a["size"] >= 3]
    assert spurious and all(a["d_train"] > 0.02 for a in spurious), att
    lab = pd.read_parquet(out / "tables" / "labels")
    lab = lab[(lab.K == 9) & (lab.metric == "euclidean")].sort_values("sample_id")
    checked = 0
    for a in spurious:
        # Samples this close to the attractor are farther than delta_m from every training point.
        near = np.sqrt(((samples - np.array(a["centre"])) ** 2).sum(1)) < (a["d_train"] - 0.02) / 2
        if near.any():
            assert (lab.label.to_numpy()[near] == "spurious").all()
            checked += 1
    assert checked >= 1, spurious


def test_k1000_learned_energy_matches_dense_am_by_value(toy):
    from raystudy.compute.generate import load_model
    from raystudy.datasets import load_dataset
    from raystudy.splits import kset_indices

    cfg, out = toy
    ds = load_dataset(cfg.data)
    train = ds.get(kset_indices(len(ds), 1000, cfg.study.seed))
    cmp = energy_vs_dense_am(load_model(cfg, out, 1000, 0, ds), train.reshape(1000, 2), cfg.model.sigma_max)
    # E(R) - E(1) in nats against beta E of the closed form; beta off by 4x misses by tens of nats.
    assert cmp["max_error_core"] < 3.0, cmp
    assert abs(cmp["radii"][np.argmin(cmp["learned"])] - 1.0) <= 0.1


def test_toy_cli_is_the_circle_config(tmp_path, capsys):
    from raystudy.cli import main

    assert main(["toy", "--help"]) == 0
    helptext = capsys.readouterr().out
    for opt in ("--study", "--set", "--quick", "--dry-run"):
        assert opt in helptext
    # The exact memorizer needs no training, so the whole pipeline runs in seconds.
    out = tmp_path / "toy"
    assert main(["toy", "--study", str(out), "--set", "model.type=empirical", "--set", "ks=[2, 4, 9]",
                 "--set", "generate.n_samples=40", "--set", "generate.steps=200"]) == 0
    fr = pd.read_parquet(out / "tables" / "fractions")
    assert sorted(fr[fr.metric == "euclidean"].K) == [2, 4, 9]
    assert (fr[fr.metric == "euclidean"].memorized == 1.0).all()
    assert (out / "attractors.json").exists()
