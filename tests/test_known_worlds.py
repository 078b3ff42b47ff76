"""Studies whose answer is known, through the whole pipeline on a real local Ray:
the exact memorizer must memorize at every K; the manifold dataset fills manifold_error."""

import numpy as np
import pandas as pd

from raystudy.config import load
from raystudy.study import run

from .conftest import TINY


def test_exact_memorizer_study_memorizes_at_every_k(tmp_path, ray_local):
    cfg = load(TINY, ["model.type=empirical", "ks=[2, 16, 128, 1797]", "generate.n_samples=24",
                      "generate.steps=50", "generate.batch_size=24"])
    said = []
    run(cfg, tmp_path, echo=said.append)
    assert "[train] 4 to do (missing)" in said  # rows only: nothing to train
    assert not (tmp_path / "models").exists()
    runs = pd.read_parquet(tmp_path / "tables" / "runs")
    assert (runs.model == "empirical").all() and (runs.steps == 0).all()
    fr = pd.read_parquet(tmp_path / "tables" / "fractions")
    assert sorted(fr.K) == [2, 16, 128, 1797]
    assert (fr.memorized >= 0.99).all(), fr
    # Independent check: the stored samples sit on training digits.
    from raystudy.datasets import load_dataset, training_set

    ds = load_dataset(cfg.data)
    samples = pd.read_parquet(tmp_path / "tables" / "samples")
    for k in cfg.ks:
        _, train = training_set(ds, k, cfg.study.seed)
        x = np.stack(samples[samples.K == k].image.to_numpy()).astype(np.float64)
        d = np.sqrt(((x[:, None] - train.reshape(k, -1)[None]) ** 2).mean(-1)).min(1)
        assert (d <= 0.1).mean() >= 0.99


def test_manifold_study_reports_manifold_error(tmp_path, ray_local):
    # A 100-step UNet: its samples are still noise, far off the disc manifold (the exact
    # memorizer's, training discs, sit on it: tests/test_known_worlds_math.py).
    cfg = load(TINY, ["data.name=manifold", "data.image_size=16", "data.size=100000", "ks=[3, 50000]",
                      "generate.n_samples=4", "train.images=6400", "knn.batch_size=4"])
    run(cfg, tmp_path, echo=lambda s: None)
    lab = pd.read_parquet(tmp_path / "tables" / "labels")
    assert len(lab) == 8 and lab.manifold_error.notna().all()
    assert (lab.manifold_error > 0.2).all(), lab.manifold_error
    samples = pd.read_parquet(tmp_path / "tables" / "samples")
    assert set(zip(samples.channels, samples.height, samples.width)) == {(3, 16, 16)}
