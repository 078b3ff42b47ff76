import shutil

import numpy as np
import torch

from raystudy.compute.train import read_run, train_one
from raystudy.config import from_dict
from raystudy.models.unet import load_checkpoint


def _cfg(**train):
    return from_dict({"model": {"block_out_channels": [8, 16]},
                      "train": {"images": 64 * 6, "batch_size": 64, "checkpoint_every": 64 * 3, **train}})


def test_resumed_run_equals_uninterrupted_run(tmp_path, digits):
    cfg = _cfg()
    images = digits.get(np.arange(16))
    state = tmp_path / "state.pt"
    kept = []

    def keep(metrics):
        if state.exists():  # the state is written before the callback, except at the last step
            shutil.copy(state, tmp_path / f"kept-{metrics['steps']}.pt")
        kept.append(metrics["steps"])

    full = train_one(cfg, images, 16, 0, tmp_path / "full", state, on_checkpoint=keep)
    assert kept == [3, 6] and not state.exists()  # removed once the model is saved
    assert full["images_seen"] == 6 * 64 and full["resumed_from_step"] == 0
    resumed = train_one(cfg, images, 16, 0, tmp_path / "resumed", tmp_path / "kept-3.pt")
    assert resumed["steps"] == 6 and resumed["resumed_from_step"] == 3
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "resumed")
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=n)
    # A fresh run from scratch with another seed differs: equality above is not trivial.
    other = train_one(cfg, images, 16, 1, tmp_path / "other")
    c = load_checkpoint(tmp_path / "other")
    assert any((p - q).abs().max() > 0 for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    assert read_run(tmp_path / "full")["steps"] == 6 and other["steps"] == 6
    log = __import__("json").loads((tmp_path / "full" / "log.json").read_text())
    assert [s for s, _ in log] == [1, 2, 3, 4, 5, 6] and all(np.isfinite(v) for _, v in log)


def test_cosine_schedule_resumes_exactly_and_differs_from_constant(tmp_path, digits):
    images = digits.get(np.arange(8))
    cfg = _cfg(lr_schedule="cosine", grad_clip=None)
    state = tmp_path / "s.pt"
    train_one(cfg, images, 8, 0, tmp_path / "full", state,
              on_checkpoint=lambda m: state.exists() and shutil.copy(state, tmp_path / "k.pt"))
    train_one(cfg, images, 8, 0, tmp_path / "resumed", tmp_path / "k.pt")
    train_one(_cfg(), images, 8, 0, tmp_path / "constant")
    a, b, c = (load_checkpoint(tmp_path / n).state_dict() for n in ("full", "resumed", "constant"))
    for n in a:
        torch.testing.assert_close(a[n], b[n], msg=n)
    assert any((a[n] - c[n]).abs().max() > 0 for n in a)


def test_circle_mlp_trains_saves_and_loads(tmp_path):
    cfg = from_dict({"data": {"name": "circle"}, "model": {"type": "circle-mlp", "width": 16, "depth": 2},
                     "generate": {"sampler": "em"}, "knn": {"metrics": ["euclidean"]},
                     "train": {"images": 64 * 20, "batch_size": 64, "lr_schedule": "cosine"}})
    th = np.linspace(0, 2 * np.pi, 3, endpoint=False)
    pts = np.stack([np.cos(th), np.sin(th)], 1).astype(np.float32).reshape(3, 1, 1, 2)
    rec = train_one(cfg, pts, 3, 0, tmp_path / "mlp")
    assert rec["model"] == "circle-mlp" and rec["steps"] == 20 and np.isfinite(rec["final_loss"])
    net = load_checkpoint(tmp_path / "mlp")
    x = torch.zeros(4, 2)
    assert net(x, torch.full((4,), 0.5)).shape == (4, 2)


HELD = np.arange(1700, 1797)


def _curves(folder):
    import json

    from raystudy.compute.train import CURVES_FILE

    return json.loads((folder / CURVES_FILE).read_text())


def _probe_of(cfg, images, k, seed, held):
    """The probe a run (K, seed) measures its curves with, built here from the same parts."""
    from raystudy.compute.losses import LossProbe
    from raystudy.models.unet import build_train_scheduler
    from raystudy.splits import run_seed

    return LossProbe(images, held, build_train_scheduler(cfg.model).alphas_cumprod, cfg.train.gap_images,
                     cfg.train.gap_levels, seed=run_seed(cfg.study.seed, k, seed))


def test_loss_curves_change_no_model(tmp_path, digits):
    from raystudy.compute.train import eval_steps

    images, held = digits.get(np.arange(8)), digits.get(HELD)
    train_one(_cfg(gap_evals=0), images, 8, 0, tmp_path / "none", held_out=held)
    cfg = _cfg(gap_evals=4)
    rec = train_one(cfg, images, 8, 0, tmp_path / "curves", held_out=held)
    a, b = (load_checkpoint(tmp_path / n).state_dict() for n in ("none", "curves"))
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=0, msg=n)
    assert not (tmp_path / "none" / "loss_curves.json").exists()
    curves = _curves(tmp_path / "curves")
    assert [e[0] for e in curves["evals"]] == [64 * s for s in sorted(eval_steps(6, 4))] == [64, 128, 192, 384]
    probe = _probe_of(cfg, images, 8, 0, held)
    assert curves["timesteps"] == probe.timesteps.tolist() and curves["n_train"] == curves["n_held_out"] == 32
    # The last evaluation is of the saved (EMA) model itself.
    tr, ho = probe(load_checkpoint(tmp_path / "curves").eval())
    np.testing.assert_allclose(curves["evals"][-1][1], tr, rtol=1e-5)
    np.testing.assert_allclose(curves["evals"][-1][2], ho, rtol=1e-5)
    assert "stopped_on_gap" not in rec


def test_stop_on_gap_keeps_the_model_of_the_confirming_evaluation(tmp_path, digits):
    """Two images and a high learning rate: the training items' loss falls below half the
    held-out items' (the rule's RHO) at the lowest noise level within some 20 steps."""
    from raystudy.onset import CONFIRM, gap_onset

    images, held = digits.get(np.arange(2)), digits.get(HELD)
    cfg = _cfg(images=64 * 40, lr=1e-2, ema_decay=0.9, gap_evals=10, stop_on_gap=True)
    rec = train_one(cfg, images, 2, 0, tmp_path / "m", held_out=held)
    curves = _curves(tmp_path / "m")
    seen = [e[0] for e in curves["evals"]]
    o = gap_onset(seen, np.array([e[1] for e in curves["evals"]]), np.array([e[2] for e in curves["evals"]]))
    assert rec["stopped_on_gap"] and read_run(tmp_path / "m")["stopped_on_gap"]
    assert rec["steps"] < 40 and rec["images_seen"] == seen[-1] == 64 * rec["steps"]
    # The onset is confirmed by the evaluation after it, where the run ended.
    assert o["index"] == len(seen) - CONFIRM and rec["tau_gap"] == o["tau_gap"] == seen[-2]
    tr, ho = _probe_of(cfg, images, 2, 0, held)(load_checkpoint(tmp_path / "m").eval())
    np.testing.assert_allclose(curves["evals"][-1][1], tr, rtol=1e-5)
    np.testing.assert_allclose(curves["evals"][-1][2], ho, rtol=1e-5)


def test_resumed_run_writes_the_same_loss_curves(tmp_path, digits):
    cfg = _cfg(gap_evals=4)
    images, held = digits.get(np.arange(8)), digits.get(HELD)
    state = tmp_path / "s.pt"
    train_one(cfg, images, 8, 0, tmp_path / "full", state, held_out=held,
              on_checkpoint=lambda m: state.exists() and shutil.copy(state, tmp_path / "k.pt"))
    rec = train_one(cfg, images, 8, 0, tmp_path / "resumed", tmp_path / "k.pt", held_out=held)
    assert rec["resumed_from_step"] == 3  # two evaluations before it, one at it, one after
    assert _curves(tmp_path / "resumed") == _curves(tmp_path / "full")
