"""raystudy import-samples: the paper's .npz layout and a PNG folder become a study's samples,
which `raystudy run` then labels without any model stage."""

import numpy as np
import pandas as pd

from raystudy.cli import main
from raystudy.config import load_config
from raystudy.datasets import load_dataset
from raystudy.splits import held_out_indices, kset_indices
from tests.conftest import TINY

OVERRIDES = ["ks=[8]", "generate.n_samples=6", "generate.part_size=4"]


def test_paper_npz_and_png_folder_are_labelled(tmp_path, ray_local):
    from PIL import Image

    cfg = load_config(TINY, OVERRIDES)
    ds = load_dataset(cfg.data)
    idx = kset_indices(len(ds), 8, 0)
    train = ds.get(idx)
    held = ds.get(held_out_indices(len(ds), 200, 0)[:8])
    # The paper's run_generate.py layout: a folder of .npz files, each with `samples` (n, C, H, W).
    folder = tmp_path / "samples" / "8"
    folder.mkdir(parents=True)
    eval_imgs = np.concatenate([train[:4], held[:2]])
    np.savez_compressed(folder / "aBcDe.npz", samples=eval_imgs[:3])
    np.savez_compressed(folder / "fGhIj.npz", samples=eval_imgs[3:])
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    ref = np.concatenate([held[2:8]])
    for i, im in enumerate(ref):
        Image.fromarray(np.round((im[0] + 1) * 127.5).astype(np.uint8)).save(pngs / f"{i:03d}.png")
    study = tmp_path / "study"
    assert main(["import-samples", str(TINY), str(folder), "--study", str(study), "--k", "8", "--ref", str(pngs),
                 *[a for o in OVERRIDES for a in ("--set", o)]]) == 0
    said = []
    from raystudy.study import run

    run(cfg, study, echo=said.append)
    assert "[train] complete, skipped" in said and "[generate] complete, skipped" in said
    assert not (study / "models").exists()
    s = pd.read_parquet(study / "tables" / "samples").sort_values(["set", "sample_id"])
    got_eval = np.stack(s[s.set == "eval"].image.to_numpy()).reshape(-1, 1, 8, 8)
    got_ref = np.stack(s[s.set == "ref"].image.to_numpy()).reshape(-1, 1, 8, 8)
    assert np.array_equal(got_eval, eval_imgs)
    assert np.abs(got_ref - ref).max() <= 0.5 / 127.5 + 1e-6
    assert (s.sample_seed == -1).all()
    lab = pd.read_parquet(study / "tables" / "labels").sort_values("sample_id")
    assert lab.label.tolist()[:4] == ["memorized"] * 4 and np.allclose(lab.d_train.tolist()[:4], 0, atol=1e-6)
    assert (lab.d_train.to_numpy()[4:] > cfg.classify.delta_m["l2"]).all()
    # d_synth is the distance to the PNG ref set: brute force.
    flat_ref = got_ref.reshape(6, -1).astype(np.float64)
    d = np.sqrt(((eval_imgs.reshape(6, 1, -1) - flat_ref[None]) ** 2).mean(-1)).min(1)
    assert np.allclose(lab.d_synth.to_numpy(), d, atol=1e-5)
    runs = pd.read_parquet(study / "tables" / "runs")
    assert runs.model.tolist() == ["imported"]


