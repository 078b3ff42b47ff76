"""Which kind of model a study has, as plain data: the one reading of the config that decides it
(``key``), and what each kind is (``KINDS``). Torch-free, so the analysis asks it too;
``raystudy.models.family`` adds how each kind is built and trained."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str  # model.type: unet | empirical | gaussian | circle-mlp
    trains: bool  # the train stage trains a network per checkpoint (Ray Tune); else it only writes the rows
    closed_form: bool  # E[x_0 | x_t] in closed form from the K-set, built where it is sampled: no checkpoint
    # A variance-exploding score model of the 2-D circle, sampled by Euler-Maruyama; else a DDPM
    # epsilon model of images.
    ve: bool


# (model.type, the circle?) -> the kind; the config refuses the pairs missing here.
KINDS = {
    ("unet", False): Kind("unet", trains=True, closed_form=False, ve=False),
    ("circle-mlp", True): Kind("circle-mlp", trains=True, closed_form=False, ve=True),
    ("empirical", False): Kind("empirical", trains=False, closed_form=True, ve=False),
    ("empirical", True): Kind("empirical", trains=False, closed_form=True, ve=True),
    ("gaussian", False): Kind("gaussian", trains=False, closed_form=True, ve=False),
}


def key(cfg) -> tuple[str, bool]:
    """``(model.type, the circle?)`` of a config (``raystudy.config.StudyConfig``, or a saved config
    read as a dict, as the analysis reads it). Variants override every model key but ``type``, so
    one study has one kind."""
    if isinstance(cfg, dict):
        model_type = (cfg.get("model") or {}).get("type", "unet")
        data_name = (cfg.get("data") or {}).get("name", "digits")
    else:
        model_type, data_name = cfg.model.type, cfg.data.name
    k = (model_type, data_name == "circle")
    if k not in KINDS:
        raise ValueError(f"model.type {model_type!r} does not fit data.name {data_name!r}")
    return k


def kind(cfg) -> Kind:
    return KINDS[key(cfg)]
