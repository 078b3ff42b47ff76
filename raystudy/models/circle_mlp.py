"""The 2-D circle's score models on its variance-exploding SDE, sigma(t) = sigma_max sqrt(t): the
score MLP a ``circle-mlp`` study trains (how it is built, its loss, how it is saved), and the exact
memorizer's score on the same process (``empirical_score``), which takes the MLP's place where
``model.type`` is ``empirical``. Both have the signature ``score(x (B, 2), t (B,)) -> (B, 2)``.
The circle's data and its sampler are ``raystudy.datasets.toy.circle``."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from . import batch_share

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sigma(t, sigma_max: float = 1.0):
    return sigma_max * (t ** 0.5 if isinstance(t, torch.Tensor) else np.sqrt(t))


class ScoreMLP(ModelMixin, ConfigMixin):
    """s(x, t) = MLP([x, fourier(log sigma)]) / sigma(t).

    The Fourier frequencies are random and frozen (Tancik et al.; Song's
    GaussianFourierProjection). They act on log sigma rather than t because the
    memorizing regime lives at t in [1e-5, 1e-2], which t itself would squeeze
    into 1% of the input range. Dividing by sigma makes the target of the
    network, -z, of order one at every noise level. A diffusers model, so it is saved and
    loaded (``save_pretrained`` / ``from_pretrained``) like the UNet.
    """

    @register_to_config
    def __init__(self, width: int = 128, depth: int = 3, n_freq: int = 16, freq_scale: float = 2.0,
                 sigma_max: float = 1.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freq", torch.randn(n_freq, generator=g) * freq_scale)
        self.sigma_max = sigma_max
        layers, d = [], 2 + 2 * n_freq
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.SiLU()]
            d = width
        layers.append(nn.Linear(d, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = sigma(t, self.sigma_max)
        phase = 2 * math.pi * torch.log(s)[:, None] * self.freq[None, :]
        h = torch.cat([x, torch.sin(phase), torch.cos(phase)], 1)
        return self.net(h) / s[:, None]


def empirical_score(train: torch.Tensor, sigma_max: float = 1.0) -> ScoreFn:
    """The exact memorizer of ``train`` (K, 2) as a score function of (x, t)."""
    from .memorizer import ve_score

    train = torch.as_tensor(train, dtype=torch.float32).reshape(-1, 2)
    return lambda x, t: ve_score(x, sigma(t, sigma_max), train)


def sample_t(n: int, t_min: float, gen: torch.Generator) -> torch.Tensor:
    """Half uniform in t (the tutorial's choice), half log-uniform: without the
    second half, t < 1e-2 -- where memorization is decided -- is seen 1% of the time."""
    u = torch.rand(n, generator=gen)
    lin = t_min + (1 - t_min) * u
    log = t_min ** (1 - u)
    return torch.where(torch.arange(n) % 2 == 0, lin, log)


def build(model_cfg, shape: tuple = (2,), seed: int = 0) -> ScoreMLP:
    """The untrained score MLP; ``seed`` draws its frozen Fourier frequencies (the points are 2-D
    whatever ``shape`` says)."""
    return ScoreMLP(model_cfg.width, model_cfg.depth, sigma_max=model_cfg.sigma_max, seed=seed)


def loss(model_cfg, model, x0, gen, alphas_cumprod=None, autocast=None, part=None):
    """One batch's sigma^2-weighted denoising score matching loss, E ||sigma s(x0 + sigma z, t) + z||^2,
    at times from ``sample_t``. ``alphas_cumprod`` and ``autocast`` are the UNet's (unused here);
    ``part``: this worker's share of a data-parallel batch (``raystudy.models.batch_share``)."""
    device = x0.device
    n, rows = batch_share(len(x0), part)
    x0 = x0.reshape(len(x0), -1)
    t = sample_t(n, model_cfg.t_min, gen)[rows].to(device)
    z = torch.randn((n, *x0.shape[1:]), generator=gen)[rows].to(device)
    s = sigma(t, model_cfg.sigma_max)[:, None]
    return ((model(x0 + s * z, t) * s + z) ** 2).sum(1).mean()


def save(model, folder, model_cfg=None) -> None:
    """Write the MLP into ``folder`` as a plain model folder (``config.json`` + weights,
    ``ScoreMLP.from_pretrained``): a diffusers pipeline folder names a pipeline class to sample
    with, and diffusers has none for this VE SDE (its ScoreSdeVePipeline assumes a UNet and a
    geometric sigma schedule)."""
    model.to("cpu").float().save_pretrained(folder)
