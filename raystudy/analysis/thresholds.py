"""Threshold sensitivity: relabel from the stored raw distances, never touching the study.

The paper's rule (``raystudy.compute.classify.label_samples``): memorized if ``d_train <= delta_m``; spurious if not
memorized and ``d_synth <= delta_s``; generalized otherwise. Because ``labels`` stores
``d_train`` and ``d_synth``, any (delta_m, delta_s) gives new labels in microseconds. The
memorized fraction, hence the crossing K, depends on ``delta_m`` only; the spurious
fraction depends on both.

:func:`threshold_grid` reads one transition curve per grid cell, so it follows the rule of
:mod:`raystudy.analysis.fractions`' one-curve functions: ``checkpoints="main"`` (the default) wants
one model's rows (``Studies.main().labels``) and refuses labels of several checkpoints;
``"all"`` pools every checkpoint's samples at each (K, seed). :func:`relabel_table` keeps a row
per sample, checkpoints included, so it needs no such choice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..compute.classify import label_samples as relabel
from .fractions import group_keys, one_curve
from .summaries import crossings, peak


def relabel_table(labels: pd.DataFrame, delta_m: float, delta_s: float) -> pd.DataFrame:
    """A copy of a ``labels`` DataFrame (one metric's units!) with ``label`` recomputed."""
    out = labels.copy()
    out["label"] = relabel(out["d_train"], out["d_synth"], delta_m, delta_s)
    return out


def default_grid(delta: float, n: int = 9, span: float = 4.0) -> np.ndarray:
    """``n`` thresholds spaced evenly in log from ``delta / span`` to ``delta * span``."""
    return float(delta) * np.geomspace(1.0 / span, span, n)


def threshold_grid(labels: pd.DataFrame, delta_m, delta_s, half: float = 0.5, checkpoints: str = "main") -> pd.DataFrame:
    """Relabel on every (delta_m, delta_s) of the grid and summarise each labelling.

    One row per (study, metric, delta_m, delta_s): ``k_cross`` (memorized crosses ``half``,
    log-K interpolation; 0 / inf as in :func:`raystudy.analysis.summaries.crossings`),
    ``spurious_peak_k`` and ``spurious_peak`` (K and height of the largest spurious
    fraction), ``memorized_kmin`` and ``generalized_kmax`` (the ends of the curves). Curves
    are means over seeds of per-seed fractions, like the ``fractions`` table. Give
    ``labels`` of one metric, or thresholds meaningful for every metric it holds.
    ``checkpoints``: :func:`raystudy.analysis.fractions.one_curve` (labels of several models are
    refused unless ``"all"``, which counts every checkpoint's samples at (K, seed) as one)."""
    if checkpoints != "all":
        # the keyword check and the refusal are one_curve's; "all" is what the loop below does,
        # since it groups samples by (K, seed) whatever their checkpoint
        one_curve(labels, checkpoints, "the labels")
    dm = np.asarray(delta_m, float).ravel()
    ds = np.asarray(delta_s, float).ravel()
    keys = group_keys(labels)
    rows = []
    for gkey, lab in labels.groupby(keys, sort=True) if keys else [((), labels)]:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        ks = np.array(sorted(lab["K"].unique()))
        mem = np.zeros((len(dm), len(ks)))
        spur = np.zeros((len(dm), len(ds), len(ks)))
        for a, k in enumerate(ks):
            at_k = lab[lab["K"] == k]
            seeds = sorted(at_k["seed"].unique())
            for s in seeds:
                g = at_k[at_k["seed"] == s]
                m = g["d_train"].to_numpy(float)[None, :] <= dm[:, None]              # (n_dm, n)
                close = g["d_synth"].to_numpy(float)[None, :] <= ds[:, None]          # (n_ds, n)
                mem[:, a] += m.mean(1)
                spur[:, :, a] += (~m[:, None, :] & close[None, :, :]).mean(2)
            mem[:, a] /= len(seeds)
            spur[:, :, a] /= len(seeds)
        kc = crossings(ks, mem, half)                                                 # (n_dm,)
        pk, pv = peak(ks, spur)                                                       # (n_dm, n_ds)
        gen_kmax = 1 - mem[:, -1][:, None] - spur[:, :, -1]
        for i in range(len(dm)):
            for j in range(len(ds)):
                row = dict(zip(keys, gkey))
                row.update(K_min=int(ks[0]), K_max=int(ks[-1]), delta_m=dm[i], delta_s=ds[j], k_cross=float(kc[i]),
                           spurious_peak_k=int(pk[i, j]),
                           spurious_peak=float(pv[i, j]), memorized_kmin=float(mem[i, 0]),
                           generalized_kmax=float(gen_kmax[i, j]))
                rows.append(row)
    return pd.DataFrame(rows)
