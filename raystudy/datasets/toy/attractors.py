"""What only the 2-D circle has: attractors (clustered samples) with their energies by the
probability-flow ODE, the energy landscape, the exact DenseAM energy of the whole circle
beside the learned one, and the chance level of the memorized label. Plain functions over
points and a score; the figures stage (``stages/figures.py``) feeds them from the tables."""

from __future__ import annotations

import numpy as np

CLUSTER_THRESHOLD = 0.02  # single-linkage distance that joins samples into one attractor
ENERGY_T0 = 1e-2          # -log p_{t0}: sigma(t0) = 0.1 at sigma_max = 1
GRID = 41
LANDSCAPE_KS = (2, 9, 1000)


def chance_memorized(train_pts: np.ndarray, delta_m: float) -> float:
    """The fraction of the unit circle within delta_m (chord) of a training point: what a model
    that had learned the whole circle would have labelled "memorized". Exact: arcs of half-angle
    2 arcsin(delta_m / 2) around each point, overlaps counted once."""
    if delta_m >= 2:
        return 1.0
    th = np.sort(np.mod(np.arctan2(train_pts[:, 1], train_pts[:, 0]), 2 * np.pi))
    gaps = np.diff(np.append(th, th[0] + 2 * np.pi))
    return float(np.minimum(gaps, 4 * np.arcsin(delta_m / 2)).sum() / (2 * np.pi))


def attractors(samples: np.ndarray, train_pts: np.ndarray, delta_m: float,
               threshold: float = CLUSTER_THRESHOLD) -> list[dict]:
    """Clusters of the samples (agglomerative, single linkage at ``threshold``): each centre is
    an attractor, memorized if a training point is within delta_m."""
    from sklearn.cluster import AgglomerativeClustering

    if len(samples) < 2:
        return []
    lab = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold,
                                  linkage="single").fit_predict(samples)
    out = []
    for c in np.unique(lab):
        pts = samples[lab == c]
        centre = pts.mean(0)
        d = float(np.sqrt(((train_pts - centre) ** 2).sum(1)).min())
        out.append({"centre": centre.tolist(), "size": int(len(pts)), "d_train": d,
                    "kind": "memorized" if d <= delta_m else "spurious" if len(pts) > 1 else "single"})
    return sorted(out, key=lambda a: -a["size"])


def landscape(score, train_pts: np.ndarray, samples: np.ndarray, k: int, delta_m: float, sigma_max: float) -> dict:
    """Energies (-log p_{t0} by the probability-flow ODE) of K's model ``score`` on a grid, at
    the training points and at the attractors of its ``samples`` (n, 2)."""
    from . import circle

    att = attractors(samples, train_pts, delta_m)
    lin = np.linspace(-1.6, 1.6, GRID)
    gx, gy = np.meshgrid(lin, lin)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    shown_train = train_pts[:200]
    centres = np.array([a["centre"] for a in att]).reshape(-1, 2)
    e = circle.neg_log_density(score, np.concatenate([grid, shown_train, centres]), ENERGY_T0,
                               sigma_max, train_points=train_pts)
    n_g, n_t = len(grid), len(shown_train)
    for a, en in zip(att, e[n_g + n_t:]):
        a["energy"] = float(en)
    return {"K": k, "grid": lin, "energy_grid": e[:n_g].reshape(gx.shape), "train": train_pts,
            "energy_train": e[n_g:n_g + n_t], "samples": samples, "attractors": att,
            "score_grid": circle.score_at(score, grid, ENERGY_T0).reshape(*gx.shape, 2), "score": score}


def energy_vs_dense_am(score, train_pts, sigma_max: float, radii=None, angles: int = 8) -> dict:
    """The learned -log p_{t0} along the radius against the exact K -> infinity energy at the
    same noise level: beta = 1 / (2 sigma(t0)^2), the inverse temperature of the VE marginal.
    Values are compared as differences from R = 1, where both are defined up to no constant."""
    from . import circle, dense_am

    radii = np.linspace(0.5, 1.5, 21) if radii is None else np.asarray(radii)
    th = np.linspace(0, 2 * np.pi, angles, endpoint=False)
    pts = (radii[:, None, None] * np.stack([np.cos(th), np.sin(th)], 1)[None]).reshape(-1, 2)
    learned = circle.neg_log_density(score, pts, ENERGY_T0, sigma_max,
                                     train_points=train_pts).reshape(len(radii), angles).mean(1)
    sig = float(circle.sigma(ENERGY_T0, sigma_max))
    exact = dense_am.neg_log_density(np.stack([radii, np.zeros_like(radii)], 1), sig)
    core = (radii >= 0.7) & (radii <= 1.3)
    i1 = int(np.argmin(np.abs(radii - 1.0)))
    err = np.abs((learned - learned[i1]) - (exact - exact[i1]))
    return {"radii": radii, "learned": learned, "exact": exact, "beta": dense_am.beta_for_sigma(sig),
            "max_error_core": float(err[core].max()), "max_error": float(err.max())}
