"""The fractions per K behind the transition curves: per-seed fractions, their mean and spread
over seeds, per-K intervals and bootstrap replicates, one model per curve.

Two kinds of uncertainty, kept apart and both drawn:

* over **seeds** (training runs): the mean of the per-seed fractions and their standard
  deviation, from the ``fractions`` table (or recomputed from ``labels``);
* per K, an interval for the seed-mean fraction: exact (Clopper-Pearson) over samples with
  one seed, a hierarchical bootstrap (seeds, then samples within seed) with several
  (:func:`raystudy.analysis.transition.fraction_intervals`). Counts are n x fraction, so the
  ``fractions`` table alone is enough.

The point curve is the mean over seeds of the per-seed fractions, which is what the
``fractions`` table holds, so every number here matches the stage's output. The crossing K, EMM
and the spurious peak read off these curves are :mod:`raystudy.analysis.summaries`.

A transition curve is one model's. The tables of a study with snapshots, variants or twins hold
a row per checkpoint (columns ``variant``, ``twin``, ``images_seen``); the functions here that
read one curve (:func:`seed_curves`, :func:`interval_curves`, :func:`bootstrap_curves`) take
``checkpoints``: ``"main"`` (the default) wants the rows of one model and refuses a frame with
several (a plain frame has no config to say which is the main one: pass ``Studies.main()``'s
tables, or ``raystudy.axes.main_rows``), ``"all"`` pools the samples of every checkpoint at each
(K, seed) into one curve. A frame with one checkpoint, or without the axis columns, is read as
it is either way. :func:`curves` takes a loaded study (:func:`raystudy.analysis.load`) and reads
each study's main model, the numbers ``raystudy show``, the figures and the report give.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from .load import AXIS_COLUMNS, CHECKPOINTS, LABELS, Studies
from .transition import fraction_intervals

CURVE_COLS: tuple[str, ...] = (*LABELS, "ratio_memorized")
# the tables a one-curve function of a loaded study reads, restricted to the main model
CURVE_TABLES: tuple[str, ...] = ("labels", "fractions", "null_fractions")


def group_keys(df: pd.DataFrame) -> list[str]:
    """The grouping columns a table has besides K: ``study`` and ``metric``."""
    return [c for c in ("study", "metric") if c in df.columns]



# -- one model per curve -----------------------------------------------------------------------

_AXIS_WORDS = {"variant": "variants", "twin": "twin models", "images_seen": "snapshots"}


def several_checkpoints(df: pd.DataFrame | None) -> list[str]:
    """Per study whose rows are of more than one checkpoint (variant, twin, snapshot), what they
    are in words ('demo: 2 variants, 3 snapshots'); [] when every study's rows are one model's.
    A null ``images_seen`` (a part written without it) is the final model, not a snapshot."""
    axes = [c for c in AXIS_COLUMNS if df is not None and c in df.columns]
    if not axes or not len(df):
        return []
    out = []
    for s, g in df.groupby("study", sort=False) if "study" in df.columns else [(None, df)]:
        many = [f"{n} {_AXIS_WORDS[c]}" for c in axes if (n := g[c].nunique(dropna=True)) > 1]
        if many:
            out.append((f"{s}: " if s is not None else "") + ", ".join(many))
    return out


def pool_checkpoints(fractions: pd.DataFrame) -> pd.DataFrame:
    """Per-seed fractions with every checkpoint's samples at (study, metric, K, seed) counted as
    one: n summed, each fraction weighted by its n (what :func:`per_seed_fractions` gives on the
    labels of all checkpoints together). The axis columns are dropped."""
    axes = [c for c in AXIS_COLUMNS if c in fractions.columns]
    if not axes or not len(fractions):
        return fractions.drop(columns=axes)
    keys = group_keys(fractions) + ["K", "seed"]
    cols = [c for c in CURVE_COLS if c in fractions.columns]
    n = fractions["n"].astype(float)
    counts = fractions[cols].astype(float).mul(n, axis=0)
    counts[keys], counts["n"] = fractions[keys], n
    g = counts.groupby(keys, sort=True)[[*cols, "n"]].sum()
    out = g[cols].div(g["n"], axis=0)
    out.insert(0, "n", g["n"].round().astype(int))
    return out.reset_index()


def one_curve(fractions: pd.DataFrame | None, checkpoints: str = "main", what: str = "the rows") -> pd.DataFrame | None:
    """The per-seed fractions a one-curve function reads. ``checkpoints="main"``: ``fractions``
    as it is when each study's rows are one model's, else an :class:`AnalysisError` (which
    model is the main one is in the study's config, not in the frame); ``"all"``: every
    checkpoint pooled (:func:`pool_checkpoints`)."""
    if checkpoints not in CHECKPOINTS:
        raise AnalysisError(f"checkpoints must be 'main' or 'all', not {checkpoints!r}")
    many = several_checkpoints(fractions)
    if not many:
        return fractions
    if checkpoints == "all":
        return pool_checkpoints(fractions)
    raise AnalysisError(f"{what} hold several models ({'; '.join(many)}) and a transition curve is one model's: "
                        "pass the main model's rows (Studies.main(), raystudy.axes.main_rows), or "
                        "checkpoints='all' to pool every checkpoint into one curve")


# -- per-seed fractions and seed statistics ----------------------------------------------------

def per_seed_fractions(labels: pd.DataFrame) -> pd.DataFrame:
    """The ``fractions`` table recomputed from ``labels``: one row per study, metric, K, seed
    and, where ``labels`` has them, checkpoint (``variant``, ``twin``, ``images_seen``)."""
    keys = group_keys(labels) + ["K", "seed"] + [c for c in AXIS_COLUMNS if c in labels.columns]
    df = labels[keys].copy()
    for lab in LABELS:
        df[lab] = (labels["label"] == lab).astype(float)
    df["ratio_memorized"] = labels["ratio_memorized"].fillna(False).astype(float)
    # dropna=False: a null images_seen is the final model of a part written without it
    g = df.groupby(keys, sort=True, dropna=False)
    out = g[list(CURVE_COLS)].mean()
    out.insert(0, "n", g.size())
    return out.reset_index()


def seed_curves(fractions: pd.DataFrame, checkpoints: str = "main") -> pd.DataFrame:
    """Per (study, metric, K): mean over seeds of each fraction, its s.d. over seeds
    (``<col>_sd``, NaN with one seed), ``n_seeds`` and ``n`` (samples summed over seeds).
    ``checkpoints``: :func:`one_curve` (a frame of several models is refused unless ``"all"``)."""
    fractions = one_curve(fractions, checkpoints, "the fractions")
    keys = group_keys(fractions) + ["K"]
    cols = [c for c in CURVE_COLS if c in fractions.columns]
    g = fractions.groupby(keys, sort=True)
    out = g[cols].mean().join(g[cols].std(ddof=1).add_suffix("_sd"))
    out["n_seeds"] = g.size()
    out["n"] = g["n"].sum()
    return out.reset_index()


# -- bootstrap over samples --------------------------------------------------------------------

def _codes(lab: pd.DataFrame) -> np.ndarray:
    """Cell of each sample in a 3 x 2 table: label x ratio-test copy."""
    li = np.full(len(lab), -1)
    for j, name in enumerate(LABELS):
        li[(lab["label"] == name).to_numpy()] = j
    if (li < 0).any():
        bad = sorted(set(lab["label"][li < 0].astype(str)))
        raise ValueError(f"unknown labels {bad}")
    rm = lab["ratio_memorized"].fillna(False).to_numpy(bool)
    return li * 2 + rm


def replicate_curves(lab: pd.DataFrame, n_boot: int = 1000, seed: int = 0):
    """For one study and metric: (ks, point curves (nK, 4), bootstrap replicates (n_boot, nK, 4)),
    the 4 curves being memorized, spurious, generalized, ratio_memorized, each the mean over
    seeds of the per-seed fraction. Samples are resampled within each (K, seed)."""
    rng = np.random.default_rng(seed)
    ks = np.array(sorted(lab["K"].unique()))
    point = np.zeros((len(ks), 4))
    reps = np.zeros((n_boot, len(ks), 4))
    for a, k in enumerate(ks):
        at_k = lab[lab["K"] == k]
        seeds = sorted(at_k["seed"].unique())
        for s in seeds:
            codes = _codes(at_k[at_k["seed"] == s])
            n = len(codes)
            counts = np.bincount(codes, minlength=6).astype(float)
            draws = rng.multinomial(n, counts / n, size=n_boot).reshape(n_boot, 3, 2) / n
            point[a, :3] += counts.reshape(3, 2).sum(1) / n
            point[a, 3] += counts.reshape(3, 2)[:, 1].sum() / n
            reps[:, a, :3] += draws.sum(2)
            reps[:, a, 3] += draws[:, :, 1].sum(1)
        point[a] /= len(seeds)
        reps[:, a] /= len(seeds)
    return ks, point, reps


def per_k_counts(fr: pd.DataFrame, col: str, axis: str = "K") -> tuple[np.ndarray, list, list]:
    """(ks, per K the per-seed counts n x fraction, per K the per-seed n) of one curve; ``axis``:
    the column playing K's part (``images_seen`` for a curve over training time)."""
    fr = fr.sort_values([axis, "seed"])
    k = fr[axis].to_numpy()
    n = fr["n"].to_numpy(float)
    c = np.rint(n * fr[col].to_numpy(float))
    ks, start = np.unique(k, return_index=True)
    return ks, np.split(c, start[1:]), np.split(n, start[1:])


def interval_curves(fractions: pd.DataFrame, level: float = 0.95, n_boot: int = 1000,
                    seed: int = 0, checkpoints: str = "main") -> pd.DataFrame:
    """Per (study, metric, K): each curve's point value (mean over seeds) and its ``level``
    interval (``<col>_lo``, ``<col>_hi``): Clopper-Pearson with one seed, hierarchical
    bootstrap with several (:func:`raystudy.analysis.transition.fraction_intervals`).
    ``checkpoints``: :func:`one_curve` (a frame of several models is refused unless ``"all"``)."""
    fractions = one_curve(fractions, checkpoints, "the fractions")
    rows = []
    keys = group_keys(fractions)
    for gkey, fr in fractions.groupby(keys, sort=True) if keys else [((), fractions)]:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        point = fr.groupby("K", sort=True)[list(CURVE_COLS)].mean()
        out = pd.DataFrame({"K": point.index.astype(int)})
        for k_, v in zip(keys, gkey):
            out[k_] = v
        for c in CURVE_COLS:
            ks, counts, ns = per_k_counts(fr, c)
            lo, hi = fraction_intervals(counts, ns, level, n_boot, seed)
            out[c], out[f"{c}_lo"], out[f"{c}_hi"] = point[c].to_numpy(), lo, hi
        rows.append(out[[*keys, "K", *[x for c in CURVE_COLS for x in (c, f"{c}_lo", f"{c}_hi")]]])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def bootstrap_curves(labels: pd.DataFrame, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0, checkpoints: str = "main") -> pd.DataFrame:
    """:func:`interval_curves` of the fractions recomputed from ``labels``."""
    return interval_curves(per_seed_fractions(labels), level, n_boot, seed, checkpoints)



# -- a loaded study: its main model's curves ---------------------------------------------------

def fractions_of(st: Studies) -> pd.DataFrame:
    """The ``fractions`` table, or the same recomputed from ``labels`` when it is absent."""
    if st.has("fractions"):
        return st.fractions
    if st.has("labels"):
        return per_seed_fractions(st.labels)
    return pd.DataFrame()


def in_study_order(df: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Rows in the order the studies were given (groupby sorts them by name)."""
    if df.empty or "study" not in df:
        return df
    rank = {n: i for i, n in enumerate(names)}
    keys = ["study", *[c for c in ("metric", "K") if c in df]]
    return df.sort_values(keys, key=lambda c: c.map(rank) if c.name == "study" else c, kind="stable") \
        .reset_index(drop=True)


def curves(st: Studies, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
           checkpoints: str = "main") -> pd.DataFrame:
    """Per (study, metric, K): seed mean and s.d. of each fraction and its ``level`` interval
    (``<col>_lo`` / ``<col>_hi``: exact over samples with one seed, hierarchical bootstrap over
    seeds and samples with several; :func:`interval_curves`), of each study's main model
    (``Studies.main``); ``checkpoints="all"``: every checkpoint's samples pooled into one curve."""
    st = st.view(checkpoints, CURVE_TABLES)
    fr = fractions_of(st)
    sc = seed_curves(fr, checkpoints)
    if len(fr):
        ic = interval_curves(fr, level, n_boot, seed, checkpoints)
        ic = ic[[c for c in ic.columns if c.endswith(("_lo", "_hi")) or c in ("study", "metric", "K")]]
        sc = sc.merge(ic, on=["study", "metric", "K"], how="left")
    return in_study_order(sc, st.names)


def null_curve(st: Studies, study: str, metric: str) -> pd.DataFrame:
    """The chance level per K (table ``null_fractions``, mean over its rows per K; empty where
    absent or not computed): held-out real images labelled by the samples' rule."""
    if not st.has("null_fractions"):
        return pd.DataFrame(columns=["K", *LABELS])
    nf = st.null_fractions
    nf = nf[(nf["study"] == study) & (nf["metric"] == metric) & (nf["n"] > 0)]
    return nf.groupby("K", as_index=False)[list(LABELS)].mean().sort_values("K")
