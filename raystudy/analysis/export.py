"""The fractions table of a study as files a paper takes: CSV (numbers: per metric and K the
seed mean, s.d. and bootstrap interval of every fraction) and a LaTeX ``tabular`` (the page's
table: mean ± s.d. [interval]). Both from :func:`raystudy.analysis.fractions.curves`."""

from __future__ import annotations

import re

import pandas as pd

from .load import LABELS

COLUMNS = (*LABELS, "ratio_memorized")


def fractions_numbers(cv: pd.DataFrame, study: str) -> pd.DataFrame:
    """One row per (metric, K): samples, seeds, then ``<fraction>``, ``_sd``, ``_lo``, ``_hi``."""
    c = cv[cv["study"] == study].sort_values(["metric", "K"])
    out = pd.DataFrame({"metric": c["metric"].to_numpy(), "K": c["K"].astype(int).to_numpy(),
                        "samples": c["n"].astype(int).to_numpy(), "seeds": c["n_seeds"].astype(int).to_numpy()})
    for lab in COLUMNS:
        for suffix in ("", "_sd", "_lo", "_hi"):
            if f"{lab}{suffix}" in c:
                out[f"{lab}{suffix}"] = c[f"{lab}{suffix}"].to_numpy()
    return out


def _tex(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", str(text))


def fractions_latex(cv: pd.DataFrame, study: str, caption: str | None = None) -> str:
    """A LaTeX table of the study's fractions (its rules need ``\\usepackage{booktabs}``): per
    metric and K, each fraction as mean $\\pm$ s.d. over seeds (when more than one) and
    [bootstrap interval]."""
    num = fractions_numbers(cv, study)
    table = pd.DataFrame({"metric": num["metric"].map(_tex), "$K$": num["K"], "samples": num["samples"]})
    for lab in COLUMNS:
        if lab not in num:
            continue
        cells = []
        for _, r in num.iterrows():
            cell = f"{r[lab]:.3f}"
            if pd.notna(r.get(f"{lab}_sd")):
                cell += f" $\\pm$ {r[f'{lab}_sd']:.3f}"
            if pd.notna(r.get(f"{lab}_lo")):
                cell += f" [{r[f'{lab}_lo']:.2f}, {r[f'{lab}_hi']:.2f}]"
            cells.append(cell)
        table["ratio test" if lab == "ratio_memorized" else lab] = cells
    return table.to_latex(index=False, escape=False, column_format="l" + "r" * (table.shape[1] - 1),
                          caption=caption or f"Fractions per $K$ of study {_tex(study)}: mean $\\pm$ s.d. over "
                                             f"seeds, [bootstrap interval over samples].",
                          label=f"tab:fractions-{re.sub(r'[^A-Za-z0-9]+', '-', study)}")


def write_fractions(cv: pd.DataFrame, study: str, out, prefix: str = "") -> list:
    """``{prefix}fractions.csv`` and ``{prefix}fractions.tex`` in ``out`` (atomically); their paths."""
    from pathlib import Path

    from ..tables import write_text

    out = Path(out)
    return [write_text(out / f"{prefix}fractions.csv", fractions_numbers(cv, study).to_csv(index=False)),
            write_text(out / f"{prefix}fractions.tex", fractions_latex(cv, study))]
