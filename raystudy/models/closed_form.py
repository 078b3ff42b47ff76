"""Denoisers known in closed form, behind diffusers' ``UNet2DModel`` interface.

A closed-form denoiser of a K-set (the exact memorizer, ``memorizer.EmpiricalEpsilon``; the
Gaussian fitted to the set, ``gaussian.GaussianEpsilon``) knows E[x_0 | x_t] for the variance
preserving schedule x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) z. ``ClosedFormEpsilon``
adapts it to what a sampler calls: ``model(x_t, t).sample`` is epsilon,
    eps = (x_t - sqrt(alpha_bar) E[x_0 | x_t]) / sqrt(1 - alpha_bar),
and ``config``, ``dtype`` and ``device`` read like the UNet's. A subclass defines only ``denoise``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class Config(dict):
    """Reads like diffusers' FrozenDict: ``cfg.sample_size`` and ``cfg["sample_size"]``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class EpsilonOutput:
    sample: torch.Tensor


def alpha_bar(alphas_cumprod: torch.Tensor, timesteps, batch: int) -> torch.Tensor:
    """alpha_bar at 0-based scheduler indices: (batch,), one timestep broadcast to the batch.

    An index outside the schedule is refused: a negative one would wrap to its end and a clamp
    would silently shift the noise level.
    """
    t = torch.as_tensor(timesteps, device=alphas_cumprod.device).reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"{t.numel()} timesteps for a batch of {batch}")
    last = len(alphas_cumprod) - 1
    if t.numel() and (t.min() < 0 or t.max() > last):
        raise ValueError(f"timesteps must lie in [0, {last}], got {t.min().item()}..{t.max().item()}")
    return alphas_cumprod[t]


class ClosedFormEpsilon(torch.nn.Module):
    """Epsilon prediction from a closed-form ``denoise(x_t, timesteps)`` = E[x_0 | x_t].

    ``model(x_t, timesteps).sample`` with x_t (B, C, H, W) and timesteps an int or a 0-d / 1-d
    tensor of DDPM indices; ``alphas_cumprod`` is the scheduler's (e.g.
    ``DDPMScheduler(num_train_timesteps=1000).alphas_cumprod``).
    """

    def __init__(self, alphas_cumprod: torch.Tensor, shape: tuple[int, int, int], num_images: int):
        super().__init__()
        # A buffer, so .to(device) moves the schedule with the subclass's own buffers.
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float64),
                             persistent=False)
        C, H, W = shape
        self.config = Config(sample_size=H if H == W else (H, W), in_channels=C, out_channels=C,
                             num_train_timesteps=len(self.alphas_cumprod), num_images=num_images)

    @property
    def dtype(self) -> torch.dtype:
        """What a sampler feeds: float32 (the closed forms work in float64 inside and answer in
        the input's dtype)."""
        return torch.float32

    @property
    def device(self) -> torch.device:
        return self.alphas_cumprod.device

    def alpha_bar(self, timesteps, batch: int) -> torch.Tensor:
        return alpha_bar(self.alphas_cumprod, timesteps, batch)

    def denoise(self, x_t: torch.Tensor, timesteps) -> torch.Tensor:
        """E[x_0 | x_t], shaped like x_t."""
        raise NotImplementedError

    def forward(self, sample: torch.Tensor, timestep, return_dict: bool = True, **_):
        ab = self.alpha_bar(timestep, sample.shape[0]).to(torch.float64).reshape(-1, 1, 1, 1)
        x0 = self.denoise(sample, timestep).to(torch.float64)
        eps = ((sample.to(torch.float64) - ab.sqrt() * x0) / (1 - ab).sqrt()).to(sample.dtype)
        return EpsilonOutput(eps) if return_dict else (eps,)
