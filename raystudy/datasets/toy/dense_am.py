"""The dense associative memory of the whole circle (K -> infinity), in closed form.

With patterns xi(theta) = (cos theta, sin theta) spread uniformly,
    E(x) = -(1/beta) log mean_theta exp(-beta ||x - xi||^2)
         = R^2 + 1 - (1/beta) log I0(2 beta R),        R = ||x||,
    -grad E = 2 (I1(2 beta R) / I0(2 beta R) - R) x / R.
This is the VE marginal of the circle at noise sigma when beta = 1 / (2 sigma^2):
-log p_sigma(x) = beta E(x) + const and grad log p_sigma = -beta grad E. So a
model that has learned the circle at noise level sigma must match beta E there.

Bessel functions are evaluated scaled (i0e(z) = exp(-|z|) I0(z)) so that
beta = 1e4 does not overflow: log I0(z) = log i0e(z) + |z|, I1/I0 = i1e/i0e.
"""

from __future__ import annotations

import numpy as np
from scipy.special import i0e, i1e


def beta_for_sigma(sigma: float) -> float:
    """The inverse temperature of the VE marginal at noise level sigma."""
    return 1.0 / (2.0 * sigma ** 2)


def log_i0(z):
    z = np.abs(np.asarray(z, np.float64))
    return np.log(i0e(z)) + z


def energy(R, beta: float):
    """E(R) = R^2 + 1 - (1/beta) log I0(2 beta R); minimum near R = 1 for large beta."""
    R = np.asarray(R, np.float64)
    return R ** 2 + 1 - log_i0(2 * beta * R) / beta


def energy_xy(x, beta: float):
    return energy(np.linalg.norm(np.asarray(x, np.float64).reshape(-1, 2), axis=1), beta)


def score_radial(R, beta: float):
    """-dE/dR = 2 (I1/I0(2 beta R) - R)."""
    R = np.asarray(R, np.float64)
    z = 2 * beta * R
    return 2 * (i1e(z) / i0e(z) - R)


def neg_log_density(x, sigma: float):
    """-log p_sigma(x) of the continuous circle, exactly (beta E plus the Gaussian normaliser)."""
    b = beta_for_sigma(sigma)
    return b * energy_xy(x, b) + np.log(2 * np.pi * sigma ** 2)
