"""One typed, validated config per study: YAML + ``--set section.key=value`` overrides.

Every error is one line that names the offending key, because a researcher
submitting a cluster job should learn what is wrong before anything starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config problem, phrased as one line naming the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Section):
    name: str = "study"
    seed: int = Field(0, ge=0, description="seeds the K-subset permutation and every sample")


class DataSection(_Section):
    name: Literal["digits", "cifar10", "mnist", "fashion-mnist", "folder", "array", "manifold"] = "digits"
    path: Optional[str] = Field(None, description="local path for datasets that are not embedded")
    image_size: Optional[int] = Field(None, ge=4, description="resize images to this side (None: keep)")
    grayscale: bool = False
    limit: Optional[int] = Field(None, ge=1, description="use only the first `limit` images of the dataset")
    # `manifold` only: how many images the generator exposes (rendered on demand).
    size: int = Field(100_000, ge=1)


class ModelSection(_Section):
    type: Literal["unet", "empirical"] = "unet"
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = Field(1, ge=1)
    attention: tuple[bool, ...] = (False, True)
    norm_num_groups: int = Field(8, ge=1)
    num_train_timesteps: int = Field(1000, ge=2)

    @model_validator(mode="after")
    def _levels(self):
        if len(self.attention) != len(self.block_out_channels):
            raise ValueError("model.attention needs one entry per block_out_channels level")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError("model.block_out_channels must be multiples of model.norm_num_groups")
        return self


class TrainSection(_Section):
    images: int = Field(102_400, ge=1, description="training length in images seen")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    ema_decay: float = Field(0.995, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    checkpoint_every: int = Field(25_600, ge=1, description="images seen between checkpoints")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_failures: int = Field(2, ge=0)


class GenerateSection(_Section):
    n_samples: int = Field(200, ge=2, description="samples per set (eval and ref) per K and seed")
    sampler: Literal["ddpm", "ddim"] = "ddim"
    steps: int = Field(50, ge=1, description="sampling steps (ddpm uses all training steps)")
    batch_size: int = Field(100, ge=1)
    workers: int = Field(2, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)


class KnnSection(_Section):
    metrics: tuple[str, ...] = ("l2",)
    k: int = Field(5, ge=2)
    batch_size: int = Field(1024, ge=1)
    workers: int = Field(2, ge=1)
    faiss_threads: int = Field(1, ge=1)
    shard_size: int = Field(50_000, ge=1, description="reference rows per FAISS shard (top-k merged exactly)")
    weights_dir: Optional[str] = Field(None, description="folder holding torchvision backbone .pth files")
    max_ram_gb: float = Field(4.0, gt=0, description="embeddings larger than this per actor spill to a disk memmap")

    @field_validator("metrics")
    @classmethod
    def _known(cls, v):
        known = {"l2", "lpips-alex", "lpips-vgg"}
        bad = [m for m in v if m not in known]
        if bad or not v:
            raise ValueError(f"unknown metric {bad}; known: {sorted(known)}")
        # l2 is always searched: it is cheap and the ratio test is defined on it.
        return v if "l2" in v else ("l2", *v)


class ClassifySection(_Section):
    # Thresholds are in each metric's own units: l2 is per-pixel RMS on [-1, 1] images.
    delta_m: dict[str, float] = {"l2": 0.1, "lpips-alex": 0.03, "lpips-vgg": 0.03}
    delta_s: dict[str, float] = {"l2": 0.1, "lpips-alex": 0.02, "lpips-vgg": 0.02}


class RaySection(_Section):
    num_cpus: Optional[int] = Field(None, ge=1, description="CPUs for a local Ray (ignored on a cluster)")


class StudyConfig(_Section):
    study: StudySection = StudySection()
    data: DataSection = DataSection()
    ks: tuple[int, ...] = (2, 8, 32)
    seeds: tuple[int, ...] = (0,)
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    generate: GenerateSection = GenerateSection()
    knn: KnnSection = KnnSection()
    classify: ClassifySection = ClassifySection()
    ray: RaySection = RaySection()

    @field_validator("ks")
    @classmethod
    def _ks(cls, v):
        if not v:
            raise ValueError("ks must list at least one training-set size")
        if any(k < 1 for k in v):
            raise ValueError(f"every K must be >= 1, got {list(v)}")
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _thresholds(self):
        for m in self.knn.metrics:
            for name in ("delta_m", "delta_s"):
                if m not in getattr(self.classify, name):
                    raise ValueError(f"classify.{name} has no threshold for metric {m!r}")
        return self

    # -- hashing: a stage's output is reused only if the config it depends on is unchanged
    def section_hash(self, *sections: str) -> str:
        blob = json.dumps({s: _dump(getattr(self, s)) for s in sections}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _dump(x):
    return x.model_dump(mode="json") if isinstance(x, BaseModel) else x


def _one_line(err: ValidationError) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]) or "config"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
        msg = f"{msg} (got {e['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"config: {key}: {msg}{more}"


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"config: override {item!r} must look like section.key=value")
    key, value = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def from_dict(raw: dict, overrides: list[str] = ()) -> StudyConfig:
    raw = json.loads(json.dumps(raw or {}))
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config: {'.'.join(path)}: {p} is not a section")
        node[path[-1]] = value
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None


def load(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config: file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config: {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {path} must hold a mapping of sections")
    return from_dict(raw, overrides)


def save(cfg: StudyConfig, study_dir: str | Path) -> Path:
    """Save the resolved config beside the results (atomically)."""
    import os
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / "config.yaml"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(cfg.to_yaml())
    os.replace(tmp, path)
    return path
