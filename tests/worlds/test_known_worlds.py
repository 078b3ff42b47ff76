"""Worlds whose answer is known: the exact memorizer must memorize at every K (through the whole
pipeline on a real local Ray), its samples lie on the known manifold and its blends do not
(no study run), and the manifold dataset fills manifold_error."""

import numpy as np
import pandas as pd

from raystudy.config import load_config
from raystudy.study import run
from tests.conftest import TINY


def test_exact_memorizer_study_memorizes_at_every_k(tmp_path, ray_local):
    cfg = load_config(TINY, ["model.type=empirical", "ks=[2, 16, 128, 1597]", "generate.n_samples=24",
                      "generate.steps=50", "generate.batch_size=24"])
    said = []
    run(cfg, tmp_path, echo=said.append)
    assert "[train] 4 to do (missing)" in said  # rows only: nothing to train
    assert not (tmp_path / "models").exists()
    runs = pd.read_parquet(tmp_path / "tables" / "runs")
    assert (runs.model == "empirical").all() and (runs.steps == 0).all()
    fr = pd.read_parquet(tmp_path / "tables" / "fractions")
    assert sorted(fr.K) == [2, 16, 128, 1597]
    assert (fr.memorized >= 0.99).all(), fr
    # Independent check: the stored samples sit on training digits.
    from raystudy.datasets import load_dataset
    from raystudy.splits import kset_indices

    ds = load_dataset(cfg.data)
    samples = pd.read_parquet(tmp_path / "tables" / "samples")
    for k in cfg.ks:
        train = ds.get(kset_indices(len(ds), k, cfg.study.seed))
        x = np.stack(samples[samples.K == k].image.to_numpy()).astype(np.float64)
        d = np.sqrt(((x[:, None] - train.reshape(k, -1)[None]) ** 2).mean(-1)).min(1)
        assert (d <= 0.1).mean() >= 0.99


def test_manifold_study_reports_manifold_error(tmp_path, ray_local):
    # A UNet after one step: its samples are noise, far off the disc manifold (the exact
    # memorizer's, training discs, sit on it: the test below). What is checked is that the
    # column is filled by the stages and measures distance to the manifold, for which any model
    # far from having learnt the discs will do: 100 steps gave the same (> 0.2 everywhere).
    cfg = load_config(TINY, ["data.name=manifold", "data.image_size=16", "data.size=100000", "ks=[3, 50000]",
                      "generate.n_samples=4", "train.images=64", "train.checkpoint_every=64", "knn.batch_size=4"])
    run(cfg, tmp_path, echo=lambda s: None)
    lab = pd.read_parquet(tmp_path / "tables" / "labels")
    assert len(lab) == 8 and lab.manifold_error.notna().all()
    assert (lab.manifold_error > 0.2).all(), lab.manifold_error
    samples = pd.read_parquet(tmp_path / "tables" / "samples")
    assert set(zip(samples.channels, samples.height, samples.width)) == {(3, 16, 16)}


def _ddim(model, n, size, seed, steps):
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler

    sched = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=1000).config)
    sched.set_timesteps(steps)
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, t).sample, t, x).prev_sample
    return x.clamp(-1, 1).numpy()


def test_exact_memorizer_samples_sit_on_the_manifold_and_its_blends_do_not():
    # 50 DDIM steps of the exact memorizer return training discs: on the manifold. Its
    # prediction of x_0 at t = 999 is the posterior mean there, a blend of all K discs
    # (the archetypal spurious state): off it. (A 100-step UNet's samples score 0.82-0.95, but training it
    # takes minutes on a 2-core CPU.)
    import torch
    from diffusers import DDPMScheduler

    from raystudy.datasets.manifold import latents, manifold_error, render
    from raystudy.models.memorizer import EmpiricalEpsilon

    size, K = 16, 16
    train = render(latents(np.arange(K)), size)
    model = EmpiricalEpsilon(torch.from_numpy(train), DDPMScheduler(num_train_timesteps=1000).alphas_cumprod)
    good = _ddim(model, 16, size, seed=0, steps=50)
    d = np.sqrt(((good[:, None] - train[None]) ** 2).mean((2, 3, 4))).min(1)
    assert d.max() < 0.01  # they are training images
    assert manifold_error(good).max() < 0.005
    x = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(1))
    blend = model.denoise(x, 999).numpy()
    assert manifold_error(blend).min() > 0.03
