import shutil

import numpy as np
import pytest
import torch

from raystudy.config import from_dict
from raystudy.model import CheckpointError, load_unet
from raystudy.train import read_run, train_one


def _cfg():
    return from_dict({"model": {"block_out_channels": [8, 16]},
                      "train": {"images": 64 * 6, "batch_size": 64, "checkpoint_every": 64 * 3}})


def test_resumed_run_equals_uninterrupted_run(tmp_path, digits):
    cfg = _cfg()
    images = digits.get(np.arange(16))
    saved = []

    def keep(state_dir, metrics):
        dst = tmp_path / f"kept-{metrics['steps']}"
        shutil.copytree(state_dir, dst)
        saved.append((dst, metrics))

    full = train_one(cfg, images, 16, 0, tmp_path / "full", on_checkpoint=keep)
    assert [m["steps"] for _, m in saved] == [3, 6]
    assert full["images_seen"] == 6 * 64
    resumed = train_one(cfg, images, 16, 0, tmp_path / "resumed", resume_dir=saved[0][0])
    assert resumed["steps"] == 6
    a, b = load_unet(tmp_path / "full"), load_unet(tmp_path / "resumed")
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=n)
    # A fresh run from scratch with another seed differs: equality above is not trivial.
    other = train_one(cfg, images, 16, 1, tmp_path / "other")
    c = load_unet(tmp_path / "other")
    assert any((p - q).abs().max() > 0 for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    assert read_run(tmp_path / "full")["steps"] == 6 and other["steps"] == 6


def test_corrupt_checkpoint_is_one_line(tmp_path, digits):
    cfg = _cfg()
    train_one(cfg, digits.get(np.arange(4)), 4, 0, tmp_path / "m")
    for f in (tmp_path / "m").glob("*.safetensors"):
        f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="is corrupt") as e:
        load_unet(tmp_path / "m")
    assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_unet(tmp_path / "absent")
