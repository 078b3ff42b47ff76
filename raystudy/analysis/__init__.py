"""Analysis of a study from its tables alone: no torch, no Ray (pandas, numpy, pyarrow,
matplotlib, duckdb).

    from raystudy import analysis as A
    st = A.load("studies/demo")                 # every table, pandas, with a `study` column
    A.summary(st)                               # crossing K, EMM (+ intervals, grid bracket), spurious peak
    A.transition_figure(st)                     # the paper's transition curves, with error bars
    A.connect("studies/demo").sql(A.EXAMPLE_QUERY).df()   # DuckDB: a view per table
    A.write_report(["studies/demo"])            # PNGs + one self-contained report.html

A transition curve is one model's: on a study with snapshots, variants or twins, ``summary``,
``curves`` and the figures show each study's main model (``st.main()``: the config's first
variant at its final snapshot, twin 0), as ``raystudy show`` and the report do;
``checkpoints="all"`` pools every checkpoint into one curve. The DataFrame functions
(``transition_summary``, ``interval_curves``, ``seed_curves``, ``bootstrap_curves``) refuse a frame
of several models unless given ``checkpoints="all"`` (the frame has no config to say which model
is the main one: give them ``st.main()``'s tables). The ``phase`` module reads every checkpoint.

Modules: ``load`` (tables, configs, DuckDB), ``stats`` (seed curves, per-K intervals, the
summary: crossing K, EMM, spurious peak), ``transition`` (exact per-K intervals, the logistic fit
in log K with its profile-likelihood interval, the grid's bracket), ``thresholds`` (relabel from
stored distances, sensitivity grid),
``figures`` (curves, distances, thresholds, training, basins, energy), ``images``
(nearest-neighbour grids; the one place that may import ``raystudy.datasets`` lazily for
non-digits training pixels), ``report`` (``raystudy report``), ``synthetic`` (a study
with a known transition, written as tables, for tests and trying things out), ``phase`` (the
phase diagram: fractions over K x training time x model size, tau_mem(K) and its exponent,
the crossing K per snapshot and variant, twin reproducibility).
Matplotlib is imported only when a figure is drawn.
"""

from .load import (
    EXAMPLE_QUERY,
    LABELS,
    TABLES,
    AnalysisError,
    Studies,
    connect,
    load,
    read_config,
    read_stages,
    read_table,
    study_names,
    thresholds,
)
from .stats import (
    bootstrap_curves,
    crossing_k,
    crossings,
    describe,
    format_k,
    interval_curves,
    per_seed_fractions,
    seed_curves,
    transition_summary,
)
from .thresholds import default_grid, relabel, relabel_table, threshold_grid
from .transition import bracket, clopper_pearson, fit_crossing, fraction_intervals


def __getattr__(name):
    # Figure functions import matplotlib: keep them out of `import raystudy.analysis`.
    import importlib

    if name in ("figures", "images", "report", "synthetic", "phase"):
        return importlib.import_module(f".{name}", __name__)
    for mod in (importlib.import_module(f".{m}", __name__) for m in ("figures", "images", "report")):
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"module 'raystudy.analysis' has no attribute {name!r}")


__all__ = [
    "EXAMPLE_QUERY", "LABELS", "TABLES", "AnalysisError", "Studies", "connect", "load", "read_config",
    "read_stages", "read_table", "study_names", "thresholds", "bootstrap_curves", "crossing_k", "crossings",
    "describe", "format_k", "interval_curves", "bracket", "clopper_pearson", "fit_crossing",
    "fraction_intervals", "per_seed_fractions", "seed_curves", "transition_summary", "default_grid", "relabel",
    "relabel_table", "threshold_grid",
    # lazily: figures.*, images.nn_grid / train_images, report.write_report / main
    "curves", "summary", "transition_figure", "compare_figure", "distances_figure", "thresholds_figure",
    "training_figure", "basins_figure", "energy_figure", "nn_grid", "train_images", "write_report",
]
