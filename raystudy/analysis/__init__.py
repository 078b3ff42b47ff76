"""Analysis of a study from its tables alone: no torch, no Ray (pandas, numpy, pyarrow,
matplotlib, duckdb).

    from raystudy import analysis as A
    st = A.load("studies/demo")                 # every table, pandas, with a `study` column
    A.summary(st)                               # crossing K, EMM (+ intervals, grid bracket), spurious peak
    A.transition_figure(st)                     # the paper's transition curves, with error bars
    A.connect("studies/demo").sql(A.EXAMPLE_QUERY).df()   # DuckDB: a view per table
    A.draw_all("studies/demo")                  # every figure the study has, into studies/demo/figures
    A.write_report(["studies/demo"])            # the same figures + one self-contained report.html

A transition curve is one model's: on a study with snapshots, variants or twins, ``summary``,
``curves`` and the figures show each study's main model (``st.main()``: the config's first
variant at its final snapshot, twin 0), as ``raystudy show`` and the report do;
``checkpoints="all"`` pools every checkpoint into one curve. The DataFrame functions
(``transition_summary``, ``interval_curves``, ``seed_curves``, ``bootstrap_curves``) refuse a frame
of several models unless given ``checkpoints="all"`` (the frame has no config to say which model
is the main one: give them ``st.main()``'s tables). The ``phase`` module reads every checkpoint.

Estimators, each returning a DataFrame: ``load`` (tables, configs, DuckDB, the axis columns and a
study's main-model view), ``fractions`` (per-seed fractions, seed curves, per-K intervals,
bootstrap curves; ``curves`` of a loaded study), ``summaries`` (the crossing K, EMM, the spurious
peak, the summary table and its sentence; ``summary`` of a loaded study), ``transition`` (exact
per-K intervals, the logistic fit in log K with its profile-likelihood interval, the grid's
bracket), ``thresholds`` (relabel from stored distances,
sensitivity grid), ``phase`` (the phase diagram: fractions over K x training time x model size,
tau_mem(K) and its exponent, the crossing K per snapshot and variant, twin reproducibility).
Drawings: ``plots`` (every figure, one palette, and ``draw_all``, which decides which figures a
study has), ``images`` (nearest-neighbour grids; the one place that may import
``raystudy.datasets`` lazily for non-digits training pixels). Then ``report`` (``raystudy
report``: the page), ``export`` (the fractions as CSV and LaTeX) and ``synthetic`` (a study with a
known transition, written as tables, for tests and trying things out). Matplotlib is imported
only when a figure is drawn.
"""

from . import export, fractions, images, phase, plots, report, summaries, synthetic, transition
from .fractions import bootstrap_curves, curves, interval_curves, null_curve, per_seed_fractions, seed_curves
from .images import nn_grid, train_images
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
from .plots import (
    basins_figure,
    compare_figure,
    distances_figure,
    draw_all,
    energy_figure,
    sample_gallery,
    thresholds_figure,
    training_figure,
    transition_figure,
)
from .report import write_report
from .summaries import crossing_k, crossings, describe, format_k, summary, transition_summary
from .thresholds import default_grid, relabel, relabel_table, threshold_grid
from .transition import bracket, clopper_pearson, fit_crossing, fraction_intervals

__all__ = [
    "EXAMPLE_QUERY", "LABELS", "TABLES", "AnalysisError", "Studies", "connect", "load", "read_config",
    "read_stages", "read_table", "study_names", "thresholds", "bootstrap_curves", "crossing_k", "crossings",
    "curves", "describe", "format_k", "interval_curves", "null_curve", "per_seed_fractions", "seed_curves",
    "summary", "transition_summary", "default_grid", "relabel", "relabel_table", "threshold_grid", "bracket",
    "clopper_pearson", "fit_crossing", "fraction_intervals", "transition_figure", "compare_figure",
    "distances_figure", "thresholds_figure", "training_figure", "basins_figure", "energy_figure", "sample_gallery",
    "draw_all", "nn_grid", "train_images", "write_report",
    "export", "fractions", "images", "phase", "plots", "report", "summaries", "synthetic", "transition",
]
