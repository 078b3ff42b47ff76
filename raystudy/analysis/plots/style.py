"""The one palette and the one resolution of every figure, and the log K axis they share."""

from __future__ import annotations

import numpy as np

# The one palette of the labels (and of the basins' image kinds): every figure, the sample
# gallery and the report's captions take their colours and colour words from here.
COLORS = {"memorized": "tab:red", "spurious": "tab:orange", "generalized": "tab:green",
          "ratio_memorized": "tab:purple", "train": "tab:blue", "held-out": "tab:gray"}
COLOR_NAMES = {k: v.removeprefix("tab:") for k, v in COLORS.items()}
# One colour per study (compare) or per variant (the phase diagram).
STUDY_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive")
DPI = 150  # what the report and the figures stage save at: readable on a laptop screen


def pyplot():
    """matplotlib.pyplot, imported when a figure is drawn (never by importing raystudy.analysis)."""
    import matplotlib.pyplot as plt

    return plt


def k_axis(ax, ks) -> None:
    """A log K axis labelled with plain numbers: the grid K themselves where they are few and
    spread enough for their labels not to touch, else decades (1-2-5 steps on a grid spanning
    under two decades, where a log axis has one decade tick at most and labels its minor ticks,
    which overlap: '2x10^0 3x10^0'). Minor ticks are never labelled."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ks = np.unique(np.asarray(ks, float))
    ks = ks[np.isfinite(ks) & (ks > 0)]
    if len(ks):
        span = np.log(ks.max() / ks.min())
        if len(ks) <= 8 and (len(ks) < 2 or np.diff(np.log(ks)).min() >= span / 20):
            ax.xaxis.set_major_locator(FixedLocator(ks))
        elif span < np.log(100):
            ax.xaxis.set_major_locator(LogLocator(10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
