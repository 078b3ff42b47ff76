"""Every drawing of a study, and :func:`draw_all`, the one function that decides which figures a
study has and writes them: the figures stage (``raystudy run``) calls it into the study's
``figures/`` folder, ``raystudy report`` into the report's folder, and the page embeds what it
drew. Nothing here computes a number a notebook cannot get as a DataFrame
(:mod:`raystudy.analysis.fractions`, :mod:`raystudy.analysis.summaries`,
:mod:`raystudy.analysis.phase`, ...); each figure function returns a matplotlib Figure (None
where its table or axis is absent) and leaves saving to the caller, so in a notebook it shows
inline.

Modules: ``style`` (the one palette, the resolution, the log K axis), ``transition`` (the
fractions vs K, several studies compared), ``distances`` (d_train / d_synth and the threshold
grid), ``runs`` (training, basins, energy), ``gallery`` (random samples at every K), ``phase``
(the phase diagram). The nearest-neighbour grid is :func:`raystudy.analysis.images.nn_grid`,
beside the training pixels it reads. Matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ... import tables
from ...models.kinds import kind
from ..fractions import curves
from ..images import nn_grid
from ..load import LABELS, Studies, load
from ..phase import phase_tables, tau_gap
from ..summaries import summary
from ..thresholds import default_grid, threshold_grid
from .distances import distances_figure, thresholds_figure
from .gallery import sample_gallery
from .phase import crossing_figure, gap_figure, phase_figure, size_figure, tau_figure, twins_figure
from .runs import basins_figure, closed_form, energy_figure, training_figure, training_notes
from .style import COLOR_NAMES, COLORS, DPI, STUDY_COLORS, k_axis
from .transition import compare_figure, crossing_text, transition_figure

_C = COLOR_NAMES

# What each figure shows, written beside it on the report's page; colour words come from the
# palette (plots.style).
CAPTIONS = {
    "transition": f"Memorized ({_C['memorized']}) / spurious ({_C['spurious']}) / generalized ({_C['generalized']}) "
                  "fraction vs training-set size K (log axis), one panel per metric{per_study}, its numbers "
                  "written under it. Lines: mean over seeds; error bars: ±1 s.d. over seeds (when more than "
                  "one); bands: {level:.0%} interval per K (exact over samples; a hierarchical bootstrap over seeds "
                  f"and samples with several seeds). Dashed {_C['ratio_memorized']}: the ratio test (NN1/NN2 < 1/3 "
                  f"on per-pixel L2) beside the paper's rule. Dashed {_C['memorized']} vertical: the K where "
                  "memorized crosses 1/2 (logistic fit in log K), shaded: its interval, hatched: the bracket of grid "
                  f"K significantly above / below 1/2; dotted {_C['ratio_memorized']} and shaded: EMM (the ratio "
                  "test's fraction = 0.9); star: the spurious peak; dotted with crosses: the null (held-out real "
                  "images under the same rule).",
    "compare": "The studies on one axis per metric: memorized (top) and spurious (bottom) fractions vs K with "
               "their per-K intervals; dashed lines: each study's crossing K (logistic fit), shaded: its interval.",
    "distances": "Histograms of d_train (distance to the nearest training image) and d_synth (to the nearest "
                 "sample of the independent second set) per K, stacked by label "
                 f"({_C['memorized']}: memorized, {_C['spurious']}: spurious, {_C['generalized']}: generalized), "
                 "log-spaced bins; dashed: the thresholds delta_m and delta_s.",
    "thresholds": "Relabelled from the stored distances on a grid of delta_m × delta_s (1/4× to 4× the study's "
                  "thresholds): the crossing K, the K of the spurious peak and its height; the box marks the "
                  "study's thresholds.",
    "nn": "Samples (left) beside their top training neighbours and their top neighbours in the other sample "
          "set, distance under each image; samples spread from closest to farthest d_train.",
    "gallery": "Randomly drawn samples of the labelled set at every K (one row per K, the same draw every "
               f"time), each framed and captioned with its label ({_C['memorized']}: memorized, "
               f"{_C['spurious']}: spurious, {_C['generalized']}: generalized) and its d_train.",
    "training": "Training loss vs images seen per run (colour: K) from the train_log table, and the final loss "
                "and wall time per run from the runs table.",
    "basins": "Critical time t_crit per K, by sample label (or image kind: training / held-out), and the basin "
              "radius vs t_crit.",
    "energy": "Relative energy E(reference) − E(item) along the quarter circle, per K and label, one panel per "
              "reference kind.",
    "phase": "Phase diagram: the memorized, spurious, generalized and null (held-out images, chance) fractions "
             "over K (columns) x training time (rows: images seen at each snapshot), one row of panels per "
             "variant and metric; under it, tau_mem per K.",
    "phase_size": "Phase diagram over model size: each fraction over K x variant (rows ordered by parameter count) "
                  "at each variant's final snapshot.",
    "tau_mem": "tau_mem(K): the images seen at which the memorized fraction first exceeds 1/2, per K (log-log), "
               "with its 95% interval (a logistic in ln t, profile likelihood clipped to the bracket of snapshots "
               "significantly below / above 1/2); triangles: censored K (bounds). Line: tau = c K^b from a joint "
               "binomial likelihood over every (K, snapshot), b's 95% profile interval in the legend; dotted: "
               "slope 1, Bonnaire et al.'s prediction. Open squares, where the runs measured loss curves: tau_gap "
               "per run, the images seen at which the held-out gap opened, with its 95% bracket (where the "
               "training loss reaches half the held-out loss); open triangles: the gap did not open by the last evaluation.",
    "gap": "The held-out gap (held-out minus training denoising loss of the EMA model, on fixed batches of "
           "training and held-out images with fixed noise) vs images seen, one panel per variant, one line per "
           "run coloured by K: at the noise level that opened the gap, the mean over the levels where it never "
           "opened. Dot: tau_gap, the first evaluation at which, at some noise level, the gap's rise since the "
           "first evaluation passes a threshold in standard errors over the items (Bonferroni over the levels) "
           "and the training loss is below half the held-out loss, and both still hold at the next evaluation; "
           "bar: its 95% bracket, from the evaluation after the last whose relative gap is significantly "
           "below 1/2 to the first where it is significantly above (to the last evaluation where none is).",
    "crossing_axes": "The crossing K (memorized = 1/2) with its 95% interval per snapshot (left) and per model "
                     "size at the final snapshot (right).",
    "twins": "Twin reproducibility: the fraction of twin pairs (two models on disjoint K-sets, same noise) closer "
             "than delta_m, with its 95% interval, beside the memorized fraction, at the final snapshot; dotted: "
             "the median twin distance (right axis).",
}

# The tables draw_all reads (those this raystudy knows).
DRAW_TABLES = ("runs", "train_log", "labels", "fractions", "null_fractions", "basins", "basin_trials", "basin_rates",
               "energy", "twins", "loss_curves")
@dataclass(frozen=True)
class Drawn:
    """One figure written: its PNG, what it shows, and the report's section it belongs to."""

    path: Path
    caption: str
    section: str


@dataclass
class Drawing:
    """What :func:`draw_all` drew (``figures``, in the page's order) and did not (``notes``, one
    sentence each), with the numbers it drew them from: the main model's ``curves`` and
    ``summary`` (:func:`raystudy.analysis.fractions.curves`, :func:`~raystudy.analysis.summaries.summary`),
    the relabelling ``grids`` by file stem (``thresholds_<metric>``), the ``phase`` tables
    (:func:`raystudy.analysis.phase.phase_tables`; {} without snapshots, variants or twins) and
    ``gaps`` (:func:`raystudy.analysis.phase.tau_gap` of every run with loss curves, the phase
    tables' ``tau_gap`` where there are those)."""

    figures: list[Drawn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    grids: dict[str, pd.DataFrame] = field(default_factory=dict)
    phase: dict[str, pd.DataFrame] = field(default_factory=dict)
    gaps: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def paths(self) -> list[Path]:
        return [d.path for d in self.figures]


def safe_name(name: str) -> str:
    """A study or metric name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "study"


def save(fig, png: Path, pdf: bool = False, dpi: int = DPI) -> Path:
    """Write ``fig`` as ``png`` (and beside it as PDF), each atomically, and close it."""
    import matplotlib.pyplot as plt

    # atomically: a page or a folder read while it is being rewritten never shows half an image
    with tables.atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if pdf:
        with tables.atomic_path(png.with_suffix(".pdf")) as tmp:
            fig.savefig(tmp, bbox_inches="tight", format="pdf")
    plt.close(fig)
    return png


def _pick_k(labels: pd.DataFrame, label: str, k_cross: float):
    """The K for a label's neighbour grid: the K with samples of that label nearest (in log K)
    to the crossing, or the K with the most such samples when the crossing is outside the range."""
    import numpy as np

    counts = labels.loc[labels["label"] == label, "K"].value_counts()
    if counts.empty:
        return None
    ks = np.array(sorted(counts.index))
    if 0 < k_cross < np.inf:
        return int(ks[np.argmin(np.abs(np.log(ks) - np.log(k_cross)))])
    return int(counts.sort_index().idxmax())


def _grid_metric(config: dict, metrics: list[str]) -> str:
    """The metric of the all-labels neighbour grid: the config's first (``knn.metrics``), else the
    first labelled one."""
    first = ((config or {}).get("knn") or {}).get("metrics") or []
    return first[0] if first and first[0] in metrics else metrics[0]


def draw_all(studies, out: str | Path | None = None, n_boot: int = 1000, level: float = 0.95, pdf: bool = False) -> Drawing:
    """Draw every figure ``studies`` have into ``out`` (default: the first study's ``figures/``)
    as PNG (``pdf``: and PDF) at :data:`~raystudy.analysis.plots.style.DPI`; returns the
    :class:`Drawing`. ``studies``: a study folder, a list of them, or a loaded
    :class:`~raystudy.analysis.load.Studies` (with :data:`DRAW_TABLES`).

    What a study has: the transition (several studies: compared on one axis); per study and
    metric the distances, the threshold grid, and where the samples are images the neighbour
    grids (all labels at the K nearest memorized = 1/2, once per study; then each label near the
    crossing) and the sample gallery; the training runs; the phase diagram where a study has
    snapshots, variants or twins; the held-out gap where the runs measured loss curves; basins and
    energy where those tables are. The transition
    figures show each study's main model (:meth:`raystudy.analysis.load.Studies.main_view`); the phase
    diagram every checkpoint. What is absent is a note, not an error."""
    if not isinstance(studies, Studies):
        studies = load(studies, tables=[t for t in DRAW_TABLES if t in tables.SCHEMAS])
    st_all, (st, _) = studies, studies.main_view()
    out = Path(out) if out is not None else st.dirs[st.names[0]] / "figures"
    multi = len(st.names) > 1
    drawing = Drawing(curves=curves(st, n_boot, level), summary=summary(st, n_boot, level))
    cv, sm, notes = drawing.curves, drawing.summary, drawing.notes

    def add(fig, stem: str, caption: str, section: str) -> None:
        if fig is not None:
            drawing.figures.append(Drawn(save(fig, out / f"{stem}.png", pdf), caption, section))

    add(transition_figure(st, cv, sm, level=level), "transition",
        CAPTIONS["transition"].format(per_study=" and study" if multi else "", level=level), "Transition")
    if multi:
        add(compare_figure(st, cv, sm, level=level), "compare", CAPTIONS["compare"], "Transition")
    for s in st.names:
        pre = f"{safe_name(s)}_" if multi else ""
        one = st.one(s)
        lab_s = one.labels if one.has("labels") else pd.DataFrame()
        if lab_s.empty:
            notes.append(f"{s}: no labels table: distance, threshold and neighbour figures not drawn")
        metrics = sorted(lab_s["metric"].unique()) if len(lab_s) else []
        # The circle's samples are points in the plane, not pictures: no neighbour grid or gallery
        # (the figures stage draws the circle's own figures from its models, raystudy.datasets.toy).
        pictures = not kind(one.configs[s] or {}).ve
        if metrics and not pictures:
            notes.append(f"{s}: its samples are points in the plane, not images: no neighbour grids or sample "
                         "gallery")
        for m in metrics:
            lm = lab_s[lab_s["metric"] == m]
            add(distances_figure(one, s, m), f"{pre}distances_{safe_name(m)}", CAPTIONS["distances"],
                f"Distances and thresholds · {s}")
            dm0, ds0 = one.thresholds(s, m)
            grid = threshold_grid(lm, default_grid(dm0), default_grid(ds0))
            drawing.grids[f"{pre}thresholds_{safe_name(m)}"] = grid
            add(thresholds_figure(grid, dm0, ds0, title=f"{s} · {m}"), f"{pre}thresholds_{safe_name(m)}",
                CAPTIONS["thresholds"], f"Distances and thresholds · {s}")
            if not pictures:
                continue
            mem = cv[(cv["study"] == s) & (cv["metric"] == m)].set_index("K")["memorized"]
            if m == _grid_metric(one.configs[s], metrics) and len(mem):
                # every label at the K whose memorized fraction is nearest 1/2 (all three likely), the
                # main model's
                k = int((mem - 0.5).abs().idxmin())
                try:
                    fig = nn_grid(st.dirs[s], K=k, label=None, metric=m, config=one.configs[s])
                except Exception as e:  # noqa: BLE001 - a grid is decoration: say why, keep the rest
                    notes.append(f"{s} · {m}: neighbour grid not drawn ({type(e).__name__}: {e})")
                else:
                    add(fig, f"{pre}nn_grid", CAPTIONS["nn"] + f" Here: samples of every label at K = {k}, where "
                        "the memorized fraction is nearest 1/2.", f"Nearest neighbours · {s}")
            row = sm[(sm["study"] == s) & (sm["metric"] == m)]
            kc = float(row["k_cross"].iloc[0]) if len(row) else float("nan")
            for label in LABELS:
                k = _pick_k(lm, label, kc)
                if k is None:
                    notes.append(f"{s} · {m}: no {label} sample at any K: no {label} neighbour grid")
                    continue
                try:
                    fig = nn_grid(st.dirs[s], K=k, label=label, metric=m, config=one.configs[s])
                except Exception as e:  # noqa: BLE001 - a grid is decoration: say why, keep the rest
                    notes.append(f"{s} · {m}: {label} neighbour grid not drawn ({type(e).__name__}: {e})")
                    continue
                add(fig, f"{pre}nn_{safe_name(m)}_{label}_K{k}", CAPTIONS["nn"] + f" Here: {label} samples of K = {k}.",
                    f"Nearest neighbours · {s}")
            try:
                fig = sample_gallery(st.dirs[s], metric=m)
            except Exception as e:  # noqa: BLE001 - a gallery is decoration: say why, keep the rest
                notes.append(f"{s} · {m}: sample gallery not drawn ({type(e).__name__}: {e})")
            else:
                add(fig, f"{pre}gallery_{safe_name(m)}", CAPTIONS["gallery"] + f" Labels: {m}.",
                    f"Samples at every K · {s}")
    notes += training_notes(st)
    add(training_figure(st), "training", CAPTIONS["training"], "Training")
    # training time, model size, twins: every checkpoint, where a study has more than one
    # snapshot or variant, or a twins table
    drawing.phase = phase_tables(st_all, level, n_boot)
    if drawing.phase:
        ph, sec = drawing.phase, "Phase diagram"
        add(phase_figure(ph["phase"], ph["tau_mem"]), "phase", CAPTIONS["phase"], sec)
        add(size_figure(ph["phase"]), "phase_size", CAPTIONS["phase_size"], sec)
        add(tau_figure(ph["tau_mem"], ph["tau_exponent"], ph["tau_gap"]), "tau_mem", CAPTIONS["tau_mem"], sec)
        add(crossing_figure(ph["crossings_by_axis"]), "crossing_axes", CAPTIONS["crossing_axes"], sec)
        add(twins_figure(ph["reproducibility"], ph["phase"]), "twins", CAPTIONS["twins"], sec)
    # The gap is a run's own measurement: a study without snapshots or variants has it too.
    if st_all.has("loss_curves"):
        drawing.gaps = drawing.phase["tau_gap"] if drawing.phase else tau_gap(st_all.loss_curves, level)
        add(gap_figure(st_all.loss_curves, drawing.gaps), "gap", CAPTIONS["gap"],
            "Phase diagram" if drawing.phase else "Training")
    for table, fn in (("basins", basins_figure), ("energy", energy_figure)):
        if st.has(table):
            add(fn(st), table, CAPTIONS[table], "Basins and energy")
        else:
            notes.append(f"{table} table absent: no {table} figure drawn")
    return drawing


__all__ = ["CAPTIONS", "COLORS", "COLOR_NAMES", "DPI", "DRAW_TABLES", "STUDY_COLORS", "Drawing", "Drawn",
           "basins_figure", "closed_form", "compare_figure", "crossing_figure", "crossing_text", "distances_figure",
           "draw_all", "energy_figure", "gap_figure", "k_axis", "phase_figure", "safe_name", "sample_gallery", "save",
           "size_figure", "tau_figure", "thresholds_figure", "training_figure", "training_notes",
           "transition_figure", "twins_figure"]
