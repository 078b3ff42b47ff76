"""The denoising loss of a model on fixed batches: its K-set images and held-out images, at fixed
noise levels with fixed noise, so that two evaluations of one run differ only by the weights.

``LossProbe`` is built once per run from the run's own images and the study's held-out split;
calling it on a model (a trained UNet, the exact memorizer, the Gaussian denoiser: anything called
like ``UNet2DModel``) gives the per-item epsilon-matching loss at each level, the training loss
restricted to that level. ``raystudy.onset`` reads the onset of the gap between the two.
Plain torch, no Ray: ``compute.train`` calls it while training, a test or any loop directly.
"""

from __future__ import annotations

import numpy as np

from ..splits import probe_seeds


def levels(num_train_timesteps: int, n_levels: int) -> np.ndarray:
    """The probe's timesteps: the midpoints of ``n_levels`` equal buckets of the schedule (the
    training loss draws t uniformly over it)."""
    T = int(num_train_timesteps)
    return np.minimum(((np.arange(n_levels) + 0.5) * T / n_levels).astype(np.int64), T - 1)


class LossProbe:
    """Fixed noisy batches of ``n_images`` training items and ``n_images`` held-out items (fewer
    where the held-out split is smaller) at ``n_levels`` timesteps. Training items cycle through
    a K-set smaller than ``n_images`` (each repeat has its own noise)."""

    def __init__(self, train_images, held_images, alphas_cumprod, n_images: int = 32, n_levels: int = 6,
                 seed: int = 0):
        import torch

        item_seed, noise_seed = probe_seeds(seed)
        rng = np.random.default_rng(item_seed)
        if len(train_images) == 0 or len(held_images) < 2:
            raise ValueError(f"the loss probe needs training images and >= 2 held-out images, got "
                             f"{len(train_images)} and {len(held_images)}")
        self.train_index = rng.permutation(len(train_images))[np.arange(n_images) % len(train_images)]
        self.held_index = rng.permutation(len(held_images))[:min(n_images, len(held_images))]
        # Indexed before any conversion: a lazy K-set (datasets.LazyImages) reads these items only.
        train = np.asarray(train_images[self.train_index], np.float32)
        held = np.asarray(held_images[self.held_index], np.float32)
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        self.timesteps = levels(len(ac), n_levels)
        gen = torch.Generator().manual_seed(noise_seed % 2**63)
        self._sets = []
        for x0 in (train, held):
            x0 = torch.from_numpy(x0)
            noise = torch.randn((n_levels, *x0.shape), generator=gen)
            a = ac[torch.from_numpy(self.timesteps)].float().view(-1, 1, 1, 1, 1)
            x_t = a.sqrt() * x0[None] + (1 - a).sqrt() * noise
            self._sets.append((x_t, noise))

    @property
    def n_train(self) -> int:
        return len(self.train_index)

    @property
    def n_held(self) -> int:
        return len(self.held_index)

    @property
    def batches(self) -> tuple:
        """The fixed inputs: ((x_t, noise) of the training items, (x_t, noise) of the held-out
        items), each tensor (levels, n, C, H, W), at ``timesteps``. Not to be written to."""
        return tuple(self._sets)

    def __call__(self, model, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Per-item losses of ``model`` (called as ``model(x_t, t).sample``, epsilon): (levels,
        n_train) on the training items and (levels, n_held) on the held-out ones, float64."""
        import torch

        device = getattr(model, "device", torch.device("cpu"))
        dtype = getattr(model, "dtype", torch.float32)
        out = []
        with torch.no_grad():
            for x_t, noise in self._sets:
                L, n = x_t.shape[:2]
                flat_x = x_t.reshape(L * n, *x_t.shape[2:])
                flat_t = torch.from_numpy(np.repeat(self.timesteps, n))
                losses = []
                for s in range(0, L * n, batch_size):
                    pred = model(flat_x[s:s + batch_size].to(device, dtype), flat_t[s:s + batch_size].to(device)).sample
                    err = pred.float().cpu() - noise.reshape(L * n, *x_t.shape[2:])[s:s + batch_size]
                    losses.append(err.pow(2).flatten(1).mean(1).double())
                out.append(torch.cat(losses).reshape(L, n).numpy())
        return out[0], out[1]


def ema_losses(probe: LossProbe, net, ema) -> tuple[np.ndarray, np.ndarray]:
    """``probe``'s losses of the EMA weights of ``net`` (diffusers ``EMAModel``), leaving the
    training weights and mode as they were."""
    params = list(net.parameters())
    ema.store(params)
    ema.copy_to(params)
    was = net.training
    net.eval()
    try:
        return probe(net)
    finally:
        net.train(was)
        ema.restore(params)


def held_out_images(cfg, dataset):
    """The held-out images a run's loss curves compare its K-set with (``splits.held_out``); None
    where the study measures none (``train.gap_evals`` 0, fewer than 2 held out, the circle's VE
    score model)."""
    from ..models import family
    from ..splits import held_out

    if cfg.train.gap_evals == 0 or cfg.data.held_out < 2 or family(cfg).ve:
        return None
    return dataset.images(held_out(cfg, dataset))


__all__ = ["levels", "LossProbe", "ema_losses", "held_out_images"]
