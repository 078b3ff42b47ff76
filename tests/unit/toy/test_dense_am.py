"""The circle's closed forms: the DenseAM energy against quadrature, the chance level of
"memorized" against Monte Carlo."""

import numpy as np
import pytest

from raystudy.datasets.toy import dense_am
from raystudy.datasets.toy.attractors import chance_memorized


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


def test_chance_memorized_matches_monte_carlo():
    rng = np.random.default_rng(1)
    for k, delta in ((1, 0.02), (9, 0.1), (60, 0.05)):
        th = rng.uniform(0, 2 * np.pi, k)
        train = np.stack([np.cos(th), np.sin(th)], 1)
        ph = rng.uniform(0, 2 * np.pi, 100_000)
        q = np.stack([np.cos(ph), np.sin(ph)], 1)
        mc = (np.sqrt(((q[:, None] - train[None]) ** 2).sum(-1)).min(1) <= delta).mean()
        assert chance_memorized(train, delta) == pytest.approx(mc, abs=0.005)
