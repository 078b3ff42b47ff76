"""The 2-D circle: closed forms checked against independent computations, and the
study's known answers (K=2 memorizes, K=9 has spurious attractors, K=1000 is the circle)."""

import numpy as np
import pandas as pd
import pytest
import torch

from raystudy import tables
from raystudy.toy import circle, dense_am
from raystudy.empirical import ve_log_density
from raystudy.toy.study import (ToyConfig, attractors, chance_memorized, energy_vs_dense_am, load_samples,
                                run_toy, score_for)


@pytest.mark.parametrize("beta", [0.5, 5.0, 50.0, 1e4])
def test_dense_am_energy_matches_quadrature(beta):
    theta = np.linspace(0, 2 * np.pi, 200_000, endpoint=False)
    for R in (0.3, 0.9, 1.0, 1.4):
        d2 = (R - np.cos(theta)) ** 2 + np.sin(theta) ** 2
        m = (-beta * d2).max()
        quad = -(m + np.log(np.mean(np.exp(-beta * d2 - m)))) / beta
        assert dense_am.energy(R, beta) == pytest.approx(quad, rel=1e-6, abs=1e-9)
    R = np.linspace(0.2, 1.6, 15)
    h = 1e-6
    fd = -(dense_am.energy(R + h, beta) - dense_am.energy(R - h, beta)) / (2 * h)
    np.testing.assert_allclose(dense_am.score_radial(R, beta), fd, rtol=1e-4, atol=1e-4 * beta)
    assert np.isfinite(dense_am.energy(R, 1e6)).all()


def test_exact_divergence_matches_finite_differences():
    score = circle.ScoreMLP(seed=3)
    x = torch.randn(6, 2, dtype=torch.float32)
    t = torch.full((6,), 0.3)
    _, div = circle._score_and_div(score, x, t)
    h = 1e-3
    fd = torch.zeros(6)
    for j in range(2):
        e = torch.zeros(2)
        e[j] = h
        with torch.no_grad():
            fd += (score(x + e, t)[:, j] - score(x - e, t)[:, j]) / (2 * h)
    torch.testing.assert_close(div, fd, atol=2e-2, rtol=2e-2)


def test_probability_flow_energy_is_exact_for_a_single_point():
    # One training point at the origin: p_t = N(0, sigma(t)^2 I), and p_1 is exactly the prior.
    score = circle.empirical_score(np.zeros((1, 2), np.float32))
    x = np.array([[0.0, 0.0], [0.05, -0.1], [0.2, 0.1]])
    t0 = 1e-2
    exact = (x ** 2).sum(1) / (2 * t0) + np.log(2 * np.pi * t0)
    np.testing.assert_allclose(circle.neg_log_density(score, x, t0), exact, rtol=1e-3, atol=1e-3)


def test_probability_flow_energy_of_the_memorizer_matches_its_log_density():
    # Nine points on the circle: p_t is a Gaussian mixture, known in closed form at every t,
    # so with the true p_1 as the ODE's end condition the only error left is the solver's.
    th = np.linspace(0, 2 * np.pi, 9, endpoint=False) + 0.3
    train = torch.tensor(np.stack([np.cos(th), np.sin(th)], 1), dtype=torch.float32)
    score = circle.empirical_score(train)
    x = np.array([[1.0, 0.3], [0.0, 0.0], [0.7, -0.8], [-1.2, 0.1], [0.95, 0.29]])
    t0 = 1e-2
    p1 = lambda y: ve_log_density(torch.as_tensor(y), 1.0, train.double()).numpy()
    ode = circle.neg_log_density(score, x, t0, log_prior=p1)
    exact = -ve_log_density(torch.as_tensor(x), float(circle.sigma(t0)), train.double()).numpy()
    np.testing.assert_allclose(ode, exact, rtol=2e-3, atol=2e-3)


def test_chance_memorized_matches_monte_carlo():
    rng = np.random.default_rng(1)
    for k, delta in ((1, 0.02), (9, 0.1), (60, 0.05)):
        th = rng.uniform(0, 2 * np.pi, k)
        train = np.stack([np.cos(th), np.sin(th)], 1)
        ph = rng.uniform(0, 2 * np.pi, 100_000)
        q = np.stack([np.cos(ph), np.sin(ph)], 1)
        mc = (np.sqrt(((q[:, None] - train[None]) ** 2).sum(-1)).min(1) <= delta).mean()
        assert chance_memorized(train, delta) == pytest.approx(mc, abs=0.005)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    cfg = ToyConfig(ks=(2, 9, 1000), sweep=(2, 9), n_samples=200)
    out = tmp_path_factory.mktemp("toy")
    run_toy(cfg, out, echo=lambda s: None)
    return cfg, out


def test_circle_study_writes_the_image_study_tables(toy):
    cfg, out = toy
    n = cfg.n_samples * len(cfg.all_ks)
    for name, rows in {"runs": 3, "samples": 2 * n, "neighbors": n, "labels": n, "fractions": 3}.items():
        df = pd.read_parquet(out / "tables" / name)
        assert list(df.columns) == tables.SCHEMAS[name].names and len(df) == rows, name
    said = []
    run_toy(cfg, out, echo=said.append)
    assert said == [f"[circle] K={k}: complete, skipped" for k in cfg.all_ks]


def test_rerun_relabels_with_new_thresholds_and_refuses_other_training(toy, tmp_path):
    import shutil
    from dataclasses import replace

    cfg, out = toy
    copy = tmp_path / "toy"
    shutil.copytree(out, copy)
    samples_before = pd.read_parquet(copy / "tables" / "samples")
    run_toy(replace(cfg, delta_m=1e-9, delta_s=1e-9), copy, echo=lambda s: None)
    fr = pd.read_parquet(copy / "tables" / "fractions")
    assert (fr.generalized == 1.0).all() and (fr.memorized == 0.0).all()
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "tables" / "samples"), samples_before)
    with pytest.raises(ValueError, match="steps"):
        run_toy(replace(cfg, steps=cfg.steps + 1), copy, echo=lambda s: None)


def test_k2_memorizes(toy):
    cfg, out = toy
    fr = pd.read_parquet(out / "tables" / "fractions").set_index("K")
    assert fr.loc[2, "memorized"] >= 0.95


def test_k9_has_spurious_attractors_and_the_labels_say_so(toy):
    # The trained MLP, not the exact memorizer: the memorizer at t_min returns only training
    # points, and spurious states are the network's interpolation between neighbours. Seeds
    # are fixed (seed 0, 10k steps). Three training points lie close together on the arc,
    # (-0.99, -0.16), (-0.90, -0.43), (-0.69, -0.73); the network merges their basins into one
    # valley, and clusters of samples stop between them, 0.05-0.08 from any training point.
    cfg, out = toy
    ds = circle.circle_dataset(cfg.seed)
    from raystudy.data import subset_indices

    train = ds.get(subset_indices(len(ds), 9, cfg.seed)).reshape(9, 2)
    samples = load_samples(out, 9, cfg.seed)
    att = attractors(cfg, samples, train)
    spurious = [a for a in att if a["kind"] == "spurious" and a["size"] >= 3 and a["d_train"] > 2 * cfg.delta_m]
    assert spurious, att
    lab = pd.read_parquet(out / "tables" / "labels")
    lab = lab[lab.K == 9].sort_values("sample_id")
    for a in spurious:
        near = np.sqrt(((samples - np.array(a["centre"])) ** 2).sum(1)) < cfg.cluster_threshold
        assert (lab.label.to_numpy()[near] != "memorized").all()
        assert (lab.label.to_numpy()[near] == "spurious").mean() >= 0.5


def test_k1000_learned_energy_matches_dense_am(toy):
    cfg, out = toy
    ds = circle.circle_dataset(cfg.seed)
    from raystudy.data import subset_indices

    train = ds.get(subset_indices(len(ds), 1000, cfg.seed)).reshape(1000, 2)
    score, _ = score_for(cfg, out, 1000, train)
    cmp = energy_vs_dense_am(cfg, score)
    assert cmp["correlation_core"] > 0.9, cmp
    assert cmp["correlation"] > 0.75, cmp
    assert abs(cmp["radii"][np.argmin(cmp["learned"])] - 1.0) <= 0.1


def test_cli_writes_tables_and_figures(tmp_path, capsys):
    from raystudy.toy.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    helptext = capsys.readouterr().out
    for opt in ("--out", "--ks", "--sweep", "--steps", "--n-samples", "--seed", "--delta-m", "--delta-s",
                "--cluster-threshold", "--quick"):
        assert opt in helptext
    # The exact memorizer needs no training, so the whole pipeline runs in seconds.
    out = tmp_path / "toy"
    assert main(["--out", str(out), "--model", "empirical", "--ks", "2,9", "--sweep", "2,4",
                 "--n-samples", "40"]) == 0
    said = capsys.readouterr().out
    assert "chance_memorized" in said and "correlation" in said
    fr = pd.read_parquet(out / "tables" / "fractions")
    assert sorted(fr.K) == [2, 4, 9] and (fr.loc[fr.K == 2, "memorized"] == 1.0).all()
    for f in ("landscapes", "surface3d", "learned_vs_exact", "transition", "memorized_vs_chance"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 0
    assert (out / "attractors.json").exists()
