"""The chance level of a study: held-out real images labelled with the samples' rule.

A perfect generalizer's samples are fresh draws from the data distribution, as the held-out split is
(``datasets.study_held_out``: the dataset's own test split where it has one; no K-set holds it). So
the fractions the labelling rule gives held-out images at a K are what "memorized" / "spurious" mean
by chance there: a sample fraction at or below them is no evidence of memorization. The split's
first half are the queries: d_train is the distance to the nearest image of the K-set; d_synth the
distance to the nearest image of the second half, which plays the samples' `ref` set (it has
data.held_out - data.held_out // 2 images, the ref set generate.n_samples: spurious fractions
compare fairly when the two are alike). The ratio test is on per-pixel L2, as for samples.

Pixel metrics only (l2, euclidean: brute force, exact); for an LPIPS metric the null is not
computed (its row has n = 0 and NaN fractions). Plain numpy, no Ray, no torch.
"""

from __future__ import annotations

import numpy as np

from .labels import fractions, label_samples, ratio_test

PIXEL_METRICS = ("l2", "euclidean")


def split(dataset, reserve: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(queries, references): the held-out split's first half and the rest, as dataset indices."""
    from .datasets import study_held_out

    held = study_held_out(dataset, reserve, seed)
    return held[: len(held) // 2], held[len(held) // 2:]


def nearest_two(queries: np.ndarray, dataset, idx: np.ndarray, embed, chunk: int = 4096) -> np.ndarray:
    """Squared distances (m, 2) from each embedded query to its two nearest of ``dataset[idx]``
    (inf where fewer than two), reading the references ``chunk`` at a time."""
    best = np.full((len(queries), 2), np.inf)
    q = queries.astype(np.float64)
    qq = (q ** 2).sum(1)[:, None]
    for s in range(0, len(idx), chunk):
        r = embed(dataset.get(idx[s:s + chunk])).astype(np.float64)
        d = np.maximum(qq - 2 * q @ r.T + (r ** 2).sum(1)[None], 0.0)
        best = np.sort(np.concatenate([best, d], 1), 1)[:, :2]
    return best


def null_labels(cfg, dataset, metric: str, k: int, twin: int = 0) -> dict | None:
    """d_train, d_synth, label, ratio, ratio_memorized of the held-out queries at K (None: not computed),
    against the K-set of the study (twin 0) or of the twins (raystudy.axes)."""
    from .axes import dataset_kset
    from .metrics import get_metric

    if metric not in PIXEL_METRICS or cfg.data.held_out < 2:
        return None
    queries, refs = split(dataset, cfg.data.held_out, cfg.study.seed)
    train = dataset_kset(cfg, dataset, k, twin)
    emb = get_metric(metric).embed
    qx = dataset.get(queries)
    q = emb(qx)
    from_sq = get_metric(metric).from_sq
    d_train = from_sq(nearest_two(q, dataset, train, emb)[:, 0])
    d_synth = from_sq(nearest_two(q, dataset, refs, emb)[:, 0])
    if metric == "l2":
        l2 = from_sq(nearest_two(q, dataset, train, emb))
    else:
        pix = get_metric("l2")
        l2 = pix.from_sq(nearest_two(pix.embed(qx), dataset, train, pix.embed))
    ratio, ratio_mem = ratio_test(l2[:, 0], l2[:, 1])
    label = label_samples(d_train, d_synth, cfg.classify.delta_m[metric], cfg.classify.delta_s[metric])
    return {"d_train": d_train, "d_synth": d_synth, "label": label, "ratio": ratio, "ratio_memorized": ratio_mem}


def null_fractions(cfg, dataset, metric: str, k: int, seed: int, twin: int = 0) -> dict:
    """Table ``null_fractions``' row for (K, seed, metric) (without the axis columns); the same for
    every training seed (the null depends on the K-set and the split only), stored per seed to match
    its unit."""
    lab = null_labels(cfg, dataset, metric, k, twin)
    if lab is None:
        return {"K": [k], "seed": [seed], "metric": [metric], "n": [0], "memorized": [np.nan],
                "spurious": [np.nan], "generalized": [np.nan], "ratio_memorized": [np.nan]}
    n = len(lab["label"])
    return fractions(np.full(n, k), np.full(n, seed), np.full(n, metric), lab["label"], lab["ratio_memorized"])
