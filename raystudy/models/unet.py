"""The network an image study trains: diffusers' UNet2DModel, DDPM epsilon prediction. How it is
built, its training loss, and how it is saved as a diffusers pipeline folder; ``load`` reads any
trained model folder (this UNet's, or the circle's score MLP, ``circle_mlp``). The training loop
(``compute/train.py``) is the same for both networks: ``raystudy.models.family`` says which."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CheckpointError, one_line
from . import batch_share


def build_unet(model_cfg, shape: tuple[int, int, int]):
    from diffusers import UNet2DModel

    c, h, w = shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    levels = len(model_cfg.block_out_channels)
    if h % (2 ** (levels - 1)):
        raise ValueError(f"image side {h} is not divisible by 2^{levels - 1} (model has {levels} levels)")
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in model_cfg.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(model_cfg.attention))
    return UNet2DModel(
        sample_size=h, in_channels=c, out_channels=c,
        block_out_channels=tuple(model_cfg.block_out_channels),
        layers_per_block=model_cfg.layers_per_block,
        down_block_types=down, up_block_types=up,
        norm_num_groups=model_cfg.norm_num_groups,
        attention_head_dim=None,
    )


def build(model_cfg, shape: tuple[int, int, int], seed: int = 0):
    """The untrained UNet for images of ``shape``; its initial weights follow torch's global seed
    (``compute.train.build_trainer`` sets it), not ``seed``."""
    return build_unet(model_cfg, shape)


def build_train_scheduler(model_cfg):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=model_cfg.num_train_timesteps, prediction_type="epsilon")


def loss(model_cfg, model, x0, gen, alphas_cumprod, autocast, part=None):
    """One batch's training loss: DDPM epsilon matching at a uniform timestep. ``part``: this
    worker's share of a data-parallel batch (``raystudy.models.batch_share``)."""
    import torch

    device = x0.device
    n, rows = batch_share(len(x0), part)
    noise = torch.randn((n, *x0.shape[1:]), generator=gen)[rows].to(device)
    t = torch.randint(0, model_cfg.num_train_timesteps, (n,), generator=gen)[rows].to(device)
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    with autocast():
        pred = model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t).sample
    return torch.nn.functional.mse_loss(pred.float(), noise)


PIPELINE_INDEX = "model_index.json"


def save(model, folder: Path, model_cfg) -> None:
    """Write the UNet into ``folder`` (a fresh temporary folder the caller renames) as a diffusers
    DDPMPipeline folder (``model_index.json``, ``unet/``, ``scheduler/`` holding the study's
    training noise schedule), so ``DDPMPipeline.from_pretrained(folder)`` samples from it with no
    raystudy installed."""
    from diffusers import DDPMPipeline

    model = model.to("cpu").float()
    DDPMPipeline(unet=model, scheduler=build_train_scheduler(model_cfg)).save_pretrained(folder)


def _weights_dir(p: Path) -> Path:
    """The folder with the network's config.json and weights: ``unet/`` of a pipeline folder, or
    the model folder itself (the circle's MLP, and every UNet saved before pipeline folders)."""
    if not (p / PIPELINE_INDEX).exists():
        return p
    index = json.loads((p / PIPELINE_INDEX).read_text())
    if not isinstance(index, dict) or "unet" not in index:
        raise ValueError(f"{PIPELINE_INDEX} names no unet")
    json.loads((p / "scheduler" / "scheduler_config.json").read_text())
    return p / "unet"


def check_checkpoint(path) -> None:
    """Cheap validation in the driver (index, configs and weight headers only), so a corrupt
    model is a one-line error before Ray workers start, not a remote traceback."""
    p = Path(path)
    try:
        w = _weights_dir(p)
        json.loads((w / "config.json").read_text())
        from safetensors import safe_open

        files = list(w.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError("no .safetensors weights")
        for f in files:
            with safe_open(str(f), framework="pt") as fh:
                fh.keys()
    except Exception as e:  # noqa: BLE001 - any failure means the same thing to the user
        raise CheckpointError(f"checkpoint {p} is corrupt ({type(e).__name__}: {one_line(e, 120)}); "
                              f"delete it and re-run the train stage") from None


def load_checkpoint(path):
    """Load a saved (EMA) model, of the class its config.json names, from a pipeline folder or
    a plain model folder; a corrupt or missing checkpoint is a one-line error."""
    from diffusers import UNet2DModel

    from .circle_mlp import ScoreMLP

    p = Path(path)
    if not (p / PIPELINE_INDEX).exists() and not (p / "config.json").exists():
        raise CheckpointError(f"checkpoint {p} has no {PIPELINE_INDEX} (nor config.json): re-run the train stage")
    check_checkpoint(p)
    w = _weights_dir(p)
    name = json.loads((w / "config.json").read_text()).get("_class_name")
    cls = {"UNet2DModel": UNet2DModel, "ScoreMLP": ScoreMLP}.get(name)
    if cls is None:
        raise CheckpointError(f"checkpoint {p} holds a {name!r}, not a raystudy model: re-run the train stage")
    return cls.from_pretrained(w).eval()
