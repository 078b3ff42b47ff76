"""The Gaussian denoiser: the optimal denoiser of the Gaussian fitted to the training set.

With x_0 ~ N(mu, S) (mu, S: the K-set's mean and covariance) and x_t = a x_0 + s z, the
posterior mean is linear in x_t:
    E[x_0 | x_t] = mu + a S (a^2 S + s^2 I)^{-1} (x_t - a mu),
the best linear denoiser of the data (Wiener filter). Its probability-flow ODE maps the noise z
to mu + S^{1/2} z. Two disjoint K-sets of one distribution estimate mu and S nearly alike for
large K, so twin Gaussian models sampled from the same noise agree, more closely as K grows:
the world where twins must agree, as the exact memorizer is the one where they never do.
Callable like ``UNet2DModel`` (``model(x_t, t).sample`` is epsilon) through ``closed_form.ClosedFormEpsilon``.
"""

from __future__ import annotations

import torch

from .closed_form import ClosedFormEpsilon


class GaussianEpsilon(ClosedFormEpsilon):
    def __init__(self, train_images, alphas_cumprod):
        x = torch.as_tensor(train_images, dtype=torch.float64)
        K, C, H, W = x.shape
        super().__init__(alphas_cumprod, (C, H, W), K)
        flat = x.reshape(K, -1)
        mu = flat.mean(0)
        cov = (flat - mu).T @ (flat - mu) / K  # the K-set's own (maximum likelihood) covariance
        lam, U = torch.linalg.eigh(cov)
        self.register_buffer("mu", mu, persistent=False)
        self.register_buffer("lam", lam.clamp_min(0), persistent=False)
        self.register_buffer("U", U, persistent=False)

    def denoise(self, x_t: torch.Tensor, timesteps) -> torch.Tensor:
        ab = self.alpha_bar(timesteps, x_t.shape[0]).reshape(-1, 1)
        a, s2 = ab.sqrt(), 1 - ab
        y = (x_t.reshape(len(x_t), -1).to(torch.float64) - a * self.mu) @ self.U
        gain = a * self.lam / (ab * self.lam + s2)
        return (self.mu + (gain * y) @ self.U.T).reshape(x_t.shape)
