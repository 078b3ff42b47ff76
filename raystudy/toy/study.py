"""The 2-D circle study: train a score MLP per K, sample, and write the same tables
as an image study (runs, samples, neighbors, labels, fractions), plus attractors
with their energies. Distances (`l2`) are Euclidean distances in the plane.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import tables
from ..classify import fractions, label_samples, ratio_test
from ..data import subset_indices
from ..search import knn_search
from . import circle

K_NEIGHBORS = 5


@dataclass(frozen=True)
class ToyConfig:
    ks: tuple[int, ...] = (2, 9, 1000)          # the K values whose landscapes are drawn
    # The transition curve's K values. Once training points are closer than ~2 delta_m
    # (K >~ pi / delta_m) a Euclidean threshold cannot tell a copy from a new point on the
    # circle: `chance_memorized` says how much "memorized" a perfect generalizer would get,
    # and at K = 1000 the comparison with the exact DenseAM energy is the real test.
    sweep: tuple[int, ...] = (2, 4, 9, 16, 32, 100, 1000)
    seed: int = 0
    model: str = "mlp"                          # "mlp" (trained) or "empirical" (exact memorizer)
    steps: int = 10000
    batch: int = 512
    n_samples: int = 200
    sampler_steps: int = 500
    t_min: float = 1e-5
    sigma_max: float = 1.0
    delta_m: float = 0.02
    delta_s: float = 0.02
    cluster_threshold: float = 0.02
    energy_t0: float = 1e-2                     # -log p_{t0}: sigma(t0) = 0.1 at the default
    grid: int = 41
    all_ks: tuple[int, ...] = field(init=False, default=())

    def __post_init__(self):
        if any(k < 1 for k in (*self.ks, *self.sweep)):
            raise ValueError("every K must be >= 1")
        object.__setattr__(self, "all_ks", tuple(sorted(set(self.ks) | set(self.sweep))))


def _part(k: int, seed: int) -> str:
    return f"K{k}-s{seed}"


# What a stored K was made with; thresholds are not here because labels are recomputed.
_MADE_WITH = ("seed", "model", "steps", "batch", "n_samples", "sampler_steps", "t_min", "sigma_max")


def _model_path(out: Path, k: int, seed: int) -> Path:
    return out / "models" / f"circle-K{k}-s{seed}.pt"


def score_for(cfg: ToyConfig, out: Path, k: int, train_pts: np.ndarray) -> tuple[circle.ScoreFn, dict]:
    """The K-set's score function: trained (or loaded, if a finished run is on disk) or exact."""
    if cfg.model == "empirical":
        return circle.empirical_score(train_pts, cfg.sigma_max), {
            "model": "circle-empirical", "steps": 0, "images_seen": 0, "final_loss": float("nan"),
            "checkpoint": "", "wall_s": 0.0}
    path = _model_path(out, k, cfg.seed)
    model = circle.ScoreMLP(sigma_max=cfg.sigma_max, seed=cfg.seed)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["state_dict"])
        return model.eval(), saved["run"]
    model, loss, wall = circle.train_score(train_pts, steps=cfg.steps, batch=cfg.batch, t_min=cfg.t_min,
                                           sigma_max=cfg.sigma_max, seed=cfg.seed)
    run = {"model": "circle-mlp", "steps": cfg.steps, "images_seen": cfg.steps * cfg.batch,
           "final_loss": float(loss), "checkpoint": str(path), "wall_s": float(wall)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"state_dict": model.state_dict(), "run": run}, tmp)
    os.replace(tmp, path)
    return model, run


def sample_set(cfg: ToyConfig, score, k: int, set_name: str) -> tuple[np.ndarray, np.ndarray]:
    seeds = circle.sample_seeds(cfg.seed, k, set_name, cfg.n_samples)
    noise = circle.sample_noise(seeds, cfg.sampler_steps)
    return seeds, circle.em_sample(score, noise, cfg.t_min, cfg.sigma_max)


def _pad(a: np.ndarray, k: int, fill) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, k - a.shape[1])), constant_values=fill) if a.shape[1] < k else a


def train_points(cfg: ToyConfig, k: int, dataset=None) -> np.ndarray:
    """The size-K training set (K, 2) float32: the first K of the seeded permutation."""
    dataset = circle.circle_dataset(cfg.seed) if dataset is None else dataset
    return dataset.get(subset_indices(len(dataset), k, cfg.seed)).reshape(k, 2)


def run_k(cfg: ToyConfig, out: Path, dataset, k: int) -> dict:
    """Train, sample and search one K; writes its samples and neighbors. Returns the run record."""
    train_idx = subset_indices(len(dataset), k, cfg.seed)
    train_pts = dataset.get(train_idx).reshape(k, 2)
    score, run = score_for(cfg, out, k, train_pts)
    seeds_e, ev = sample_set(cfg, score, k, "eval")
    seeds_r, ref = sample_set(cfg, score, k, "ref")
    n = cfg.n_samples
    meta = tables.dumps_meta(study="circle", config=asdict(cfg))
    both = np.concatenate([ev, ref]).astype(np.float32)
    tables.write_part(out, "samples", _part(k, cfg.seed), tables.to_table("samples", {
        "K": np.full(2 * n, k), "seed": np.full(2 * n, cfg.seed), "set": ["eval"] * n + ["ref"] * n,
        "sample_id": np.tile(np.arange(n), 2), "sample_seed": np.concatenate([seeds_e, seeds_r]),
        "channels": np.ones(2 * n), "height": np.ones(2 * n), "width": np.full(2 * n, 2), "image": both,
    }, meta))
    sq_t, i_t = knn_search(ev, train_pts, min(K_NEIGHBORS, k))
    sq_s, i_s = knn_search(ev, ref, K_NEIGHBORS)
    d_t, d_s = np.sqrt(_pad(sq_t, K_NEIGHBORS, np.inf)), np.sqrt(sq_s)
    i_t = _pad(np.where(i_t >= 0, train_idx[np.maximum(i_t, 0)], -1), K_NEIGHBORS, -1)
    cols = {"K": np.full(n, k), "seed": np.full(n, cfg.seed), "sample_id": np.arange(n)}
    tables.write_part(out, "neighbors", f"l2-{_part(k, cfg.seed)}", tables.to_table("neighbors", {
        **cols, "metric": ["l2"] * n, "train_idx": i_t, "train_dist": d_t, "synth_idx": i_s, "synth_dist": d_s,
    }, meta))
    return {"K": k, "seed": cfg.seed, **run}


def label_k(cfg: ToyConfig, out: Path, k: int) -> None:
    """Labels from the stored distances, so a re-run with new thresholds relabels without sampling."""
    nb = tables.read_pandas(out, "neighbors")
    nb = nb[(nb.K == k) & (nb.seed == cfg.seed) & (nb.metric == "l2")].sort_values("sample_id")
    n = len(nb)
    d_t, d_s = np.stack(nb.train_dist.to_numpy()), np.stack(nb.synth_dist.to_numpy())
    labels = label_samples(d_t[:, 0], d_s[:, 0], cfg.delta_m, cfg.delta_s)
    ratio, ratio_mem = ratio_test(d_t[:, 0], d_t[:, 1]) if k >= 2 else (np.full(n, np.nan), np.zeros(n, bool))
    meta = tables.dumps_meta(study="circle", config=asdict(cfg))
    tables.write_part(out, "labels", f"l2-{_part(k, cfg.seed)}", tables.to_table("labels", {
        "K": np.full(n, k), "seed": np.full(n, cfg.seed), "sample_id": nb.sample_id.to_numpy(),
        "metric": ["l2"] * n, "d_train": d_t[:, 0], "d_synth": d_s[:, 0], "label": labels,
        "ratio": ratio, "ratio_memorized": ratio_mem, "manifold_error": [None] * n,
    }, meta))


def chance_memorized(train_pts: np.ndarray, delta_m: float) -> float:
    """The fraction of the unit circle within delta_m (chord) of a training point: what a model
    that had learned the whole circle would have labelled "memorized". Exact: arcs of half-angle
    2 arcsin(delta_m / 2) around each point, overlaps counted once."""
    if delta_m >= 2:
        return 1.0
    th = np.sort(np.mod(np.arctan2(train_pts[:, 1], train_pts[:, 0]), 2 * np.pi))
    gaps = np.diff(np.append(th, th[0] + 2 * np.pi))
    return float(np.minimum(gaps, 4 * np.arcsin(delta_m / 2)).sum() / (2 * np.pi))


def attractors(cfg: ToyConfig, samples: np.ndarray, train_pts: np.ndarray) -> list[dict]:
    """Clusters of the samples (agglomerative, single linkage at ``cluster_threshold``):
    each centre is an attractor, memorized if a training point is within delta_m."""
    from sklearn.cluster import AgglomerativeClustering

    if len(samples) < 2:
        return []
    lab = AgglomerativeClustering(n_clusters=None, distance_threshold=cfg.cluster_threshold,
                                  linkage="single").fit_predict(samples)
    out = []
    for c in np.unique(lab):
        pts = samples[lab == c]
        centre = pts.mean(0)
        d = float(np.sqrt(((train_pts - centre) ** 2).sum(1)).min())
        out.append({"centre": centre.tolist(), "size": int(len(pts)), "d_train": d,
                    "kind": "memorized" if d <= cfg.delta_m else "spurious" if len(pts) > 1 else "single"})
    return sorted(out, key=lambda a: -a["size"])


def run_toy(cfg: ToyConfig, out, echo=print) -> Path:
    """Every K of the sweep (skipping those whose parts exist), then fractions and attractors."""
    out = Path(out).resolve()
    dataset = circle.circle_dataset(cfg.seed)
    runs_file = out / "models" / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    made_with = {f: getattr(cfg, f) for f in _MADE_WITH}
    old = runs.setdefault("_made_with", made_with)
    if old != made_with:
        diff = {f: (old.get(f), made_with[f]) for f in made_with if old.get(f) != made_with[f]}
        raise ValueError(f"{out} holds a circle study made with other settings (stored, asked): {diff}; "
                         "use another --out")
    for k in cfg.all_ks:
        if str(k) in runs and tables.has_part(out, "neighbors", f"l2-{_part(k, cfg.seed)}"):
            echo(f"[circle] K={k}: complete, skipped")
        else:
            t0 = time.time()
            runs[str(k)] = run_k(cfg, out, dataset, k)
            runs_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = runs_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(runs, indent=1))
            os.replace(tmp, runs_file)
            echo(f"[circle] K={k}: done in {time.time() - t0:.1f} s")
        label_k(cfg, out, k)
    recs = [runs[str(k)] for k in cfg.all_ks]
    tables.write_part(out, "runs", "all", tables.to_table(
        "runs", {c: [r[c] for r in recs] for c in tables.SCHEMAS["runs"].names}))
    lab = tables.read_pandas(out, "labels")
    lab = lab[lab.K.isin(cfg.all_ks) & (lab.seed == cfg.seed)]
    tables.write_part(out, "fractions", "all", tables.to_table(
        "fractions", fractions(lab.K.to_numpy(), lab.seed.to_numpy(), lab.metric.to_numpy(), lab.label.to_numpy(),
                               lab.ratio_memorized.to_numpy())))
    return out


def load_samples(out, k: int, seed: int, set_name: str = "eval") -> np.ndarray:
    s = tables.read_pandas(out, "samples")
    s = s[(s.K == k) & (s.seed == seed) & (s.set == set_name)].sort_values("sample_id")
    return np.stack(s.image.to_numpy()).astype(np.float64)


def landscape(cfg: ToyConfig, out, k: int) -> dict:
    """Energies (-log p_{t0} by the probability-flow ODE) of K's model on a grid, at the
    training points and at the attractors of its samples."""
    train_pts = train_points(cfg, k).astype(np.float64)
    score, _ = score_for(cfg, Path(out), k, train_pts.astype(np.float32))
    samples = load_samples(out, k, cfg.seed)
    att = attractors(cfg, samples, train_pts)
    lin = np.linspace(-1.6, 1.6, cfg.grid)
    gx, gy = np.meshgrid(lin, lin)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    shown_train = train_pts[:200]
    centres = np.array([a["centre"] for a in att]).reshape(-1, 2)
    e = circle.neg_log_density(score, np.concatenate([grid, shown_train, centres]), cfg.energy_t0, cfg.sigma_max)
    n_g, n_t = len(grid), len(shown_train)
    for a, en in zip(att, e[n_g + n_t:]):
        a["energy"] = float(en)
    return {"K": k, "grid": lin, "energy_grid": e[:n_g].reshape(gx.shape), "train": train_pts,
            "energy_train": e[n_g:n_g + n_t], "samples": samples, "attractors": att,
            "score_grid": circle.score_at(score, grid, cfg.energy_t0).reshape(*gx.shape, 2), "score": score}


def energy_vs_dense_am(cfg: ToyConfig, score, radii=None, angles: int = 8) -> dict:
    """The learned -log p_{t0} along the radius against the exact K -> infinity energy at the
    same noise level: beta = 1 / (2 sigma(t0)^2), the inverse temperature of the VE marginal."""
    from . import dense_am

    radii = np.linspace(0.5, 1.5, 21) if radii is None else np.asarray(radii)
    th = np.linspace(0, 2 * np.pi, angles, endpoint=False)
    pts = (radii[:, None, None] * np.stack([np.cos(th), np.sin(th)], 1)[None]).reshape(-1, 2)
    learned = circle.neg_log_density(score, pts, cfg.energy_t0, cfg.sigma_max).reshape(len(radii), angles).mean(1)
    sig = float(circle.sigma(cfg.energy_t0, cfg.sigma_max))
    exact = dense_am.neg_log_density(np.stack([radii, np.zeros_like(radii)], 1), sig)
    # Near the circle the density is high and the model is trained there; deep inside it is
    # ~e^-50 and barely seen in training, so the correlation is also given on the core.
    core = (radii >= 0.7) & (radii <= 1.3)
    return {"radii": radii, "learned": learned, "exact": exact, "beta": dense_am.beta_for_sigma(sig),
            "correlation": float(np.corrcoef(learned, exact)[0, 1]),
            "correlation_core": float(np.corrcoef(learned[core], exact[core])[0, 1])}
