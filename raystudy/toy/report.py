"""What only the 2-D circle has, fed by the study's tables: attractors (clustered samples)
with their energies by the probability-flow ODE, the landscapes, the exact DenseAM energy
of the whole circle beside the learned one, and the chance level of the memorized label.
The figures stage calls ``circle_report`` when ``data.name`` is ``circle``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import tables

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


def _train_points(cfg, dataset, k: int) -> np.ndarray:
    from ..datasets import training_set

    return training_set(dataset, k, cfg.study.seed)[1].reshape(k, 2).astype(np.float64)


def landscape(cfg, study_dir, dataset, k: int, seed: int) -> dict:
    """Energies (-log p_{t0} by the probability-flow ODE) of K's model on a grid, at the
    training points and at the attractors of its samples."""
    from ..generate import load_model, read_samples
    from . import circle

    train_pts = _train_points(cfg, dataset, k)
    score = load_model(cfg, study_dir, k, seed, dataset)
    samples = read_samples(study_dir, k, seed, "eval")[1].reshape(-1, 2).astype(np.float64)
    att = attractors(samples, train_pts, cfg.classify.delta_m["euclidean"])
    lin = np.linspace(-1.6, 1.6, GRID)
    gx, gy = np.meshgrid(lin, lin)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    shown_train = train_pts[:200]
    centres = np.array([a["centre"] for a in att]).reshape(-1, 2)
    e = circle.neg_log_density(score, np.concatenate([grid, shown_train, centres]), ENERGY_T0,
                               cfg.model.sigma_max, train_points=train_pts)
    n_g, n_t = len(grid), len(shown_train)
    for a, en in zip(att, e[n_g + n_t:]):
        a["energy"] = float(en)
    return {"K": k, "grid": lin, "energy_grid": e[:n_g].reshape(gx.shape), "train": train_pts,
            "energy_train": e[n_g:n_g + n_t], "samples": samples, "attractors": att,
            "score_grid": circle.score_at(score, grid, ENERGY_T0).reshape(*gx.shape, 2), "score": score}


def energy_vs_dense_am(cfg, score, train_pts, radii=None, angles: int = 8) -> dict:
    """The learned -log p_{t0} along the radius against the exact K -> infinity energy at the
    same noise level: beta = 1 / (2 sigma(t0)^2), the inverse temperature of the VE marginal.
    Values are compared as differences from R = 1, where both are defined up to no constant."""
    from . import circle, dense_am

    radii = np.linspace(0.5, 1.5, 21) if radii is None else np.asarray(radii)
    th = np.linspace(0, 2 * np.pi, angles, endpoint=False)
    pts = (radii[:, None, None] * np.stack([np.cos(th), np.sin(th)], 1)[None]).reshape(-1, 2)
    learned = circle.neg_log_density(score, pts, ENERGY_T0, cfg.model.sigma_max,
                                     train_points=train_pts).reshape(len(radii), angles).mean(1)
    sig = float(circle.sigma(ENERGY_T0, cfg.model.sigma_max))
    exact = dense_am.neg_log_density(np.stack([radii, np.zeros_like(radii)], 1), sig)
    core = (radii >= 0.7) & (radii <= 1.3)
    i1 = int(np.argmin(np.abs(radii - 1.0)))
    err = np.abs((learned - learned[i1]) - (exact - exact[i1]))
    return {"radii": radii, "learned": learned, "exact": exact, "beta": dense_am.beta_for_sigma(sig),
            "max_error_core": float(err[core].max()), "max_error": float(err.max())}


def circle_report(cfg, study_dir, echo=print) -> dict:
    """Attractors, landscapes, DenseAM comparison and chance levels; figures and attractors.json."""
    from ..datasets import load_dataset
    from . import figures

    study_dir = Path(study_dir)
    dataset = load_dataset(cfg.data)
    seed = cfg.seeds[0]
    fig_dir = study_dir / "figures"
    delta_m = cfg.classify.delta_m["euclidean"]
    chance = {k: chance_memorized(_train_points(cfg, dataset, k), delta_m) for k in cfg.ks}
    fr = tables.read_pandas(study_dir, "fractions")
    fr = fr[(fr.metric == "euclidean") & fr.K.isin(cfg.ks)]
    figures.memorized_vs_chance(fr, chance, fig_dir / "memorized_vs_chance.png")
    ks = [k for k in LANDSCAPE_KS if k in cfg.ks] or sorted({cfg.ks[0], cfg.ks[len(cfg.ks) // 2], cfg.ks[-1]})
    lands = [landscape(cfg, study_dir, dataset, k, seed) for k in ks]
    report = {"chance_memorized": {str(k): v for k, v in chance.items()}}
    for L in lands:
        kinds = [x["kind"] for x in L["attractors"] if x["size"] > 1]
        e_train = float(np.mean(L["energy_train"]))
        echo(f"K={L['K']}: {len(kinds)} attractors with >1 sample, {kinds.count('spurious')} spurious; "
             f"mean -log p at the training points {e_train:.2f}")
        report[str(L["K"])] = {"attractors": L["attractors"], "mean_energy_at_training_points": e_train}
    figures.landscapes(lands, fig_dir / "landscapes.png")
    figures.surface(lands[-1], fig_dir / "surface3d.png")
    cmp = energy_vs_dense_am(cfg, lands[-1]["score"], lands[-1]["train"])
    figures.learned_vs_exact(cmp, lands[-1]["K"], fig_dir / "learned_vs_exact.png")
    echo(f"K={lands[-1]['K']}: learned vs exact DenseAM energy along the radius (beta={cmp['beta']:.0f}), "
         f"E(R) - E(1): largest error {cmp['max_error_core']:.3f} for R in [0.7, 1.3], "
         f"{cmp['max_error']:.3f} for R in [0.5, 1.5]")
    report["dense_am"] = {k: cmp[k] for k in ("beta", "max_error_core", "max_error")}
    tables.write_text(study_dir / "attractors.json", json.dumps(report, indent=1))
    return report
