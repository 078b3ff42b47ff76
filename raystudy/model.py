"""The UNet2DModel and noise scheduler a study trains, built from the config."""

from __future__ import annotations


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


def build_train_scheduler(model_cfg):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=model_cfg.num_train_timesteps, prediction_type="epsilon")


class CheckpointError(RuntimeError):
    """A saved model that cannot be used: one line naming it and what to do."""


def check_checkpoint(path) -> None:
    """Cheap validation in the driver (config and weight headers only), so a corrupt model
    is a one-line error before Ray workers start, not a remote traceback."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    p = Path(path)
    try:
        json.loads((p / "config.json").read_text())
        files = list(p.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError("no .safetensors weights")
        for f in files:
            with safe_open(str(f), framework="pt") as fh:
                fh.keys()
    except Exception as e:  # noqa: BLE001 - any failure means the same thing to the user
        raise CheckpointError(f"checkpoint {p} is unusable ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                              f"delete it and re-run the train stage") from None


def load_unet(path):
    """Load a saved (EMA) UNet; a corrupt or missing checkpoint is a one-line error."""
    from pathlib import Path

    from diffusers import UNet2DModel

    p = Path(path)
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"checkpoint {p} has no config.json: re-run the train stage")
    try:
        return UNet2DModel.from_pretrained(p)
    except Exception as e:  # noqa: BLE001 - any failure to read weights means the checkpoint is unusable
        raise CheckpointError(f"checkpoint {p} is corrupt ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                           f"delete it and re-run the train stage") from None
