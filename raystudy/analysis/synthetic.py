"""A synthetic study with a known transition, written as real tables (no training, no torch).

For tests and for trying the analysis without running a study: ``write_study(DIR)`` writes
``config.yaml`` and the tables ``runs``, ``train_log``, ``samples``, ``neighbors``, ``labels``,
``fractions`` (and, with ``basins=True``, ``basins`` and ``energy``) of a digits study whose
samples are memorized with probability ``p_memorized(K) = 1 / (1 + (K / k_half)^slope)``
(so the true crossing is ``k_half``), spurious with a bump centred at ``k_spurious``, and
generalized otherwise. Distances are drawn on the right side of the thresholds for each
label, so relabelling with the config's thresholds returns the drawn labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from .. import tables

N_DIGITS = 1797


def p_memorized(k, k_half: float = 40.0, slope: float = 2.0):
    return 1.0 / (1.0 + (np.asarray(k, float) / k_half) ** slope)


def p_spurious(k, k_half: float = 40.0, slope: float = 2.0, k_spurious: float = 64.0, height: float = 0.3,
               width: float = 1.0):
    bump = height * np.exp(-0.5 * (np.log(np.asarray(k, float) / k_spurious) / width) ** 2)
    return np.minimum(bump, 1.0 - p_memorized(k, k_half, slope))


def write_study(study_dir, ks=(2, 8, 32, 128, 512), seeds=(0, 1), n: int = 40, metrics=("l2",),
                k_half: float = 40.0, slope: float = 2.0, k_spurious: float = 64.0, height: float = 0.3,
                knn_k: int = 3, name: str | None = None, basins: bool = False, train_log: bool = True,
                stages: bool = True, seed: int = 0, delta_m: float = 0.1, delta_s: float = 0.1) -> Path:
    """Write a synthetic study to ``study_dir`` and return it (see the module docstring)."""
    d = Path(study_dir)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    name = name or d.name
    cfg = {"study": {"name": name, "seed": 0}, "data": {"name": "digits"}, "ks": list(ks), "seeds": list(seeds),
           "model": {"type": "unet", "block_out_channels": [32, 64]},
           "train": {"images": 4096, "batch_size": 64},
           "generate": {"n_samples": n}, "knn": {"metrics": list(metrics), "k": knn_k},
           "classify": {"delta_m": {m: delta_m for m in metrics}, "delta_s": {m: delta_s for m in metrics}}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    from ..datasets.files import digits as digit_images

    digits = digit_images()
    perm = rng.permutation(N_DIGITS)
    meta = tables.dumps_meta(study=name, synthetic=True)
    runs = []
    for k in ks:
        train_set = perm[:k]
        for s in seeds:
            pm = float(p_memorized(k, k_half, slope))
            ps = float(p_spurious(k, k_half, slope, k_spurious, height))
            cols = {c: [] for c in tables.SCHEMAS["labels"].names}
            nb = {c: [] for c in tables.SCHEMAS["neighbors"].names}
            labels = rng.choice(3, size=n, p=[pm, ps, 1 - pm - ps])
            # images: a memorized sample is a noisy copy of a training image, others are blends
            src = train_set[rng.integers(0, k, n)]
            other = perm[rng.integers(0, N_DIGITS, n)]
            w = np.where(labels == 0, 0.0, rng.uniform(0.3, 0.7, n))[:, None, None, None]
            ev = (1 - w) * digits[src] + w * digits[other] + rng.normal(0, 0.02, (n, 1, 8, 8))
            ref = (1 - w) * digits[src[rng.permutation(n)]] + w * digits[other] + rng.normal(0, 0.02, (n, 1, 8, 8))
            for m in metrics:
                d_train = np.where(labels == 0, delta_m * rng.uniform(0.1, 0.9, n), delta_m * rng.uniform(1.2, 6, n))
                d_synth = np.where(labels == 2, delta_s * rng.uniform(1.2, 5, n), delta_s * rng.uniform(0.1, 0.9, n))
                kt = min(knn_k, k)
                tidx = np.full((n, knn_k), -1, np.int64)
                tdist = np.full((n, knn_k), np.inf)
                for i in range(n):
                    tidx[i, :kt] = rng.choice(train_set, kt, replace=False)
                    tidx[i, 0] = src[i]
                    # a copy stands out from its second neighbour (the ratio test's premise)
                    far = rng.uniform(3.2, 12, kt - 1) if labels[i] == 0 else rng.uniform(1.1, 3, kt - 1)
                    tdist[i, :kt] = np.sort(np.r_[d_train[i], d_train[i] * far])
                sidx = np.stack([rng.choice(n, knn_k, replace=False) for _ in range(n)])
                sdist = np.sort(np.c_[d_synth, d_synth[:, None] * rng.uniform(1.1, 3, (n, knn_k - 1))], axis=1)
                ratio = np.where(np.isfinite(tdist[:, 1]), tdist[:, 0] / tdist[:, 1], np.nan)
                lab = np.array(tables.LABELS, dtype=object)[labels]
                for c, v in (("K", np.full(n, k)), ("seed", np.full(n, s)), ("sample_id", np.arange(n)),
                             ("metric", np.full(n, m)), ("d_train", tdist[:, 0]), ("d_synth", sdist[:, 0]),
                             ("label", lab), ("ratio", ratio), ("ratio_memorized", np.nan_to_num(ratio, nan=1) < 1 / 3),
                             ("manifold_error", [None] * n)):
                    cols[c].extend(list(v))
                for c, v in (("K", np.full(n, k)), ("seed", np.full(n, s)), ("sample_id", np.arange(n)),
                             ("metric", np.full(n, m)), ("train_idx", list(tidx)), ("train_dist", list(tdist)),
                             ("synth_idx", list(sidx)), ("synth_dist", list(sdist))):
                    nb[c].extend(list(v))
            part = f"K{k}-s{s}"
            tables.write_part(d, "labels", part, tables.to_table("labels", cols, meta))
            tables.write_part(d, "neighbors", part, tables.to_table("neighbors", {
                c: (np.stack(v) if c.endswith(("_idx", "_dist")) else v) for c, v in nb.items()}, meta))
            sets = [tables.samples_rows(k, s, which, np.arange(n), rng.integers(0, 2**62, n),
                                        np.clip(imgs, -1, 1).astype(np.float32))
                    for which, imgs in (("eval", ev), ("ref", ref))]
            smp = {c: np.concatenate([v, sets[1][c]]) for c, v in sets[0].items()}
            tables.write_part(d, "samples", part, tables.to_table("samples", smp, meta))
            steps = 64
            if train_log:
                st = np.arange(1, steps + 1) * 4
                loss = 0.05 + 0.5 * np.exp(-st / (40 + k)) * (1 + 0.1 * rng.standard_normal(steps)) ** 2
                tables.write_part(d, "train_log", part, tables.to_table("train_log", {
                    "K": np.full(steps, k), "seed": np.full(steps, s), "step": st, "images_seen": st * 64,
                    "loss": loss}, meta))
            runs.append({"K": k, "seed": s, "model": "unet", "steps": steps * 4, "images_seen": steps * 256,
                         "final_loss": 0.05 + 0.01 * np.log(k), "checkpoint": f"models/K{k}-s{s}",
                         "wall_s": 1.0 + 0.01 * k, "params": None})
    tables.write_part(d, "runs", "all", tables.to_table("runs", tables.runs_rows(runs), meta))
    # the fractions table, as the classify stage computes it: per-seed fractions
    lab = tables.read_pandas(d, "labels")
    fr = {c: [] for c in tables.SCHEMAS["fractions"].names}
    for (k, s, m), g in lab.groupby(["K", "seed", "metric"], sort=True):
        for c, v in (("K", k), ("seed", s), ("metric", m), ("n", len(g)),
                     *((L, float((g["label"] == L).mean())) for L in tables.LABELS),
                     ("ratio_memorized", float(g["ratio_memorized"].mean()))):
            fr[c].append(v)
    tables.write_part(d, "fractions", "all", tables.to_table("fractions", fr, meta))
    if basins:
        _write_basins(d, lab, rng, meta)
    if stages:
        (d / "stages.json").write_text(json.dumps({
            "train": {"wall_s": 12.5, "units": len(ks) * len(seeds)}, "generate": {"wall_s": 3.25},
            "knn": {"wall_s": 1.5}, "classify": {"wall_s": 0.2}}))
    return d


def _write_rows(d: Path, name: str, rows: list[dict], meta) -> None:
    """Write dict rows as table ``name`` (columns the schema has and the rows lack are null)."""
    names = tables.SCHEMAS[name].names
    tables.write_part(d, name, "all", tables.to_table(name, {c: [r.get(c) for r in rows] for c in names}, meta))


def _write_basins(d: Path, lab, rng, meta) -> None:
    """Basins and energies where memorized samples have the widest basins and the lowest energy."""
    b, e = [], []
    t_of = {"memorized": 600, "spurious": 300, "generalized": 100, None: 400}
    m0 = lab["metric"].iloc[0]
    for (k, s), g in lab[lab["metric"] == m0].groupby(["K", "seed"], sort=True):
        items = [("sample", int(r.sample_id), r.label, r.d_train, r.d_synth, ("top", "bottom")[j % 2])
                 for j, r in enumerate(g.head(6).itertuples())]
        items += [("train", i, None, 0.0, None, None) for i in range(2)]
        items += [("held-out", 1000 + i, None, 0.5, None, None) for i in range(2)]
        for kind, item, label, dt, ds, pick in items:
            t = int(np.clip(t_of[label] * (200 / (k + 200)) + rng.normal(0, 30), 1, 999))
            b.append({"K": k, "seed": s, "metric": m0, "kind": kind, "item_id": item, "label": label,
                      "pick": pick, "d_train": dt, "d_synth": ds, "t_crit": t, "radius": 0.002 * t + rng.normal(0, 0.05)})
            for rk in ("train", "held-out"):
                e.append({"K": k, "seed": s, "kind": kind, "item_id": item, "label": label, "reference_kind": rk,
                          "reference_id": 0, "t": 0, "energy": t / 100 + rng.normal(0, 1),
                          "drift_potential": t / 100, "quad_error": 1e-4})
    _write_rows(d, "basins", b, meta)
    _write_rows(d, "energy", e, meta)
