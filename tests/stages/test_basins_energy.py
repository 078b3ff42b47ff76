"""The basins and energy stages on a real local Ray, with the exact memorizer: a training
image has a deep basin, a held-out image none, and the energy table equals a direct call."""

import numpy as np
import pandas as pd
import pytest

from raystudy import tables
from tests.conftest import TINY


@pytest.fixture(scope="module")
def study(study_of):
    return study_of(TINY, *["model.type=empirical", "ks=[8]", "generate.n_samples=8", "generate.steps=20",
                      "basins.enabled=true", "basins.per_label=2", "basins.train=2", "basins.held_out=2",
                      "basins.trials=4", "basins.stride=100", "basins.ddim_steps=10",
                      "energy.enabled=true", "energy.t=300", "energy.per_label=2", "energy.train=1",
                      "energy.held_out=1", "energy.train_refs=1", "energy.held_out_refs=1", "energy.points=16"])


def test_training_images_have_basins_and_held_out_images_none(study):
    cfg, out = study
    b = pd.read_parquet(out / "tables" / "basins")
    assert list(b.columns) == tables.SCHEMAS["basins"].names
    assert sorted(b.kind.unique()) == ["held-out", "sample", "train"]
    train, held = b[b.kind == "train"], b[b.kind == "held-out"]
    assert len(train) == 2 and len(held) == 2
    # The exact memorizer returns a training digit: its own images come back from far out,
    # a held-out digit (RMS ~0.4 from any of 8 training digits) never does.
    assert (train.t_crit >= 201).all(), train
    assert (held.t_crit == 0).all(), held
    trials = pd.read_parquet(out / "tables" / "basin_trials")
    assert len(trials) == 4 * len(b)
    assert (trials[trials.kind == "held-out"].t_survive == 0).all()
    rates = pd.read_parquet(out / "tables" / "basin_rates")
    assert set(rates[rates.kind == "train"].t) >= {1, 101, 201}
    # Every sampled item is the top or the bottom of its label's ranking; the memorizer's are memorized.
    smp = b[b.kind == "sample"]
    assert (smp.label == "memorized").all() and sorted(smp.pick) == ["bottom", "top"]
    assert smp.d_synth.notna().all() and b[b.kind != "sample"].pick.isna().all()
    lab = pd.read_parquet(out / "tables" / "labels").sort_values(["d_train", "sample_id"])
    assert smp[smp.pick == "top"].item_id.tolist() == lab.sample_id.tolist()[:1]
    assert smp[smp.pick == "bottom"].item_id.tolist() == lab.sample_id.tolist()[-1:]
    # Held-out items come from the held-out split, which the K-set never holds.
    from raystudy.datasets import load_dataset
    from raystudy.splits import held_out_indices, kset_indices

    n = len(load_dataset(cfg.data))
    assert set(held.item_id) <= set(held_out_indices(n, cfg.data.held_out, 0))
    assert not set(held.item_id) & set(kset_indices(n, n - cfg.data.held_out, 0))


def test_classify_stores_the_null_beside_the_samples(study):
    from raystudy.compute.null import null_fractions
    from raystudy.datasets import load_dataset

    cfg, out = study
    nf = pd.read_parquet(out / "tables" / "null_fractions")
    fr = pd.read_parquet(out / "tables" / "fractions")
    assert list(nf.columns) == tables.SCHEMAS["null_fractions"].names and len(nf) == 1
    want = null_fractions(cfg, load_dataset(cfg.data), "l2", 8, 0)
    for col in ("n", "memorized", "spurious", "generalized", "ratio_memorized"):
        assert nf[col].iloc[0] == pytest.approx(want[col][0]), col
    # The exact memorizer's samples are all memorized; held-out digits almost never are at K = 8.
    assert nf.n.iloc[0] == 200 and nf.memorized.iloc[0] < 0.1 < fr.memorized.iloc[0]


def test_energy_table_equals_a_direct_call(study):
    import torch

    from raystudy.compute.energy import relative_energy
    from raystudy.compute.items import references
    from raystudy.datasets import load_dataset
    from raystudy.models.memorizer import EmpiricalEpsilon
    from raystudy.models.unet import build_train_scheduler
    from raystudy.splits import kset_indices
    from raystudy.tables import read_samples

    cfg, out = study
    e = pd.read_parquet(out / "tables" / "energy")
    assert list(e.columns) == tables.SCHEMAS["energy"].names
    assert len(e) == 4 * 2 and set(e.reference_kind) == {"train", "held-out"}
    assert sorted(e.kind.unique()) == ["held-out", "sample", "train"]
    # Each sample's pick is its place in the paper's ranking (basins.select_items on its labels).
    from raystudy.compute.basins import select_items

    labels = tables.read_unit(out, "labels", 8, 0, metric="l2").to_pandas()
    chosen = select_items(labels, cfg.energy.per_label, rank=cfg.basins.rank).set_index("sample_id")["pick"]
    smp = e[e.kind == "sample"]
    assert len(smp) and (smp.pick.to_numpy() == chosen.loc[smp.item_id].to_numpy()).all()
    assert e[e.kind != "sample"].pick.isna().all()
    ds = load_dataset(cfg.data)
    sched = build_train_scheduler(cfg.model)
    model = EmpiricalEpsilon(torch.from_numpy(ds.get(kset_indices(len(ds), 8, 0))), sched.alphas_cumprod)
    ids, imgs = read_samples(out, 8, 0, "eval")
    refs = references(cfg, ds, 8)
    for row in e.itertuples():
        x = imgs[np.searchsorted(ids, row.item_id)][None] if row.kind == "sample" else ds.get([row.item_id])
        r = refs["images"][list(refs["item_id"]).index(row.reference_id)][None]
        want = relative_energy(model, x, r, 300, sched.alphas_cumprod, sched.betas, points=16)
        assert row.energy == pytest.approx(float(want["energy"][0]), rel=1e-5, abs=1e-6)
        assert row.quad_error == pytest.approx(float(want["quad_error"][0]), rel=1e-4, abs=1e-9)
    # Training targets are in the K-set, held-out targets in the held-out split.
    assert set(e[e.kind == "train"].item_id) <= set(kset_indices(len(ds), 8, 0))
