"""An image dataset whose manifold is known: soft discs rendered from six latents.

Image i is a soft-edged disc (centre x, y; radius; colour r, g, b) on a fixed
background, rendered on demand from latents that are a pure function of
(seed, i). So the data lie exactly on a known 6-dimensional manifold, any image
(a generated sample, say) can be projected onto it by fitting the latents, and
the reconstruction error says how far off the manifold it is: a diffusion model
that *generalizes* produces new points of the manifold (small error, far from
every training image), one that produces blends of training images leaves it.

Nothing is materialised: a dataset of 10**7 images costs nothing until ``get``.
"""

from __future__ import annotations

import numpy as np

from .data import Dataset

N_LATENTS = 6
# Ranges keep the whole disc inside the frame (centre +- radius within [0.05, 0.95]),
# so every latent is identifiable from the image.
CENTRE = (0.3, 0.7)
RADIUS = (0.1, 0.25)
COLOUR = (-1.0, 1.0)
BACKGROUND = (-0.6, -0.6, -0.6)
# Edge width in pixels: soft enough that the rendering is smooth in the latents
# (the fit is a gradient descent), sharp enough to look like a disc.
EDGE_PX = 0.75
DEFAULT_SIZE = 32


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A counter-based hash: latents of image i need neither a sequence nor a stored table."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _uniform(seed: int, idx: np.ndarray, n: int) -> np.ndarray:
    """(len(idx), n) uniforms in [0, 1), a function of (seed, i, j) alone."""
    idx = np.asarray(idx, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.full(1, np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(0x5EED)))
        ctr = idx[:, None] * np.uint64(n) + np.arange(n, dtype=np.uint64)[None, :]
        h = _splitmix64(_splitmix64(ctr ^ key))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def latents(idx, seed: int = 0) -> np.ndarray:
    """Latents (len(idx), 6) = (cx, cy, radius, r, g, b) of the dataset images ``idx``."""
    u = _uniform(seed, np.asarray(idx), N_LATENTS)
    lo = np.array([CENTRE[0], CENTRE[0], RADIUS[0], *[COLOUR[0]] * 3])
    hi = np.array([CENTRE[1], CENTRE[1], RADIUS[1], *[COLOUR[1]] * 3])
    return (lo + u * (hi - lo)).astype(np.float32)


def _alpha(geo, size: int):
    """Disc coverage (N, 1, S, S) from (cx, cy, radius); pixel centres at (i + 0.5) / S."""
    import torch

    p = (torch.arange(size, dtype=geo.dtype, device=geo.device) + 0.5) / size
    dx = p[None, None, :] - geo[:, 0, None, None]
    dy = p[None, :, None] - geo[:, 1, None, None]
    r = torch.sqrt(dx * dx + dy * dy + 1e-12)
    return torch.sigmoid((geo[:, 2, None, None] - r) * (size / EDGE_PX))[:, None]


def _render_torch(z, size: int):
    import torch

    z = torch.as_tensor(z)
    bg = torch.tensor(BACKGROUND, dtype=z.dtype, device=z.device)[None, :, None, None]
    return bg + _alpha(z[:, :3], size) * (z[:, 3:6, None, None] - bg)


def render(z: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Images (N, 3, size, size) in [-1, 1] from latents (N, 6)."""
    import torch

    with torch.no_grad():
        return _render_torch(torch.as_tensor(np.asarray(z, np.float32)), size).numpy().astype(np.float32)


def manifold_dataset(data_cfg=None, seed: int = 0) -> Dataset:
    """The known-manifold dataset of ``data_cfg.size`` images of side ``data_cfg.image_size`` (32)."""
    size = int(getattr(data_cfg, "image_size", None) or DEFAULT_SIZE)
    n = int(getattr(data_cfg, "size", None) or 100_000)
    return Dataset("manifold", (3, size, size), n, lambda idx: render(latents(idx, seed), size), lazy=True)


def _init_latents(x):
    """Closed-form start: moments of the 'not background' mask give centre and radius."""
    import torch

    n, _, size, _ = x.shape
    bg = torch.tensor(BACKGROUND, dtype=x.dtype)[None, :, None, None]
    d = (x - bg).norm(dim=1)
    m = d / d.flatten(1).max(1).values.clamp_min(1e-6)[:, None, None]
    p = (torch.arange(size, dtype=x.dtype) + 0.5) / size
    mass = m.sum((1, 2)).clamp_min(1e-6)
    cx = (m * p[None, None, :]).sum((1, 2)) / mass
    cy = (m * p[None, :, None]).sum((1, 2)) / mass
    r = torch.sqrt(mass / size ** 2 / torch.pi)
    z = torch.stack([cx.clamp(0, 1), cy.clamp(0, 1), r.clamp(0.02, 0.5)], 1)
    return z


def _colour_lstsq(x, geo, size):
    """Given centre and radius the image is linear in the colour: solve it exactly."""
    import torch

    bgv = torch.tensor(BACKGROUND, dtype=x.dtype)
    a = _alpha(geo, size)
    bg = bgv[None, :, None, None]
    num = (a * (x - bg)).sum((2, 3))
    den = (a * a).sum((2, 3)).clamp_min(1e-6)
    return (bgv[None, :] + num / den).clamp(-1.5, 1.5)


def fit_latents(images, steps: int = 60, lr: float = 0.01, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Project images (N, 3, S, S) onto the manifold: (latents (N, 6), per-pixel RMS error (N,)).

    Moments initialise centre and radius, Adam refines them through the
    differentiable renderer, and the colour is solved in closed form at every step
    (the image is linear in it), so only three nonlinear latents are searched.
    """
    import torch

    x_all = torch.as_tensor(np.asarray(images, np.float32))
    if x_all.dim() != 4 or x_all.shape[1] != 3 or x_all.shape[2] != x_all.shape[3]:
        raise ValueError(f"images must be (N, 3, S, S), got shape {tuple(x_all.shape)}")
    size = x_all.shape[-1]
    zs, errs = [], []
    for s in range(0, len(x_all), batch):
        x = x_all[s:s + batch]
        geo = _init_latents(x).requires_grad_(True)
        opt = torch.optim.Adam([geo], lr=lr)
        for _ in range(steps):
            col = _colour_lstsq(x, geo, size).detach()
            loss = ((_render_torch(torch.cat([geo, col], 1), size) - x) ** 2).mean((1, 2, 3)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                geo[:, :2].clamp_(0, 1)
                geo[:, 2].clamp_(0.02, 0.5)
        with torch.no_grad():
            col = _colour_lstsq(x, geo, size)
            z = torch.cat([geo, col], 1)
            err = ((_render_torch(z, size) - x) ** 2).mean((1, 2, 3)).sqrt()
        zs.append(z.detach().numpy())
        errs.append(err.numpy())
    if not zs:
        return np.zeros((0, N_LATENTS), np.float32), np.zeros(0, np.float32)
    return np.concatenate(zs), np.concatenate(errs).astype(np.float64)


def manifold_error(images, **kw) -> np.ndarray:
    """Per-pixel RMS distance of each image to its best on-manifold fit (the labels' manifold_error)."""
    return fit_latents(images, **kw)[1]
