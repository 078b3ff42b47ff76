"""What a checkpoint is. ``family(cfg)`` is the one place that reads the config to decide which
kind of model a study has; it returns a ``Family``, and every stage asks it what to train, how
to build the model a unit samples from, and whether that model is the circle's VE score or a
DDPM epsilon model of images. ``model_dir`` and ``state_file`` name a checkpoint's model folder
and its unfinished run's state. The networks a study trains are ``unet`` (images) and
``circle_mlp`` (the 2-D circle's score MLP); the closed-form denoisers that take a trained
network's place are ``closed_form``, with ``memorizer`` and ``gaussian``.

Every import of torch here is inside a function: ``import raystudy.models`` does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

from ..axes import DEFAULT, checkpoint_name
from .kinds import KINDS, key

__all__ = ["Family", "batch_share", "family", "model_dir", "state_file"]


@dataclass(frozen=True)
class Family:
    """What the stages need to know about a study's model, decided once by ``family``.

    ``ve``: a variance-exploding score model of the 2-D circle (``score(x, t)``), sampled by
    Euler-Maruyama (``generate.sampler: em``), whose basins items are noised and recovered on the
    VE process, whose energy integrates that score, and whose study draws the circle's figures;
    otherwise a DDPM epsilon model of images, sampled and recovered with diffusers schedulers.
    """
    name: str  # model.type: unet | empirical | gaussian | circle-mlp
    trains: bool  # the train stage trains a network per checkpoint (Ray Tune); else it only writes the rows
    closed_form: bool  # E[x_0 | x_t] in closed form from the K-set, built where it is sampled: no checkpoint
    ve: bool
    # () -> the module (``unet`` or ``circle_mlp``) with the trained network's build, loss and save;
    # None where nothing is trained. A function, so that asking the family imports no torch.
    network: Optional[Callable[[], ModuleType]]
    # (model_cfg, folder, kset) -> the model a unit samples from: the trained network loaded from its
    # model folder ``folder``, or the closed-form model of the K-set's images ``kset()``.
    build: Callable[[Any, Path, Callable[[], Any]], Any]


def _unet() -> ModuleType:
    from . import unet

    return unet


def _circle_mlp() -> ModuleType:
    from . import circle_mlp

    return circle_mlp


def _trained(model_cfg, folder, kset):
    from .unet import load_checkpoint

    return load_checkpoint(folder)


def _memorizer(model_cfg, folder, kset):
    import torch

    from .memorizer import EmpiricalEpsilon
    from .unet import build_train_scheduler

    return EmpiricalEpsilon(torch.from_numpy(kset()), build_train_scheduler(model_cfg).alphas_cumprod)


def _gaussian(model_cfg, folder, kset):
    from .gaussian import GaussianEpsilon
    from .unet import build_train_scheduler

    return GaussianEpsilon(kset(), build_train_scheduler(model_cfg).alphas_cumprod)


def _ve_memorizer(model_cfg, folder, kset):
    from .circle_mlp import empirical_score

    return empirical_score(kset().reshape(-1, 2), model_cfg.sigma_max)


# How each kind's model is built and trained: (network, build), by kinds.key.
_HOW = {
    ("unet", False): (_unet, _trained),
    ("circle-mlp", True): (_circle_mlp, _trained),
    ("empirical", False): (None, _memorizer),
    ("empirical", True): (None, _ve_memorizer),
    ("gaussian", False): (None, _gaussian),
}
_FAMILIES = {k: Family(**vars(KINDS[k]), network=network, build=build) for k, (network, build) in _HOW.items()}


def family(cfg) -> Family:
    """The model family of a study: its kind (``kinds.key``, the one reading of the config that
    decides it) with how that kind's model is built and trained."""
    return _FAMILIES[key(cfg)]


def batch_share(n_rows: int, part: Optional[tuple[int, int]]) -> tuple[int, slice]:
    """``(n, rows)`` of a training loss's batch. ``part=(start, n)``: the ``n_rows`` rows are rows
    ``start:start + n_rows`` of a global batch of ``n`` (one data-parallel worker's share). A loss
    draws its noise and times for all ``n`` rows, as one process would, and keeps ``rows``: the
    workers' mean of their losses is the one-process loss, whatever the number of workers."""
    if part is None:
        return n_rows, slice(None)
    return part[1], slice(part[0], part[0] + n_rows)


def model_dir(study_dir, k: int, seed: int, axis=None) -> Path:
    """The model folder of checkpoint ``axis`` (raystudy.axes; default: the base model's final one)."""
    return Path(study_dir).resolve() / "models" / checkpoint_name(axis or DEFAULT, k, seed)


def state_file(study_dir, k: int, seed: int, axis=None) -> Path:
    """The unfinished run's state; removed once the model is saved."""
    return Path(study_dir).resolve() / "models" / f".state-{checkpoint_name((axis or DEFAULT).run(), k, seed)}.pt"
