"""``raystudy report DIR [DIR ...]``: every figure as PNG (and PDF) and one self-contained HTML page.

One DIR: writes into ``DIR/report/``. Several: compares them and writes into
``FIRST_DIR/report/compare/``. The page (``report.html``) leads with the answer: a headline
box (``id="headline"``) per study and metric with the crossing K and its interval (the grid's
bracket where no grid K resolves it), EMM, the spurious peak and the null, in numbers and words;
under it the transition figure (``id="transition"``), then the summary sentences and table
(human column names; ``summary.csv`` beside it has the snake_case numbers). It embeds every
image as a base64 data URI and holds a gallery of random samples at every K, the fractions
table (also written beside it as ``fractions.csv`` and ``fractions.tex``), the stage run
times, what made each study (``provenance.json``; for several, where that differs) and each
config: copy the one file anywhere and it still shows everything. The figures are
:func:`raystudy.analysis.plots.draw_all`'s (the figures stage draws the same into the study's
``figures/``), saved at :data:`raystudy.analysis.plots.style.DPI`.
Absent tables (basins, energy, train_log, stages.json) are named on the page instead of drawn;
a closed-form model (``empirical``, ``gaussian``) trains nothing, so no word on its loss curves.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .fractions import null_curve
from .load import LABELS, AnalysisError, Studies, _flatten_dirs, load
from .phase import images_at
from .plots import DRAW_TABLES, draw_all, safe_name
from .summaries import crossing_words, describe, format_k, k_at, k_range, span_words

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}.note{color:#a40;font-size:.9em}
.summary li{margin:.3em 0}.method{font-size:.85em;color:#555}
.headline{border:2px solid #2b6cb0;border-radius:6px;background:#f4f8fc;padding:.5em 1em;margin:1em 0}
.headline table{width:100%;margin:0;font-size:1em}.headline th,.headline td{border:none;text-align:left;
vertical-align:top;padding:.3em .8em .3em 0;background:none}.headline th{font-size:.8em;color:#444;font-weight:600}
.headline .big{font-size:1.3em;font-weight:600;white-space:nowrap}.small{font-size:.8em;color:#555}.headline p{margin:.2em 0}
"""


def _img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _table(df: pd.DataFrame, cls: str) -> str:
    """One HTML table (pandas' own ``to_html``: escaped, NaN blank, floats to 3 places)."""
    return df.to_html(classes=cls, index=False, na_rep="", border=0, float_format=lambda v: f"{v:.3f}")


def fractions_table(cv: pd.DataFrame, study: str) -> pd.DataFrame:
    """The page's fractions table of one study: per metric and K, mean ± s.d. over seeds and
    the per-K interval, as text."""
    c = cv[cv["study"] == study].sort_values(["metric", "K"])
    out = pd.DataFrame({"metric": c["metric"], "K": c["K"].astype(int), "samples": c["n"].astype(int),
                        "seeds": c["n_seeds"].astype(int)})
    for lab in (*LABELS, "ratio_memorized"):
        if lab not in c:
            continue
        txt = c[lab].map(lambda v: f"{v:.3f}")
        sd = c.get(f"{lab}_sd")
        if sd is not None and sd.notna().any():
            txt = txt + sd.map(lambda v: "" if pd.isna(v) else f" ± {v:.3f}")
        if f"{lab}_lo" in c:
            txt = txt + [("" if pd.isna(lo) else f" [{lo:.2f}, {hi:.2f}]") for lo, hi in zip(c[f"{lab}_lo"], c[f"{lab}_hi"])]
        out["ratio test" if lab == "ratio_memorized" else lab] = txt.to_numpy()
    return out


def write_report(dirs, out: str | Path | None = None, pdf: bool = False, n_boot: int = 1000,
                 level: float = 0.95, echo=None) -> Path:
    """Write the figures (:func:`raystudy.analysis.plots.draw_all`), their tables and
    ``report.html`` for one study or a comparison of several; returns the page's path. See the
    module docstring."""
    from .. import tables as _tables
    from .export import write_fractions

    echo = echo or logging.getLogger("raystudy").info
    t0 = time.time()
    paths = _flatten_dirs([dirs] if isinstance(dirs, (str, Path)) else dirs)
    out = Path(out) if out else (paths[0] / "report" if len(paths) == 1 else paths[0] / "report" / "compare")
    out.mkdir(parents=True, exist_ok=True)
    st = load(paths, tables=[t for t in DRAW_TABLES if t in _tables.SCHEMAS])
    if not st.has("labels") and not st.has("fractions"):
        raise AnalysisError(f"{', '.join(map(str, paths))}: no labels or fractions yet (run the study first)")
    drawing = draw_all(st, out, n_boot=n_boot, level=level, pdf=pdf)
    # the transition of one model (final snapshot, main variant); all axes in the phase section
    st, view_note = st.main_view()
    cv, sm = drawing.curves, drawing.summary
    for stem, grid in drawing.grids.items():
        grid.to_csv(out / f"{stem}.csv", index=False)
    phase_html = phase_section(drawing.phase, out, level) or gap_section(drawing.gaps, out, level)
    if view_note:
        phase_html = f"<p class='note'>{html.escape(view_note)}</p>" + phase_html

    sm.to_csv(out / "summary.csv", index=False)
    multi = len(st.names) > 1
    exported = [p.name for sname in st.names
                for p in write_fractions(cv, sname, out, f"{safe_name(sname)}_" if multi else "")]
    items = [{"file": d.path.name, "caption": d.caption, "section": d.section, "path": d.path}
             for d in drawing.figures]
    page = out / "report.html"
    page.write_text(_page(st, cv, sm, items, drawing.notes, level, n_boot, paths, phase_html), encoding="utf-8")
    echo(f"report: {len(items)} figures in {out} ({time.time() - t0:.1f} s)")
    for it in items:
        echo(f"  {it['file']}")
    echo(f"  tables: {', '.join(exported)}")
    for n in drawing.notes:
        echo(f"  note: {n}")
    return page


def _summary_html(st: Studies, sm: pd.DataFrame, level: float) -> str:

    if sm.empty:
        return "<p>No summary (no fractions).</p>"
    items = [f"<li><b>{html.escape(r['study'])} · {html.escape(r['metric'])}</b>: {html.escape(describe(r, level))}"
             f" ({r['n_seeds']} seed(s), about {r['n_per_K']:.0f} samples per K)</li>" for _, r in sm.iterrows()]
    text = f'<ul class="summary">{"".join(items)}</ul>'
    if len(st.names) > 1:
        shifts = []
        for m, g in sm.groupby("metric"):
            base = g.iloc[0]
            for _, r in g.iloc[1:].iterrows():
                a, b = base["k_cross"], r["k_cross"]
                if 0 < a < np.inf and 0 < b < np.inf:
                    shifts.append(f"<li>{html.escape(m)}: the crossing moves from K = {format_k(a)} "
                                  f"({html.escape(base['study'])}) to K = {format_k(b)} ({html.escape(r['study'])}), "
                                  f"×{b / a:.2f}</li>")
                else:
                    shifts.append(f"<li>{html.escape(m)}: {html.escape(base['study'])} "
                                  f"{k_at(a, (base['K_min'], base['K_max']))}, {html.escape(r['study'])} "
                                  f"{k_at(b, (r['K_min'], r['K_max']))} (not both inside the K range)</li>")
        text += f"<h3>Comparison</h3><ul>{''.join(shifts)}</ul>"
    return text + _table(summary_table(sm, level), "summary-table")


def _bare(words: str) -> str:
    """A K phrase for a table cell: 'K = 43.4' -> '43.4', 'from below K = 2 to K = 47' -> 'from below 2 to 47'."""
    return words.replace("K = ", "")


def _grid_bracket(lo: float, hi: float) -> str:
    """A bracket of grid K for a table cell ('8 to 128', 'below 128', 'above 8'; 'none': open both ways)."""
    return span_words(lo, hi, "{lo} to {hi}", "above {lo}", "below {hi}", "none")


def summary_table(sm: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The page's summary table: one row per study and metric, human column names, K in words
    (the snake_case numbers are ``summary.csv``)."""
    pct = f"{level:.0%}"
    rows = []
    for _, r in sm.iterrows():
        ks = (r["K_min"], r["K_max"])
        spur = r["spurious_peak"] > 0
        row = {"study": r["study"], "metric": r["metric"],
               "crossing K": _bare(k_at(r["k_cross"], ks)),
               f"{pct} interval": _bare(k_range(r["k_cross_lo"], r["k_cross_hi"], ks)),
               "grid bracket": _grid_bracket(r["k_cross_bracket_lo"], r["k_cross_bracket_hi"]),
               "log-K interpolation": _bare(k_at(r["k_cross_interp"], ks))}
        if r["n_seeds"] > 1:
            row["per-seed range"] = _bare(k_range(r["k_cross_seed_min"], r["k_cross_seed_max"], ks))
        row.update({"EMM": _bare(k_at(r["emm"], ks)),
                    f"EMM {pct} interval": _bare(k_range(r["emm_lo"], r["emm_hi"], ks)),
                    "ratio test crossing K": _bare(k_at(r["ratio_k_cross"], ks)),
                    "spurious peak": f"{r['spurious_peak']:.3f}" if spur else "none",
                    f"spurious peak {pct} interval":
                        f"{r['spurious_peak_lo']:.3f} to {r['spurious_peak_hi']:.3f}" if spur else "",
                    "spurious peak at grid K": str(r["spurious_peak_k"]) if spur else "",
                    "spurious peak lies in K": _grid_bracket(r["spurious_peak_k_lo"], r["spurious_peak_k_hi"])
                    .replace("none", "anywhere") if spur else ""})
        rows.append(row)
    return pd.DataFrame(rows)


def null_words(st: Studies, study: str, metric: str) -> tuple[str, str]:
    """(the null's largest memorized fraction, what it means) for the headline: held-out real
    images labelled by the samples' rule (``null_fractions``)."""

    if not st.has("null_fractions"):
        return "not computed", "no null_fractions table"
    nc = null_curve(st, study, metric)
    if nc.empty:
        return "not computed", f"no held-out images labelled with {metric}"
    i = int(nc["memorized"].to_numpy().argmax())
    top, at = float(nc["memorized"].iloc[i]), int(nc["K"].iloc[i])
    spur = float(nc["spurious"].max())
    if top == 0:
        return ("0 memorized", f"no held-out image passes for a copy at any K (spurious at most {spur:.2f}): "
                "every memorized sample is evidence of memorization")
    return (f"≤ {top:.2f} memorized", f"held-out images pass for copies up to {top:.2f} (at K = {at}; spurious at "
            f"most {spur:.2f}): a sample fraction at or below it is chance")


def headline(st: Studies, sm: pd.DataFrame, level: float = 0.95) -> list[dict]:
    """The page's answer, per study and metric: for the crossing, EMM, the spurious peak and the
    null, a (number, words) pair."""
    out = []
    for _, r in sm.iterrows():
        if r["spurious_peak"] > 0:
            spur = (f"{r['spurious_peak']:.2f} at K = {r['spurious_peak_k']}",
                    f"{level:.0%} interval {r['spurious_peak_lo']:.2f} to {r['spurious_peak_hi']:.2f} at that K")
        else:
            spur = ("none", "no sample is spurious at any K")
        out.append({"study": r["study"], "metric": r["metric"],
                    "crossing": crossing_words(r, "k_cross", level), "emm": crossing_words(r, "emm", level),
                    "spurious": spur, "null": null_words(st, r["study"], r["metric"])})
    return out


HEADLINE_COLUMNS = (("crossing", "memorized crosses 1/2"), ("emm", "EMM: ratio test ≥ 90% memorized until"),
                    ("spurious", "spurious peak"), ("null", "null: held-out images, same rule"))


def _headline_html(st: Studies, sm: pd.DataFrame, level: float) -> str:
    rows = headline(st, sm, level)
    if not rows:
        return "<section id='headline' class='headline'><p>No answer yet: no fractions.</p></section>"
    many = len(rows) > 1
    head = ("<th>study · metric</th>" if many else "") + "".join(f"<th>{html.escape(t)}</th>"
                                                              for _, t in HEADLINE_COLUMNS)
    body = []
    for r in rows:
        cells = [f"<td><b>{html.escape(r['study'])} · {html.escape(r['metric'])}</b></td>"] if many else []
        cells += [f"<td><span class='big'>{html.escape(r[k][0])}</span><br><span class='small'>"
                  f"{html.escape(r[k][1])}</span></td>" for k, _ in HEADLINE_COLUMNS]
        body.append(f"<tr>{''.join(cells)}</tr>")
    what = "" if many else f"<p class='small'>{html.escape(rows[0]['study'])} · metric {html.escape(rows[0]['metric'])}</p>"
    return (f"<section id='headline' class='headline'>{what}<table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></section>")


# -- the phase diagram's section ---------------------------------------------------------------

def phase_section(tables: dict[str, pd.DataFrame], out: Path, level: float = 0.95) -> str:
    """Write the phase diagram's tables (:func:`raystudy.analysis.phase.phase_tables`) as CSV
    into ``out`` and return the page's HTML for them ('' when the study has no axes)."""
    if not tables:
        return ""
    from ..tables import write_text

    for name, df in tables.items():
        if len(df):
            write_text(out / f"{name}.csv", df.to_csv(index=False))
    return section_html(tables["tau_mem"], tables["tau_exponent"], tables["crossings_by_axis"],
                        tables["reproducibility"], level, tables.get("tau_gap"), tables.get("onset_relation"))


def gap_section(gaps: pd.DataFrame, out: Path, level: float = 0.95) -> str:
    """For a study without a phase section: its runs' tau_gap (:func:`raystudy.analysis.phase.tau_gap`)
    written as ``tau_gap.csv`` into ``out``, and the page's HTML for it ('' without loss curves)."""
    if gaps is None or gaps.empty:
        return ""
    from ..tables import write_text

    write_text(out / "tau_gap.csv", gaps.to_csv(index=False))
    return "\n".join(["<h2 id='gap'>The held-out gap</h2>",
                       "<p>Per run, the images seen at which its held-out gap opened (raystudy.onset), with its "
                       f"{level:.0%} bracket (where its training loss reaches half its held-out loss); also beside this page as "
                       "<code>tau_gap.csv</code>.</p>", _phase_table(gap_table(gaps))])


def _gap_text(r) -> str:
    if r.censored:
        return f"> {r.t_max:,.0f} (did not open)"
    if getattr(r, "open_at_start", False):
        return f"<= {r.t_min:,.0f} (open at the first evaluation)"
    return f"{r.tau_gap:,.0f} [{images_at(r.tau_gap_lo, r.t_max)}, {images_at(r.tau_gap_hi, r.t_max)}]"


def gap_table(gaps: pd.DataFrame, tau: pd.DataFrame | None = None) -> pd.DataFrame:
    """The page's tau_gap per run: tau_gap [interval] (or the last evaluation it did not open
    by), censored, the noise level that opened it, the evaluations and the final gap; beside it,
    per metric, that K's tau_mem (``tau``: :func:`raystudy.analysis.phase.tau_mem`)."""
    keys = [c for c in ("study", "variant", "K") if c in gaps]
    show = gaps[[*keys, "seed"]].copy()
    show["tau_gap"] = [_gap_text(r) for r in gaps.itertuples()]
    show["censored"] = np.where(gaps["censored"].astype(bool), "yes", "no")
    show["gap level (timestep)"] = [str(int(t)) if t >= 0 else "" for t in gaps["gap_timestep"]]
    show["evaluations"] = gaps["n_evals"].to_numpy()
    show["final gap"] = gaps["gap"].to_numpy(float)
    if tau is not None and len(tau):
        on = [c for c in keys if c in tau]
        for m, tm in tau.groupby("metric", sort=True):
            words = tm[on].assign(**{f"tau_mem ({m})": [_tau_text(t) for t in tm.itertuples()]})
            show = show.merge(words, on=on, how="left").fillna({f"tau_mem ({m})": ""})
    return show


def _tau_text(t) -> str:
    if t.censored == "after":
        return f"> {t.t_max} (not memorized by the last snapshot)"
    if t.censored == "before":
        return f"< {t.t_min} (memorized at the first snapshot)"
    if not t.tau_resolved and t.tau_bracket_lo > 0 and np.isfinite(t.tau_bracket_hi):
        return f"between {t.tau_bracket_lo:.3g} and {t.tau_bracket_hi:.3g}"
    return f"{t.tau:.3g} [{t.tau_lo:.3g}, {t.tau_hi:.3g}]"


def _fmt_b(v: float) -> str:
    return "open" if not np.isfinite(v) else f"{v:.2f}"


def _phase_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, na_rep="", border=0, float_format=lambda v: f"{v:.3g}")


def relation_words(r) -> str:
    """One (metric, variant) of :func:`raystudy.analysis.phase.onset_relation` in words."""
    if r.n_k >= 2:
        ratio = f"tau_mem / tau_gap = {r.ratio:.3g} ({r.ratio_lo:.3g}-{r.ratio_hi:.3g}) over {r.n_k} K"
    elif r.n_k == 1:
        ratio = f"tau_mem / tau_gap = {r.ratio:.3g} at one K (no interval)"
    else:
        ratio = "tau_mem / tau_gap: no K where both opened inside the measured range"
    return f"{ratio}; the gap opened first at {r.gap_first} of {r.n_ordered} K"


def section_html(tau, expo, cb, rep, level: float = 0.95, gaps=None, relation=None) -> str:
    """The phase-diagram numbers as HTML: tau_mem per K, the exponent, tau_gap per run beside
    tau_mem and their ratio (where the runs measured loss curves), the crossing K per snapshot
    and variant, twin reproducibility per K."""
    gaps = gaps if gaps is not None else pd.DataFrame()
    relation = relation if relation is not None else pd.DataFrame()
    names = ["phase", "tau_mem", "tau_exponent", *(["tau_gap"] if len(gaps) else []),
             *(["onset_relation"] if len(relation) else []), "crossings_by_axis", "reproducibility"]
    parts = ["<h2 id='phase'>Phase diagram: training time, model size, twins</h2>",
             "<p>Tables beside this page: " + ", ".join(f"<code>{n}.csv</code>" for n in names) +
             " (from <code>raystudy.analysis.phase.phase_tables</code>).</p>"]
    if len(expo):
        items = []
        for e in expo.itertuples():
            name = " · ".join(str(getattr(e, k)) for k in ("study", "metric", "variant") if hasattr(e, k))
            cens = f"; censored K (kept as bounds): {e.censored_K}" if e.censored_K else ""
            items.append(f"<li><b>{html.escape(name)}</b>: tau_mem = c K^b with b = {_fmt_b(e.b)} "
                         f"({level:.0%} interval {_fmt_b(e.b_lo)} to {_fmt_b(e.b_hi)}; {e.n_K} K; overdispersion "
                         f"{e.phi:.2f}{html.escape(cens)})</li>")
        parts.append(f"<ul class='summary'>{''.join(items)}</ul>")
    if len(tau):
        show = tau[[c for c in ("study", "metric", "variant", "K") if c in tau]].copy()
        show["tau_mem"] = [_tau_text(t) for t in tau.itertuples()]
        show["snapshots"] = tau["n_snapshots"]
        parts += ["<h3>tau_mem per K</h3>", _phase_table(show)]
    if len(gaps):
        parts += ["<h3>tau_gap per K</h3>",
                  "<p>Per run, the images seen at which its held-out gap opened (raystudy.onset), with its "
                  f"{level:.0%} bracket (where its training loss reaches half its held-out loss); beside it, "
                  "that K's tau_mem.</p>",
                  _phase_table(gap_table(gaps, tau))]
    if len(relation):
        items = []
        for r in relation.itertuples():
            name = " · ".join(str(getattr(r, k)) for k in ("study", "metric", "variant") if hasattr(r, k))
            items.append(f"<li><b>{html.escape(name)}</b>: {html.escape(relation_words(r))}</li>")
        parts.append(f"<ul class='summary onset'>{''.join(items)}</ul>")
    if len(cb):
        show = cb[[c for c in ("study", "metric", "variant", "params", "images_seen") if c in cb]].copy()
        show["crossing K"] = [
            f"{format_k(r.k_cross, (r.K_min, r.K_max))} [{format_k(r.k_cross_lo, (r.K_min, r.K_max))}, "
            f"{format_k(r.k_cross_hi, (r.K_min, r.K_max))}]" for r in cb.itertuples()]
        show["bracket"] = [k_range(r.k_cross_bracket_lo, r.k_cross_bracket_hi, (r.K_min, r.K_max))
                           for r in cb.itertuples()]
        parts += ["<h3>Crossing K per snapshot and variant</h3>", _phase_table(show)]
    if len(rep):
        show = rep[[c for c in ("study", "metric", "variant", "images_seen", "K", "n") if c in rep]].copy()
        show["reproducible"] = [f"{r.reproducible:.3f} [{r.reproducible_lo:.2f}, {r.reproducible_hi:.2f}]"
                                for r in rep.itertuples()]
        for c in ("median_d_twin", "median_d_own", "median_d_other"):
            show[c] = rep[c]
        parts += ["<h3>Twin reproducibility per K</h3>", _phase_table(show)]
    return "\n".join(parts)


def _k(v) -> str:
    return "open" if v is None else (f"{v:.3g}" if v < 100 else f"{v:.0f}")


def sweep_html(study_dir) -> str:
    """The adaptive sweep's rounds: the K measured, the crossing's interval and bracket after
    the round, the K chosen next and why, and why it stopped. '' when the study has no sweep."""
    from ..tables import read_sweep

    sw = read_sweep(study_dir)
    if not sw or not sw.get("rounds"):
        return ""
    rows = []
    for r in sw["rounds"]:
        nxt = "; ".join(f"K = {p['K']}: {p['reason']}" for p in r.get("next") or []) or "-"
        rows.append({"round": r["round"], "K measured": ", ".join(map(str, r["ks"])), "trainings": r["trainings"],
                     "crossing": f"{_k(r['k_cross'])} [{_k(r['k_cross_lo'])}, {_k(r['k_cross_hi'])}]",
                     "bracket": f"{_k(r['k_cross_bracket_lo'] or None)} to {_k(r['k_cross_bracket_hi'])}",
                     "width (x in K)": "open" if r["width"] is None else f"{r['width']:.3g}",
                     "EMM": f"{_k(r['emm'])} [{_k(r['emm_lo'])}, {_k(r['emm_hi'])}]",
                     "next K (why)": nxt, "stop": r.get("stop") or "", "wall_s": r.get("wall_s")})
    cfg = sw.get("sweep", {})
    head = (f"<p>Adaptive sweep over K = {cfg.get('k_min')}..{cfg.get('k_max')} on metric {html.escape(str(sw.get('metric')))}: "
            f"{cfg.get('initial')} K first, then up to {cfg.get('rounds')} rounds of {cfg.get('per_round')}, until the "
            f"crossing's width (the bracket's while no grid K lies inside it) is below ×{cfg.get('target_ratio')}. "
            "Each row: the state after the round, and the K it chose next.</p>")
    return head + _table(pd.DataFrame(rows), "sweep")


def _provenance_html(st: Studies) -> str:
    """What made each study (its latest run's record), where its own runs disagree, and, for
    several studies, where their latest records differ."""
    from ..provenance import differences, flatten, read

    parts = ["<h2 id='provenance'>Provenance</h2>"]
    latest = {}
    for s in st.names:
        runs = read(st.dirs[s])
        parts.append(f"<h3>{html.escape(s)}</h3>")
        if not runs:
            parts.append("<p class='note'>No provenance recorded (no provenance.json: made before raystudy "
                         "recorded it).</p>")
            continue
        latest[s] = runs[-1]
        rows = pd.DataFrame([{"field": k, "value": "" if v is None else str(v)} for k, v in flatten(runs[-1]).items()])
        parts.append(f"<p>The latest of {len(runs)} run(s) that wrote into this study:</p>")
        parts.append(_table(rows, "provenance"))
        own = differences({f"run {i + 1} ({r.get('written', '?')})": r for i, r in enumerate(runs)})
        if own:
            parts.append("<p class='note'>Its runs did not all use the same software or hardware:</p>")
            parts.append(_table(pd.DataFrame(own).astype(str), "provenance-runs"))
    if len(st.names) > 1 and len(latest) > 1:
        diff = differences(latest)
        parts.append("<h3>Where the studies' provenance differs</h3>")
        parts.append(_table(pd.DataFrame(diff).astype(str), "provenance-diff") if diff else
                     "<p>Nowhere: the same raystudy, libraries, Python and hardware made them.</p>")
    return "\n".join(parts)


LEAD_FIGURES = ("transition", "compare")  # drawn right under the headline, with these HTML ids


def _figure(it: dict) -> str:
    stem = Path(it["file"]).stem
    fid = f" id='{stem}'" if stem in LEAD_FIGURES else ""
    return (f"<figure{fid}>{_img(it['path'], it['file'])}<figcaption><b>{html.escape(it['file'])}</b>: "
            f"{html.escape(it['caption'])}</figcaption></figure>")


def _page(st: Studies, cv, sm, items, notes, level, n_boot, paths, phase_html: str = "") -> str:
    title = "raystudy report: " + " vs ".join(st.names)
    lead = [it for it in items if Path(it["file"]).stem in LEAD_FIGURES]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             _headline_html(st, sm, level), *(_figure(it) for it in lead),
             "<h2 id='summary'>Crossing K and spurious peak</h2>", _summary_html(st, sm, level),
             f"<p class='method'>Studies: {', '.join(f'<code>{html.escape(str(p))}</code>' for p in paths)}. "
             f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}. Per-K intervals: {level:.0%}, exact (Clopper-Pearson) "
             f"over samples with one seed, a hierarchical bootstrap ({n_boot} replicates: seeds, then samples "
             f"within seed) with several; seed spread: ±1 s.d. Crossing K and EMM: a logistic fit in log K, "
             f"profile-likelihood interval clipped to the bracket of grid K significantly above / below the "
             f"level (raystudy.analysis.transition). The same numbers, one column each, are "
             f"<code>summary.csv</code> beside this page.</p>"]
    if phase_html:
        parts.append(phase_html)
    for s, p in zip(st.names, paths):
        sweep = sweep_html(p)
        if sweep:
            parts += [f"<h2 id='sweep'>Adaptive K sweep · {html.escape(s)}</h2>", sweep]
    if notes:
        parts.append("<h2 id='notes'>Not drawn</h2><ul>" +
                     "".join(f"<li class='note'>{html.escape(n)}</li>" for n in notes) + "</ul>")
    section = None
    for it in items:
        if it in lead:
            continue
        if it["section"] != section:
            section = it["section"]
            parts.append(f"<h2>{html.escape(section)}</h2>")
        parts.append(_figure(it))
    parts.append("<h2 id='fractions'>Fractions</h2><p>Per K: mean ± s.d. over seeds, [per-K interval]; "
                 "'ratio test': fraction with NN1/NN2 &lt; 1/3.</p>")
    multi = len(st.names) > 1
    for s in st.names:
        ft = fractions_table(cv, s)
        pre = f"{safe_name(s)}_" if multi else ""
        parts.append(f"<h3>{html.escape(s)}</h3><p>Also beside this page as <code>{pre}fractions.csv</code> "
                     f"(numbers: mean, s.d., interval) and <code>{pre}fractions.tex</code> (this table, LaTeX).</p>")
        parts.append(_table(ft, "fractions"))
    parts.append("<h2 id='times'>Stage run times</h2>")
    for s in st.names:
        parts.append(f"<h3>{html.escape(s)}</h3>")
        stages = st.stages.get(s)
        if stages is not None and len(stages):
            parts.append(_table(stages, "stages"))
        else:
            parts.append("<p class='note'>No stage times recorded (no stages.json in the study folder).</p>")
        runs = st.runs[st.runs["study"] == s] if st.has("runs") else pd.DataFrame()
        if len(runs):
            cols = [c for c in ("K", "seed", "model", "steps", "images_seen", "final_loss", "wall_s") if c in runs]
            parts.append(f"<p>Training runs (total {runs['wall_s'].sum():.1f} s):</p>")
            parts.append(_table(runs[cols].sort_values(["K", "seed"]), "runs"))
    parts.append(_provenance_html(st))
    parts.append("<h2 id='config'>Config</h2>")
    for s in st.names:
        cfg = yaml.safe_dump(st.configs.get(s) or {}, sort_keys=False)
        parts.append(f"<h3>{html.escape(s)}</h3><pre>{html.escape(cfg)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def command(dirs, out=None, pdf: bool = False, n_boot: int = 1000) -> Path:
    """``raystudy report``: a UserError (not a study, no tables, a bad option) is the CLI's one line."""
    import matplotlib

    matplotlib.use("Agg")  # a command line draws into files, never onto a screen
    if n_boot < 1:
        raise AnalysisError("--n-boot must be at least 1")
    from .. import tables

    tables.use_system_allocator()  # a driver reading every table of the studies, as study.run's
    return write_report(dirs, out, pdf=pdf, n_boot=n_boot)
