"""The figures stage: every figure of the study, drawn into its ``figures/`` folder by
``raystudy.analysis.plots.draw_all`` (what ``raystudy report`` draws and embeds), and for the
circle its own attractors, landscapes and energies (``raystudy.datasets.toy``), which need its
models. Runs in the driver, no Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import tables
from ..axes import ALL
from ..models import family


def draw_study(stage, cfg, study_dir) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from ..analysis.plots import draw_all

    fig_dir = Path(study_dir) / "figures"
    draw_all(study_dir, fig_dir, n_boot=200)
    if family(cfg).ve:
        circle_report(cfg, study_dir)
    tables.write_text(fig_dir / "made-with.json", json.dumps(stage.meta(cfg, ALL)))


def _train_points(cfg, dataset, k: int) -> np.ndarray:
    from ..axes import DEFAULT
    from ..splits import kset

    return dataset.get(kset(cfg, dataset, DEFAULT, k)).reshape(k, 2).astype(np.float64)


def circle_report(cfg, study_dir, echo=print) -> dict:
    """Attractors, landscapes, DenseAM comparison and chance levels of the circle study:
    figures and ``attractors.json``."""
    from ..compute.generate import load_model
    from ..datasets import load_dataset
    from ..datasets.toy import attractors as A
    from ..datasets.toy import figures

    study_dir = Path(study_dir)
    dataset = load_dataset(cfg.data)
    seed = cfg.seeds[0]
    fig_dir = study_dir / "figures"
    delta_m = cfg.classify.delta_m["euclidean"]
    chance = {k: A.chance_memorized(_train_points(cfg, dataset, k), delta_m) for k in cfg.ks}
    fr = tables.read_pandas(study_dir, "fractions")
    fr = fr[(fr.metric == "euclidean") & fr.K.isin(cfg.ks)]
    figures.memorized_vs_chance(fr, chance, fig_dir / "memorized_vs_chance.png")
    ks = [k for k in A.LANDSCAPE_KS if k in cfg.ks] or sorted({cfg.ks[0], cfg.ks[len(cfg.ks) // 2], cfg.ks[-1]})
    lands = []
    for k in ks:
        samples = tables.read_samples(study_dir, k, seed, "eval")[1].reshape(-1, 2).astype(np.float64)
        lands.append(A.landscape(load_model(cfg, study_dir, k, seed, dataset), _train_points(cfg, dataset, k),
                                 samples, k, delta_m, cfg.model.sigma_max))
    report = {"chance_memorized": {str(k): v for k, v in chance.items()}}
    for L in lands:
        kinds = [x["kind"] for x in L["attractors"] if x["size"] > 1]
        e_train = float(np.mean(L["energy_train"]))
        echo(f"K={L['K']}: {len(kinds)} attractors with >1 sample, {kinds.count('spurious')} spurious; "
             f"mean -log p at the training points {e_train:.2f}")
        report[str(L["K"])] = {"attractors": L["attractors"], "mean_energy_at_training_points": e_train}
    figures.landscapes(lands, fig_dir / "landscapes.png")
    figures.surface(lands[-1], fig_dir / "surface3d.png")
    cmp = A.energy_vs_dense_am(lands[-1]["score"], lands[-1]["train"], cfg.model.sigma_max)
    figures.learned_vs_exact(cmp, lands[-1]["K"], fig_dir / "learned_vs_exact.png")
    echo(f"K={lands[-1]['K']}: learned vs exact DenseAM energy along the radius (beta={cmp['beta']:.0f}), "
         f"E(R) - E(1): largest error {cmp['max_error_core']:.3f} for R in [0.7, 1.3], "
         f"{cmp['max_error']:.3f} for R in [0.5, 1.5]")
    report["dense_am"] = {k: cmp[k] for k in ("beta", "max_error_core", "max_error")}
    tables.write_text(study_dir / "attractors.json", json.dumps(report, indent=1))
    return report
