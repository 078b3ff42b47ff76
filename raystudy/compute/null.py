"""The chance level of a study: held-out real images labelled with the samples' rule.

A perfect generalizer's samples are fresh draws from the data distribution, as the held-out split is
(``splits.held_out``: the dataset's own test split where it has one; no K-set holds it). So
the fractions the labelling rule gives held-out images at a K are what "memorized" / "spurious" mean
by chance there: a sample fraction at or below them is no evidence of memorization. Every image of
the split is a query: d_train is its distance to the nearest image of the K-set; d_synth to the
nearest other image of the split (leave-one-out, the query itself excluded by index), so the split
less the query plays the samples' `ref` set, with data.held_out - 1 references. The ratio test is on
per-pixel L2, as for samples.

The spurious chance level is therefore that of data.held_out - 1 references. The samples' ref set
has generate.n_samples images: where that differs, theirs is not the same chance (more references,
a closer nearest one, more spurious; fewer, less), and the spurious fractions compare fairly only
when the two are alike. Where the held-out split is a dataset's test split that holds
near-duplicates of training images (a few percent of CIFAR-10's test images), those pass for
copies: the chance level is that of the test split as it is, duplicates included.

Pixel metrics only (l2, euclidean: brute force, exact); for an LPIPS metric the null is not
computed (its row has n = 0 and NaN fractions). Plain numpy, no Ray, no torch.
"""

from __future__ import annotations

import numpy as np

from ..splits import held_out, kset
from .classify import fractions, label_distances

PIXEL_METRICS = ("l2", "euclidean")


def nearest_other(x: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Squared distance (n,) from each row of ``x`` (n, ...) to its nearest other row (inf where
    n < 2). The row itself is excluded by its index, not its distance: a duplicate elsewhere in
    ``x`` is a reference at distance 0. Float64 products over ``chunk`` references at a time find
    the nearest; its distance is then taken as a difference, where the products' expansion
    ||x||^2 + ||y||^2 - 2 x.y loses about 1e-16 of the norms (a duplicate gives exactly 0)."""
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(len(x), int(np.prod(x.shape[1:])))
    n = len(x)
    xx = np.einsum("ij,ij->i", x, x)
    best = np.full(n, np.inf)
    arg = np.full(n, -1, dtype=np.int64)
    rows = np.arange(n)
    for s in range(0, n, chunk):
        r = x[s:s + chunk]
        d = xx[:, None] - 2 * x @ r.T + xx[None, s:s + chunk]
        own = np.arange(s, s + len(r))
        d[own, own - s] = np.inf
        j = d.argmin(1)
        v = d[rows, j]
        closer = v < best
        best[closer], arg[closer] = v[closer], j[closer] + s
    out = np.full(n, np.inf)
    for s in range(0, n, chunk):
        i = rows[s:s + chunk][arg[s:s + chunk] >= 0]
        diff = x[arg[i]] - x[i]
        out[i] = np.einsum("ij,ij->i", diff, diff)
    return out


def null_labels(cfg, dataset, metric: str, k: int, twin: int = 0) -> dict | None:
    """d_train, d_synth, label, ratio, ratio_memorized of every held-out image at K (None: not
    computed), against the K-set of the study (twin 0) or of the twins (raystudy.axes)."""
    from ..axes import Axis
    from ..metrics import get_metric
    from ..metrics.search import nearest_two

    if metric not in PIXEL_METRICS or cfg.data.held_out < 2:
        return None
    queries = held_out(cfg, dataset)
    train = kset(cfg, dataset, Axis(twin=twin), k)
    m = get_metric(metric)
    qx = dataset.get(queries)
    q = m.embed(qx)
    # The two nearest, as the neighbors table's train_dist column.
    train_dist = m.from_sq(nearest_two(q, dataset, train, m.embed))
    synth_dist = m.from_sq(nearest_other(q))[:, None]
    # The ratio test is on per-pixel L2 whatever the metric: for l2, train_dist itself.
    if metric == "l2":
        l2 = train_dist
    else:
        pix = get_metric("l2")
        l2 = pix.from_sq(nearest_two(pix.embed(qx), dataset, train, pix.embed))
    return label_distances(train_dist, synth_dist, l2, cfg.classify.delta_m[metric], cfg.classify.delta_s[metric])


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
