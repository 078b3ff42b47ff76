"""The exact memorizer: the optimal denoiser of the training set itself.

Noising the K training images x_k gives, at every noise level, a Gaussian mixture
    p_t(x) = (1/K) sum_k N(x; a_t x_k, s_t^2 I),
whose score is a softmax-weighted pull toward the scaled training points:
    grad log p_t(x) = (a_t E[x_0 | x] - x) / s_t^2,
    E[x_0 | x]      = sum_k w_k x_k,   w = softmax_k(-||x - a_t x_k||^2 / (2 s_t^2)).
A network trained to zero loss on K images *is* this function, so sampling with
it shows pure memorization (every sample is a training image), the K -> small
end of the transition. It is also the dense associative memory of the paper with
beta = 1 / (2 s_t^2).

Two schedules: variance preserving (diffusers' DDPMScheduler, a_t = sqrt(alpha_bar),
s_t^2 = 1 - alpha_bar), wrapped as a drop-in for UNet2DModel; and the variance
exploding SDE of the 2-D circle study (a_t = 1, s_t = sigma).
"""

from __future__ import annotations

import math

import torch

from .closed_form import ClosedFormEpsilon


def posterior_mean(x: torch.Tensor, train: torch.Tensor, scale, var, chunk: int = 4096,
                   train_sq: torch.Tensor | None = None, compute_dtype=torch.float64) -> torch.Tensor:
    """E[x_0 | x_t = x] under x_t = scale * x_0 + sqrt(var) * noise, x_0 uniform on ``train``.

    x: (B, D); train: (K, D); scale, var: floats or (B,) tensors. The training set
    is streamed in chunks with a running logsumexp, so K = 50,000 CIFAR images need
    only B x chunk logits at a time. The logits drop ||x||^2 (constant per row) and
    are formed in ``compute_dtype``: near t = 0 they are divided by a tiny variance,
    and float32 rounding of x . x_k would then pick the wrong neighbour.
    """
    B = x.shape[0]
    xd = x.reshape(B, -1).to(compute_dtype)
    scale = torch.as_tensor(scale, dtype=compute_dtype, device=x.device).reshape(-1, 1).expand(B, 1)
    var = torch.as_tensor(var, dtype=compute_dtype, device=x.device).reshape(-1, 1).expand(B, 1)
    m = torch.full((B, 1), -torch.inf, dtype=compute_dtype, device=x.device)
    z = torch.zeros((B, 1), dtype=compute_dtype, device=x.device)
    acc = torch.zeros_like(xd)
    for s in range(0, train.shape[0], chunk):
        tk = train[s:s + chunk].reshape(-1, xd.shape[1]).to(device=x.device, dtype=compute_dtype)
        tsq = (tk * tk).sum(1) if train_sq is None else train_sq[s:s + chunk].to(x.device, compute_dtype)
        # -||x - a x_k||^2 / (2 s^2) up to a per-row constant.
        logits = (scale * (xd @ tk.T) - 0.5 * scale ** 2 * tsq[None, :]) / var
        m_new = torch.maximum(m, logits.max(1, keepdim=True).values)
        rescale = torch.exp(m - m_new)
        p = torch.exp(logits - m_new)
        z = z * rescale + p.sum(1, keepdim=True)
        acc = acc * rescale + p @ tk
        m = m_new
    return (acc / z).to(x.dtype).reshape(x.shape)


def ve_denoise(x: torch.Tensor, sigma, train: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Optimal denoiser D(x; sigma) of the VE SDE for the training set ``train`` (K, D)."""
    return posterior_mean(x, train, 1.0, torch.as_tensor(sigma, dtype=torch.float64) ** 2, chunk)


def ve_score(x: torch.Tensor, sigma, train: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """grad_x log p_sigma(x) of the training set blurred by N(0, sigma^2 I) (the VE marginal)."""
    sig = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.dim() - 1)))
    return (ve_denoise(x, sigma, train, chunk) - x) / sig ** 2


def ve_log_density(x: torch.Tensor, sigma: float, train: torch.Tensor) -> torch.Tensor:
    """log p_sigma(x) exactly (logsumexp over the mixture), x (B, D)."""
    d2 = torch.cdist(x.double(), train.reshape(len(train), -1).double()) ** 2
    D = x.shape[1]
    # The constants in float64 too (torch.tensor(float) would be float32: a 4e-8 offset).
    const = math.log(len(train)) + 0.5 * D * math.log(2 * math.pi * float(sigma) ** 2)
    return (torch.logsumexp(-d2 / (2 * float(sigma) ** 2), 1) - const).to(x.dtype)


class EmpiricalEpsilon(ClosedFormEpsilon):
    """Epsilon prediction of the exact memorizer, callable like ``UNet2DModel``.

    eps = (x_t - sqrt(ab) E[x_0 | x_t]) / sqrt(1 - ab), the optimum of the epsilon-matching
    loss on the training set; the interface (timesteps, config, dtype, device) is
    ``closed_form.ClosedFormEpsilon``'s.
    """

    def __init__(self, train_images: torch.Tensor, alphas_cumprod: torch.Tensor, chunk: int = 4096,
                 compute_dtype: torch.dtype = torch.float64):
        train_images = torch.as_tensor(train_images, dtype=torch.float32)
        if train_images.dim() != 4:
            raise ValueError(f"train_images must be (K, C, H, W), got shape {tuple(train_images.shape)}")
        K, C, H, W = train_images.shape
        super().__init__(alphas_cumprod, (C, H, W), K)
        # Buffers, so .to(device) moves the training set and the schedule together.
        self.register_buffer("train_flat", train_images.reshape(K, -1).contiguous(), persistent=False)
        self.register_buffer("train_sq", (self.train_flat.double() ** 2).sum(1), persistent=False)
        self.chunk, self.compute_dtype = chunk, compute_dtype

    def denoise(self, x_t: torch.Tensor, timesteps) -> torch.Tensor:
        """E[x_0 | x_t], the memorizer's clean-image prediction."""
        ab = self.alpha_bar(timesteps, x_t.shape[0])
        x = x_t.reshape(x_t.shape[0], -1)
        x0 = posterior_mean(x, self.train_flat, ab.sqrt(), 1 - ab, self.chunk, self.train_sq, self.compute_dtype)
        return x0.reshape(x_t.shape)
