"""One run on two workers (Ray Train's TorchTrainer inside the Tune trial, two gloo processes)
trains the model one process trains: the same loss curve and the same weights within float
tolerance, with the same global batch and seeds, and it resumes from its state file after the
driver and the workers are killed, even when the re-run asks for other resources per trial.
(A one-process trial resuming from its state file after its node is lost, with the driver in
its own process: tests/system/test_cluster.py.)

Tolerances (measured on a 2-core AMD EPYC: loss curve within 2e-7 relative, weights within
6e-5): the workers' all-reduce sums the two halves' gradients in another order than one
process's backward, a rounding-level difference that AdamW can raise to a fraction of one
step's update (lr = 2e-3) on a parameter whose gradient is near zero. A run whose workers drew
their own batches, or the same noise for their two halves, is off by orders of magnitude more.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from raystudy import tables
from raystudy.compute.train import train_one
from raystudy.config import from_dict, load_config
from raystudy.datasets import load_dataset
from raystudy.models.unet import load_checkpoint as load_model

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BIN = Path(sys.executable).parent
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-3
K = 16


def _raw(steps: int, checkpoint_steps: int, workers: int) -> dict:
    return {"study": {"name": "dp", "seed": 0}, "data": {"name": "digits"}, "ks": [K], "seeds": [0],
            "model": {"block_out_channels": [8, 16], "attention": [False, False], "norm_num_groups": 4},
            "train": {"images": 16 * steps, "batch_size": 16, "checkpoint_every": 16 * checkpoint_steps,
                      "cpus_per_trial": 1, "workers": workers},
            "generate": {"n_samples": 4, "steps": 2, "batch_size": 4, "workers": 1},
            "knn": {"metrics": ["l2"], "k": 3, "workers": 1}, "ray": {"num_cpus": 2}}


def _one_process(cfg, folder: Path, twin: int = 0, snapshots=()) -> tuple[list, dict]:
    """The reference: ``train_one`` in this process, no Ray (the workers: 1 path), on the twin's
    K-set; ``snapshots`` (images seen) are saved beside ``folder`` as ``folder-snap-N``."""
    from raystudy import axes
    from raystudy.splits import kset

    dataset = load_dataset(cfg.data)
    images = dataset.images(kset(cfg, dataset, axes.Axis(twin=twin), K))
    train_one(cfg, images, K, 0, folder, twin=twin,
              snapshots={s: (folder.with_name(f"{folder.name}-snap-{s}"), None) for s in snapshots})
    return json.loads((folder / "log.json").read_text()), load_model(folder).state_dict()


def _assert_same_run(folder: Path, ref_log: list, ref_weights: dict) -> None:
    log = json.loads((folder / "log.json").read_text())
    assert [s for s, _ in log] == [s for s, _ in ref_log]
    np.testing.assert_allclose([v for _, v in log], [v for _, v in ref_log], rtol=LOSS_RTOL, atol=0)
    weights = load_model(folder).state_dict()
    assert weights.keys() == ref_weights.keys()
    for name, w in weights.items():
        torch.testing.assert_close(w, ref_weights[name], rtol=0, atol=WEIGHT_ATOL, msg=name)


def test_two_workers_train_the_one_process_model(tmp_path, ray_local):
    """Also with the axes of a phase study: a snapshot and a twin on its own K-set, each equal to
    one process's."""
    from raystudy.study import run

    snap = 16 * 4
    raw = _raw(steps=12, checkpoint_steps=4, workers=2)
    cfg = from_dict({**raw, "twins": True, "train": {**raw["train"], "snapshots": [snap]}})
    run(cfg, tmp_path / "study", only="train", echo=lambda *a: None)
    models = tmp_path / "study" / "models"
    folder = models / f"K{K}-s0"
    record = json.loads((folder / "run.json").read_text())
    assert record["steps"] == 12 and record["images_seen"] == 12 * 16 and record["resumed_from_step"] == 0
    assert (folder / "model_index.json").exists() and (folder / "unet").is_dir()  # the DDPMPipeline folder
    # The train stage's rows came from the data-parallel runs, as from one-process ones.
    rows = tables.read(tmp_path / "study", "runs").to_pylist()
    assert sorted((r["K"], r["twin"], r["steps"]) for r in rows) == [(K, t, s) for t in (0, 1) for s in (4, 12)]

    one = from_dict(_raw(steps=12, checkpoint_steps=4, workers=1))
    for twin, name in ((0, f"K{K}-s0"), (1, f"base.twin-K{K}-s0")):
        ref_log, ref_weights = _one_process(one, tmp_path / f"one{twin}", twin, snapshots=[snap])
        _assert_same_run(models / name, ref_log, ref_weights)
        # The snapshot: the EMA weights after 4 steps, saved by rank 0 as one process saves them.
        _assert_same_run(models / f"{name}-snap-{snap:08d}", json.loads(
            (tmp_path / f"one{twin}-snap-{snap}" / "log.json").read_text()),
            load_model(tmp_path / f"one{twin}-snap-{snap}").state_dict())
    w0, w1 = (load_model(models / n).state_dict() for n in (f"K{K}-s0", f"base.twin-K{K}-s0"))
    assert max((w0[n] - w1[n]).abs().max().item() for n in w0) > 100 * WEIGHT_ATOL  # the twin is a run of its own


def _ray_of(tmp: str) -> list:
    """The processes of the local Ray started with RAY_TMPDIR=tmp (actors have their own groups)."""
    out = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get("RAY_TMPDIR") == tmp:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def test_killed_two_worker_run_resumes_from_its_state_file(tmp_path):
    steps = 60  # ~0.1 s a step: seconds between the first state file and the end, to kill in
    cfg_file = tmp_path / "dp.yaml"
    cfg_file.write_text(json.dumps(_raw(steps=steps, checkpoint_steps=3, workers=2)))  # JSON is YAML
    study = tmp_path / "study"
    args = [str(BIN / "raystudy"), "run", str(cfg_file), "--study", str(study), "--only", "train"]
    ray_tmp = tempfile.mkdtemp(prefix="rdp", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "first.log"
    first = subprocess.Popen(args, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    state = study / "models" / f".state-K{K}-s0.pt"
    deadline = time.time() + 300
    try:
        while not state.exists():
            assert first.poll() is None, "the run ended before it could be interrupted:\n" + out.read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        # The trial and both workers too (Ray's actors are not in the driver's process group):
        # nothing of the first attempt may go on writing the state file.
        for p in _ray_of(ray_tmp):
            p.kill()
        psutil.wait_procs(_ray_of(ray_tmp), timeout=30)
    assert not (study / "models" / f"K{K}-s0" / "run.json").exists(), "finished before it was killed"

    # Resources per trial shape where a run goes, not what it computes: the run resumes with
    # other ones (each worker 0.75 CPU instead of 0.5).
    second = subprocess.run(args + ["--set", "train.cpus_per_trial=1.5"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    folder = study / "models" / f"K{K}-s0"
    record = json.loads((folder / "run.json").read_text())
    assert record["steps"] == steps
    assert 0 < record["resumed_from_step"] < steps, record
    assert not state.exists()

    ref_log, ref_weights = _one_process(load_config(cfg_file, ["train.workers=1"]), tmp_path / "one")
    _assert_same_run(folder, ref_log, ref_weights)
