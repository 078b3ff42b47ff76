"""An image dataset whose manifold is known: soft discs rendered from six latents.

Image i is a soft-edged disc (centre x, y; radius; colour r, g, b) on a fixed
background, rendered on demand from latents that are a pure function of
(seed, i). So the data lie exactly on a known 6-dimensional manifold, any image
(a generated sample, say) can be projected onto it by fitting the latents within
the data's ranges, and the residual that white pixel noise does not explain
(``manifold_error``) says how far off the manifold it is: a diffusion model
that *generalizes* produces new points of the manifold (small error, far from
every training image), one that produces blends of training images leaves it.

Nothing is materialised: a dataset of 10**7 images costs nothing until ``get``.
"""

from __future__ import annotations

import numpy as np

from ..splits import MANIFOLD_SALT
from .base import Dataset

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
        key = _splitmix64(np.full(1, np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(MANIFOLD_SALT)))
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


# The fit searches exactly the data's latent box: a disc the dataset never draws (too
# big, too small, off-centre, over-saturated) cannot be fitted exactly and leaves a residual.
_GEO_LO = (CENTRE[0], CENTRE[0], RADIUS[0])
_GEO_HI = (CENTRE[1], CENTRE[1], RADIUS[1])
# White per-pixel noise up to this standard deviation is forgiven by ``manifold_error``
# (a sample is allowed some grain); beyond it, the noise itself counts as distance.
NOISE_TOL = 0.1
_CHI2_1_MEDIAN = 0.4549364231195724  # median of z^2 for z ~ N(0, 1)


def _clamp_geo(z):
    import torch

    lo = torch.tensor(_GEO_LO, dtype=z.dtype)
    hi = torch.tensor(_GEO_HI, dtype=z.dtype)
    return torch.maximum(torch.minimum(z, hi), lo)


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
    return _clamp_geo(torch.stack([cx, cy, r], 1))


def _colour_lstsq(x, geo, size):
    """Given centre and radius the image is linear in the colour: solve it exactly.

    Each channel is a 1-D least-squares problem, so clamping to COLOUR is its exact
    constrained optimum."""
    import torch

    bgv = torch.tensor(BACKGROUND, dtype=x.dtype)
    a = _alpha(geo, size)
    bg = bgv[None, :, None, None]
    num = (a * (x - bg)).sum((2, 3))
    den = (a * a).sum((2, 3)).clamp_min(1e-6)
    return (bgv[None, :] + num / den).clamp(*COLOUR)


def _fit(x, steps: int, lr: float):
    """Range-restricted fit of a batch (torch, (n, 3, S, S)): (latents (n, 6), residual x - render)."""
    import torch

    size = x.shape[-1]
    geo = _init_latents(x)
    # Adam written out (torch's defaults: betas 0.9, 0.999, eps 1e-8): constructing
    # torch.optim.Adam imports torch._dynamo, per process. Re-measured with torch 2.14.1 on a
    # 2-core AMD EPYC (loaded): `import torch` 4.2-4.3 s, plus one torch.optim.Adam 7.4-10.1 s.
    m, v = torch.zeros_like(geo), torch.zeros_like(geo)
    for i in range(1, steps + 1):
        geo.requires_grad_(True)
        col = _colour_lstsq(x, geo, size).detach()
        loss = ((_render_torch(torch.cat([geo, col], 1), size) - x) ** 2).mean((1, 2, 3)).sum()
        (g,) = torch.autograd.grad(loss, geo)
        with torch.no_grad():
            m.mul_(0.9).add_(g, alpha=0.1)
            v.mul_(0.999).addcmul_(g, g, value=0.001)
            step = lr * (m / (1 - 0.9 ** i)) / ((v / (1 - 0.999 ** i)).sqrt() + 1e-8)
            geo = _clamp_geo(geo.detach() - step)
    with torch.no_grad():
        z = torch.cat([geo, _colour_lstsq(x, geo, size)], 1).detach()
        return z, x - _render_torch(z, size)


def _as_images(images):
    import torch

    x = torch.as_tensor(np.asarray(images, np.float32))
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
        raise ValueError(f"images must be (N, 3, S, S), got shape {tuple(x.shape)}")
    return x


def fit_latents(images, steps: int = 60, lr: float = 0.01, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Project images (N, 3, S, S) onto the manifold: (latents (N, 6), per-pixel RMS error (N,)).

    The search is restricted to the data's latent box (CENTRE, RADIUS, COLOUR).
    Moments initialise centre and radius, Adam refines them through the
    differentiable renderer, and the colour is solved in closed form at every step
    (the image is linear in it), so only three nonlinear latents are searched.
    """
    x_all = _as_images(images)
    zs, errs = [], []
    for s in range(0, len(x_all), batch):
        z, r = _fit(x_all[s:s + batch], steps, lr)
        zs.append(z.numpy())
        errs.append(r.pow(2).mean((1, 2, 3)).sqrt().numpy())
    if not zs:
        return np.zeros((0, N_LATENTS), np.float32), np.zeros(0, np.float64)
    return np.concatenate(zs), np.concatenate(errs).astype(np.float64)


def _scores(z, r, noise_tol: float) -> dict:
    """The parts of ``manifold_error`` from a fit (latents z, residual r), per image."""
    import torch
    import torch.nn.functional as F

    n, _, size, _ = r.shape
    p = (torch.arange(size, dtype=r.dtype) + 0.5) / size
    dist = torch.sqrt((p[None, None, :] - z[:, 0, None, None]) ** 2 + (p[None, :, None] - z[:, 1, None, None]) ** 2)
    near = dist <= z[:, 2, None, None] + 1.0 / size            # the fitted disc and a one-pixel rim
    r2 = r ** 2
    # Noise level from the background away from the disc, robustly (the median of r^2:
    # a second disc of a blend there does not inflate it unless it covers half of it).
    far = torch.where(near[:, None].expand_as(r2), torch.nan, r2).flatten(1)
    noise2 = torch.nan_to_num(far.nanmedian(1).values / _CHI2_1_MEDIAN, nan=0.0)
    e_near = (r2.mean(1) * near).sum((1, 2)) / near.sum((1, 2)).clamp_min(1)
    rim = (e_near - noise2).clamp_min(0)                       # excess energy at the disc
    sm = F.avg_pool2d(r, 3, stride=1, padding=1, count_include_pad=False)
    # White noise leaves 1/9 of its energy after a 3x3 mean and 8/9 in the rest.
    smooth = ((sm ** 2).mean((1, 2, 3)) - ((r - sm) ** 2).mean((1, 2, 3)) / 8).clamp_min(0)
    structure = torch.maximum(rim, smooth)
    grain = (noise2 - noise_tol ** 2).clamp_min(0)
    return {"rms": r2.mean((1, 2, 3)).sqrt(), "structure": structure.sqrt(), "noise": noise2.sqrt(),
            "manifold_error": (structure + grain).sqrt()}


def manifold_scores(images, noise_tol: float = NOISE_TOL, steps: int = 60, lr: float = 0.01,
                    batch: int = 1024) -> dict[str, np.ndarray]:
    """``manifold_error`` and its parts per image: rms (the fit's per-pixel RMS error),
    structure (residual not explained by white noise), noise (the estimated noise level)."""
    x_all = _as_images(images)
    parts: dict[str, list] = {}
    for s in range(0, len(x_all), batch):
        z, r = _fit(x_all[s:s + batch], steps, lr)
        for k, v in _scores(z, r, noise_tol).items():
            parts.setdefault(k, []).append(v.numpy().astype(np.float64))
    keys = ("rms", "structure", "noise", "manifold_error")
    return {k: np.concatenate(parts[k]) if parts else np.zeros(0) for k in keys}


def manifold_error(images, noise_tol: float = NOISE_TOL, **kw) -> np.ndarray:
    """Per-pixel distance of each image to the manifold that white pixel noise does not explain
    (the labels' manifold_error); 0 for a clean render, about 1e-3 after the fit's own error.

    The image is fitted within the data's latent box, and the residual r = image - fit is
    split into white noise and structure. A disc plus white noise leaves only noise;
    a blend of two discs or a disc the data never draw leaves structure at the fitted
    disc or on a larger scale. manifold_error = sqrt(structure^2 + max(0, noise^2 -
    noise_tol^2)), with, per value (pixel x channel):
      noise^2     = median(r^2) over the background more than a pixel from the fitted
                    disc / 0.455 (the median of a chi-square with one degree of freedom);
      structure^2 = the larger of the mean r^2 over the fitted disc and its one-pixel rim
                    minus noise^2 (what a small or misplaced disc leaves, undiluted by the
                    rest of the image), and the energy that survives a 3x3 mean minus
                    the 1/9 that white noise leaves there (what a blend leaves everywhere).
    Noise up to ``noise_tol`` per pixel is forgiven; pure noise is far from the manifold.
    On 256 each (tests/unit/datasets/test_manifold.py), discs with sigma = 0.05 pixel noise score
    below 50/50 blends and off-range discs with ROC-AUC >= 0.95 at 16 and 32 pixels.
    """
    return manifold_scores(images, noise_tol, **kw)["manifold_error"]
