"""Runs a study's stages in order and skips what is already done.

Each stage decides from the files on disk what is missing (a model without its
run record, a (K, seed) without its samples part, ...), so a re-run after an
interruption resumes, and a re-run of a finished study starts no Ray at all.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import yaml

from . import config as config_mod
from . import tables
from .data import DataError, load_dataset

log = logging.getLogger(__name__)

# Keys a study directory may see change between runs without invalidating results:
# more K or seeds or metrics add parts; the rest only shapes how the work is spread.
_MUTABLE = ("ks", "seeds", "knn.", "classify.", "ray.", "generate.workers", "generate.batch_size",
            "generate.cpus_per_worker", "generate.gpus_per_worker", "train.cpus_per_trial",
            "train.gpus_per_trial", "train.max_failures", "train.checkpoint_every", "study.name")


class StudyError(ValueError):
    """The study directory or the config does not fit: one line that says why."""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not (prefix == "classify."):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_compatible(cfg, study_dir: Path) -> None:
    saved = study_dir / "config.yaml"
    if not saved.exists():
        return
    old = _flatten(yaml.safe_load(saved.read_text()) or {})
    new = _flatten(cfg.to_dict())
    changed = sorted(k for k in set(old) | set(new)
                     if old.get(k) != new.get(k) and not any(k == m or k.startswith(m) for m in _MUTABLE))
    if changed:
        raise StudyError(f"{study_dir} holds a study made with a different config ({', '.join(changed)} changed); "
                         f"use a new --study directory")


def validate_against_data(cfg, dataset) -> None:
    too_big = [k for k in cfg.ks if k > len(dataset)]
    if too_big:
        raise DataError(f"ks: K={too_big[0]} is larger than the dataset ({cfg.data.name} has {len(dataset)} images)")


def plan(cfg, study_dir) -> list[str]:
    """What a run would do now, one line per stage."""
    from .generate import missing_groups
    from .knn import missing_parts
    from .sweep import missing_runs

    study_dir = Path(study_dir)
    lines = []
    if cfg.model.type == "empirical":
        lines.append("train: none (model.type=empirical: the exact memorizer needs no training)")
    else:
        runs = missing_runs(cfg, study_dir)
        lines.append(f"train: {len(runs)} of {len(cfg.ks) * len(cfg.seeds)} runs to train "
                     f"({cfg.train.images} images each)" + (f": {runs}" if runs else ""))
    g = missing_groups(cfg, study_dir)
    lines.append(f"generate: {len(g)} (K, seed) groups x 2 sets x {cfg.generate.n_samples} samples "
                 f"({cfg.generate.sampler})")
    lines.append(f"knn: {len(missing_parts(cfg, study_dir))} (metric, K, seed) parts, metrics {list(cfg.knn.metrics)}")
    lines.append("classify: labels + fractions (recomputed where thresholds changed)")
    lines.append(f"figures: {study_dir / 'figures'}")
    return lines


def _write_runs(cfg, study_dir: Path) -> None:
    from .train import model_dir, read_run

    recs = []
    for k in cfg.ks:
        for s in cfg.seeds:
            if cfg.model.type == "empirical":
                recs.append({"K": k, "seed": s, "model": "empirical", "steps": 0, "images_seen": 0,
                             "final_loss": float("nan"), "checkpoint": "", "wall_s": 0.0})
            else:
                r = read_run(model_dir(study_dir, k, s))
                recs.append({"K": k, "seed": s, "model": "unet", "steps": r["steps"], "images_seen": r["images_seen"],
                             "final_loss": r["final_loss"], "checkpoint": r["checkpoint"], "wall_s": r["wall_s"]})
    cols = {c: [r[c] for r in recs] for c in tables.SCHEMAS["runs"].names}
    table = tables.to_table("runs", cols, meta=tables.dumps_meta(
        study=cfg.study.name, config_hash=cfg.section_hash("study", "data", "model", "train")))
    # Rewriting an unchanged table would make a finished study look touched.
    if tables.has_part(study_dir, "runs", "all") and tables.read_pandas(study_dir, "runs").equals(table.to_pandas()):
        return
    tables.write_part(study_dir, "runs", "all", table)


def fractions_text(study_dir) -> str:
    df = tables.read_pandas(study_dir, "fractions")
    if df.empty:
        return "(no fractions yet)"
    g = df.groupby(["metric", "K"])[["n", "memorized", "spurious", "generalized", "ratio_memorized"]].mean()
    return g.to_string(float_format=lambda v: f"{v:.3f}")


def run(cfg, study_dir, dry_run: bool = False, echo=print) -> Path:
    """Run every stage that is not complete; returns the study directory."""
    study_dir = Path(study_dir).resolve()
    check_compatible(cfg, study_dir)
    dataset = load_dataset(cfg.data)
    validate_against_data(cfg, dataset)
    if dry_run:
        echo(cfg.to_yaml())
        for line in plan(cfg, study_dir):
            echo(f"would run {line}")
        return study_dir
    config_mod.save(cfg, study_dir)

    from .generate import missing_groups, run_generate
    from .knn import missing_parts, run_knn
    from .sweep import missing_runs, run_sweep

    t_all = time.time()
    # Fail before any work if a perceptual metric's backbone is absent: inside a Ray actor
    # the same error would arrive as a long remote traceback.
    if cfg.model.type != "empirical":
        from .model import check_checkpoint
        from .train import model_dir, read_run

        for k, s in missing_groups(cfg, study_dir):
            if read_run(model_dir(study_dir, k, s)) is not None:
                check_checkpoint(model_dir(study_dir, k, s))
    for metric in dict.fromkeys(m for m, _, _ in missing_parts(cfg, study_dir) if m.startswith("lpips-")):
        from .lpips_embed import load_backbone_state

        load_backbone_state(metric.split("-", 1)[1], cfg.knn.weights_dir)
    needs_ray = (cfg.model.type != "empirical" and missing_runs(cfg, study_dir)) or \
        missing_groups(cfg, study_dir) or missing_parts(cfg, study_dir)
    if needs_ray:
        from .raytools import ensure_ray

        ensure_ray(cfg)
    for name, todo, fn in (
        ("train", cfg.model.type != "empirical" and missing_runs(cfg, study_dir), run_sweep),
        ("generate", missing_groups(cfg, study_dir), run_generate),
        ("knn", missing_parts(cfg, study_dir), run_knn),
    ):
        if not todo:
            echo(f"[{name}] complete, skipped")
        else:
            t0 = time.time()
            echo(f"[{name}] {len(todo)} to do")
            fn(cfg, study_dir)
            echo(f"[{name}] done in {time.time() - t0:.1f} s")
        if name == "train":
            _write_runs(cfg, study_dir)

    from .classify import run_classify

    changed = run_classify(cfg, study_dir)
    echo(f"[classify] {'written' if changed else 'complete, skipped'}")
    fig_dir = study_dir / "figures"
    if changed or not (fig_dir / "transition.png").exists() or not (fig_dir / "nn_grid.png").exists():
        from .figures import nn_grid, transition_curve

        transition_curve(tables.read_pandas(study_dir, "fractions"), fig_dir / "transition.png")
        nn_grid(study_dir, dataset, fig_dir / "nn_grid.png")
        echo(f"[figures] {fig_dir}/transition.png, nn_grid.png")
    else:
        echo("[figures] complete, skipped")
    echo(f"fractions per K (mean over seeds):\n{fractions_text(study_dir)}")
    echo(f"study {study_dir} finished in {time.time() - t_all:.1f} s; tables under {study_dir / 'tables'}")
    return study_dir

