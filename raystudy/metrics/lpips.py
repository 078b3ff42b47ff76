"""LPIPS as a Euclidean embedding (DESIGN.md, "LPIPS is a Euclidean distance").

LPIPS(x, y) = sum_l mean_hw sum_c w_lc (fhat_lchw(x) - fhat_lchw(y))^2 with fhat the
channel-unit-normalised backbone features and w >= 0, so LPIPS(x, y) = ||phi(x) - phi(y)||^2
with phi(x) = concat_l sqrt(w_lc / (H_l W_l)) * fhat_lchw(x). Features are computed once
per image and nearest neighbours become a flat L2 search.

phi is built from the ``lpips`` package's own modules (scaling layer, backbone slices,
``lpips.normalize_tensor``'s epsilon, lin weights), so it is LPIPS by construction, not a
rewrite. Channels whose lin weight is 0 contribute nothing and are dropped (AlexNet: 3,490
of the 5,760 dimensions at 32x32 remain).

Speed (CPU, where the embedding is most of a search's time): the backbone runs in
channels-last memory (oneDNN's fast path, about 2x on AlexNet), a 3x3 convolution whose
input is a 1x1 map (AlexNet's conv3-5 at 32x32) runs as the matrix product of its centre
tap -- the other taps only ever multiply zero padding, so the numbers are the same for a
fraction of the work -- and the embedding is written straight into the output array.

Backbone weights are never downloaded by us: the torchvision checkpoint is read from
``weights_dir``, then torch's hub cache, then torchvision's own fetch is tried; failing
that, a one-line ``WeightsMissing`` says which file to put where.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import WeightsCorrupt, WeightsMissing, one_line

# torchvision checkpoint file and its URL for each lpips backbone.
BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
}
MIN_SIZE = 32  # AlexNet needs >= ~32 px; the paper's code upsamples smaller images to 32.
# Default images per backbone call: AlexNet's activations are small (1,024 images of 32x32
# is about 20 MB) and larger batches run faster; VGG's are ~40x larger.
BATCH_PIXELS = {"alex": 1 << 20, "vgg": 32 << 10}



def backbone_url(net: str) -> str:
    from torchvision import models

    weights = {"alex": models.AlexNet_Weights, "vgg": models.VGG16_Weights}[net]
    return weights.IMAGENET1K_V1.url


def hub_checkpoint_dir() -> Path:
    """Where torchvision caches checkpoints ($TORCH_HOME/hub/checkpoints by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _read_state_dict(path: Path, net: str) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any unreadable file is the same problem for the user
        raise WeightsCorrupt(
            f"{path} is not a readable torchvision {net} checkpoint "
            f"({type(e).__name__}: {one_line(e, 80)}); delete it and put a good copy of "
            f"{BACKBONE_FILES[net]} there"
        ) from None
    if not isinstance(sd, dict):
        raise WeightsCorrupt(f"{path} holds a {type(sd).__name__}, not a state dict; "
                             f"put a good copy of {BACKBONE_FILES[net]} there")
    return sd


def load_backbone_state(net: str, weights_dir: str | os.PathLike | None = None,
                        download: bool = True) -> tuple[dict, str]:
    """The torchvision state dict of ``net``'s backbone and where it came from.

    Looks in ``weights_dir`` (if given), then in torch's hub cache, then (if ``download``)
    lets torchvision's own ``load_state_dict_from_url`` try to fetch it into that cache.
    """
    fname = BACKBONE_FILES[net]
    hub_dir = hub_checkpoint_dir()
    candidates = ([Path(weights_dir) / fname] if weights_dir is not None else []) + [hub_dir / fname]
    for path in candidates:
        if path.is_file():
            return _read_state_dict(path, net), str(path)
    url = backbone_url(net)
    if download:
        try:
            sd = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                    check_hash=True, file_name=fname,
                                                    weights_only=True)
            return sd, url
        except Exception as e:  # noqa: BLE001 -- no network, bad hash, ...: all end the same way
            why = f"fetching it failed ({type(e).__name__}: {one_line(e, 80)})"
    else:
        why = "downloads disabled"
    # The two ways a cluster gets the file: in the image (the Dockerfile bakes AlexNet's into
    # torch's cache) or on the shared volume, named by knn.weights_dir.
    where = (f"{weights_dir}" if weights_dir is not None else
             f"{hub_dir} or in a folder set as knn.weights_dir (on a cluster: on the shared volume)")
    image = ", or use the image of the repository's Dockerfile, which has it" if net == "alex" else ""
    raise WeightsMissing(f"LPIPS-{net} backbone weights {fname} not found: put it ({url}) in {where}{image}; {why}")


def _map_torchvision_keys(backbone: torch.nn.Module, sd: dict, net: str) -> dict:
    """torchvision ``features.N.*`` keys -> lpips's ``sliceS.N.*`` keys.

    lpips's wrappers add ``features[N]`` to a slice under the name ``str(N)``; read that
    mapping off the module itself instead of copying lpips's slice boundaries.
    """
    mapped = {}
    for slice_name, sl in backbone.named_children():
        for child_name, child in sl.named_children():
            for pname in child.state_dict():
                src = f"features.{child_name}.{pname}"
                if src not in sd:
                    raise WeightsCorrupt(f"checkpoint for {net} lacks {src!r}; is {BACKBONE_FILES[net]} "
                                         f"really torchvision's {net} checkpoint?")
                mapped[f"{slice_name}.{child_name}.{pname}"] = sd[src]
    return mapped


class LpipsEmbedding:
    """phi with ||phi(x) - phi(y)||^2 == lpips.LPIPS(net=net)(x, y) on the preprocessed images.

    ``embed(images)`` takes float32 (N, C, H, W) in [-1, 1] (C = 1 or 3) and returns float32
    (N, d). ``from_sq`` is the identity: LPIPS already is the squared embedding distance.
    ``pnet_rand=True`` keeps lpips's randomly initialised backbone and loads nothing
    (tests, benchmarks).
    """

    def __init__(self, net: str = "alex", weights_dir: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, pnet_rand: bool = False,
                 batch_size: int | None = None, *, download: bool = True):
        import lpips

        if net not in BACKBONE_FILES:
            raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(BACKBONE_FILES)}")
        self.net = net
        self.name = f"lpips-{net}"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # None: as many images as fit BATCH_PIXELS (decided per call, from the image size).
        self.batch_size = int(batch_size) if batch_size else None
        with warnings.catch_warnings():
            # lpips calls torchvision with the deprecated `pretrained=` argument.
            warnings.simplefilter("ignore", UserWarning)
            # pnet_rand=True here: lpips must never download the backbone itself.
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        self.weights_source = "random (pnet_rand=True)"
        if not pnet_rand:
            sd, self.weights_source = load_backbone_state(net, weights_dir, download=download)
            try:
                model.net.load_state_dict(_map_torchvision_keys(model.net, sd, net), strict=True)
            except RuntimeError as e:
                if isinstance(e, WeightsCorrupt):
                    raise
                raise WeightsCorrupt(f"{self.weights_source} does not fit lpips's {net} backbone: "
                                     f"{one_line(e, 120)}") from None
        self.model = model.eval().requires_grad_(False).to(self.device)
        # lpips.normalize_tensor's epsilon: fhat = f / (||f||_c + eps).
        self._eps = float(inspect.signature(lpips.normalize_tensor).parameters["eps"].default)

        # Per layer: kept channels and sqrt(w_c); the 1/sqrt(H W) factor depends on the size.
        self._keep, self._sqrt_w = [], []
        for lin in self.model.lins:
            w = lin.model[-1].weight.detach().reshape(-1).float()
            if (w < 0).any():
                raise ValueError(f"lpips {net} lin weights have negative entries: LPIPS is then "
                                 "not a squared Euclidean distance")
            keep = torch.nonzero(w > 0).reshape(-1)
            self._keep.append(keep)
            self._sqrt_w.append(w[keep].sqrt().reshape(1, -1, 1, 1))

    @staticmethod
    def from_sq(sq):
        return sq

    def preprocess(self, images) -> torch.Tensor:
        """As the paper's code: grey -> 3 channels; under 32 px -> 32 px, nearest-exact.

        Returns a float32 tensor on ``self.device``, still in [-1, 1] (lpips's own scaling
        layer runs inside ``embed``/``lpips.LPIPS``)."""
        x = torch.as_tensor(np.asarray(images, dtype=np.float32)).to(self.device)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 1 or 3, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        if h < MIN_SIZE or w < MIN_SIZE:
            x = F.interpolate(x, size=(max(h, MIN_SIZE), max(w, MIN_SIZE)), mode="nearest-exact")
        return x.contiguous()

    @staticmethod
    def _centre_tap(conv: torch.nn.Module, h: torch.Tensor) -> torch.Tensor | None:
        """``conv(h)`` as a matrix product when h is a 1x1 map and conv a plain 'same' k x k
        convolution (output 1x1): only the centre tap sees the input, every other tap sees
        zero padding. None where that does not hold."""
        if not (isinstance(conv, torch.nn.Conv2d) and h.shape[-2:] == (1, 1) and conv.groups == 1
                and conv.stride == (1, 1) and conv.dilation == (1, 1)
                and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)):
            return None
        (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
        if kh != 2 * ph + 1 or kw != 2 * pw + 1:
            return None
        out = F.linear(h.reshape(len(h), -1), conv.weight[:, :, ph, pw], conv.bias)
        return out.reshape(len(h), -1, 1, 1)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """lpips's backbone outputs (one per slice, as ``self.model.net(...)`` returns them)
        for preprocessed images in [-1, 1], after lpips's own scaling layer."""
        h = self.model.scaling_layer(x).contiguous(memory_format=torch.channels_last)
        outs = []
        for sl in self.model.net.children():  # slice1 .. sliceN, in order
            for mod in sl:
                fast = self._centre_tap(mod, h)
                h = mod(h) if fast is None else fast
            outs.append(h)
        return outs

    @torch.no_grad()
    def _embed_tensor(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.features(x)
        widths = [len(keep) * f.shape[2] * f.shape[3] for f, keep in zip(feats, self._keep)]
        if out is None:
            out = torch.empty(len(x), sum(widths), dtype=torch.float32, device=x.device)
        col = 0
        for f, keep, sw, width in zip(feats, self._keep, self._sqrt_w, widths):
            # fhat = f / (||f||_c + eps) as lpips.normalize_tensor, on the kept channels only,
            # times sqrt(w_c / (H W)): the spatial mean of LPIPS becomes a plain sum.
            norm = torch.linalg.vector_norm(f, dim=1, keepdim=True).add_(self._eps)
            # Written in place into the output's columns, in (c, h, w) order.
            dst = out[:, col:col + width].view(len(f), len(keep), f.shape[2], f.shape[3])
            torch.div(f.index_select(1, keep), norm, out=dst)
            dst.mul_(sw / float(np.sqrt(f.shape[2] * f.shape[3])))
            col += width
        return out

    def embed(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 4:
            h, w = images.shape[-2:]
        elif len(images) == 0:  # no images: still report the right width
            h, w = MIN_SIZE, MIN_SIZE
        else:
            raise ValueError(f"expected images (N, 1 or 3, H, W), got shape {images.shape}")
        bs = self.batch_size or max(1, BATCH_PIXELS[self.net] // (max(h, MIN_SIZE) * max(w, MIN_SIZE)))
        d = self._embed_tensor(self.preprocess(np.zeros((1, 3, h, w), np.float32))).shape[1]
        out = np.empty((len(images), d), dtype=np.float32)
        on_cpu = self.device.type == "cpu"
        for s in range(0, len(images), bs):
            x = self.preprocess(images[s:s + bs])
            if on_cpu:  # straight into the result, no copy
                self._embed_tensor(x, torch.from_numpy(out[s:s + len(x)]))
            else:
                out[s:s + len(x)] = self._embed_tensor(x).cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"LpipsEmbedding({self.net!r}, device={str(self.device)!r}, weights={self.weights_source!r})"
