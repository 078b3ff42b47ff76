"""A trained UNet's folder is a diffusers DDPMPipeline folder that diffusers opens alone; folders
in the layout before it (config.json + weights at the top) still load."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from raystudy.compute.train import train_one
from raystudy.config import from_dict
from raystudy.errors import CheckpointError
from raystudy.models.unet import build_train_scheduler, check_checkpoint, load_checkpoint

# num_train_timesteps is not diffusers' default (1000): a pipeline saved with a default
# scheduler instead of the study's would sample differently.
CFG = {"model": {"block_out_channels": [8, 16], "num_train_timesteps": 50},
       "train": {"images": 64 * 3, "batch_size": 64, "checkpoint_every": 64 * 3}}

# Runs in a fresh interpreter that cannot import raystudy: only diffusers and torch.
SAMPLE_WITH_DIFFUSERS_ONLY = """
import sys
sys.modules["raystudy"] = None  # any `import raystudy` now raises ImportError
import numpy as np, torch
from diffusers import DDPMPipeline
pipe = DDPMPipeline.from_pretrained(sys.argv[1])
out = pipe(batch_size=1, num_inference_steps=3, generator=torch.Generator().manual_seed(7), output_type="np")
np.save(sys.argv[2], out.images)
assert not [m for m in sys.modules if m.startswith("raystudy.")]
print(type(pipe.scheduler).__name__, pipe.scheduler.config.num_train_timesteps)
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    cfg = from_dict(CFG)
    d = tmp_path_factory.mktemp("pipe") / "K4-s0"
    train_one(cfg, digits.get(np.arange(4)), 4, 0, d)
    return cfg, d


def test_ddpm_pipeline_samples_the_saved_model_without_raystudy(trained, tmp_path):
    from raystudy.compute.generate import sample_images

    cfg, d = trained
    assert sorted(p.name for p in d.iterdir()) == ["log.json", "model_index.json", "run.json", "scheduler", "unet"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", SAMPLE_WITH_DIFFUSERS_ONLY, str(d), str(tmp_path / "x.npy")],
                          cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["DDPMScheduler", "50"]
    images = np.load(tmp_path / "x.npy")  # (n, H, W, C) in [0, 1]
    assert images.shape == (1, 8, 8, 1)
    # The same denoising by raystudy's own sampler on the model raystudy loads (the EMA
    # weights) and the study's schedule: DDPMPipeline maps [-1, 1] to [0, 1].
    sched = build_train_scheduler(cfg.model)
    sched.set_timesteps(3)
    ours = sample_images(load_checkpoint(d), sched, [7], (1, 8, 8))
    np.testing.assert_allclose(images.transpose(0, 3, 1, 2), (ours + 1) / 2, atol=1e-5)


def test_old_layout_folder_still_loads(trained, tmp_path):
    from raystudy.compute.generate import load_model

    cfg, d = trained
    # A UNet folder as raystudy wrote it before pipeline folders: save_pretrained at the top.
    old = tmp_path / "study" / "models" / "K4-s0"
    load_checkpoint(d).save_pretrained(old)
    shutil.copy(d / "run.json", old / "run.json")
    assert (old / "config.json").exists() and not (old / "model_index.json").exists()
    check_checkpoint(old)
    a, b = load_checkpoint(d).state_dict(), load_model(cfg, tmp_path / "study", 4, 0).state_dict()
    assert a.keys() == b.keys()
    for n in a:
        torch.testing.assert_close(a[n], b[n], msg=n)
    for f in old.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="is corrupt") as e:
        load_checkpoint(old)
    assert "\n" not in str(e.value)


def test_absent_model_folder_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no model_index.json") as e:
        load_checkpoint(tmp_path / "absent")
    assert "\n" not in str(e.value)


def _garbage_weights(d):
    for f in (d / "unet").glob("*.safetensors"):
        f.write_bytes(b"garbage")


@pytest.mark.parametrize("damage", [
    _garbage_weights,
    lambda d: (d / "model_index.json").write_text("{not json"),
    lambda d: (d / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"})),
    lambda d: (d / "scheduler" / "scheduler_config.json").unlink(),
    lambda d: shutil.rmtree(d / "unet"),
], ids=["weights", "index", "index-without-unet", "scheduler", "unet-folder"])
def test_corrupt_pipeline_folder_is_one_line(trained, tmp_path, damage):
    _, d = trained
    copy = tmp_path / "m"
    shutil.copytree(d, copy)
    check_checkpoint(copy)  # intact before the damage
    damage(copy)
    for fn in (check_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError, match="is corrupt") as e:
            fn(copy)
        assert "\n" not in str(e.value)
