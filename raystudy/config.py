"""One typed, validated config per study: YAML + ``--set section.key=value`` overrides.

Every error is one line that names the offending key, because a researcher
submitting a cluster job should learn what is wrong before anything starts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .compute.classify import DELTA_M, DELTA_S
from .errors import ConfigError, one_line

__all__ = ["ConfigError", "StudyConfig", "from_dict", "load_config", "packaged_configs", "resolve", "save"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudySection(_Section):
    """The study's name and the one seed everything random is derived from (raystudy.splits)."""
    name: str = Field("study", description="the study's name: stored in every table part's metadata (the `study` "
                      "column when several studies are read together) and used as the MLflow experiment / W&B project")
    seed: int = Field(0, ge=0, description="seeds the dataset permutation whose prefixes are the K-sets, every "
                      "training run's start (with its K and seed) and every sample's and item's noise")


class DataSection(_Section):
    """The dataset the K-sets are drawn from (read from disk or generated, never downloaded)."""
    name: Literal["digits", "cifar10", "mnist", "fashion-mnist", "folder", "array", "manifold", "circle"] = Field(
        "digits", description="the dataset: digits (scikit-learn's 8x8, embedded), cifar10, mnist, fashion-mnist "
        "(files under `path`), folder (images of one size), array (a .npy/.npz file), manifold (generated discs on a "
        "known manifold), circle (the paper's 2-D toy: points stored as 1x2 images)")
    path: Optional[str] = Field(None, description="local path for datasets that are not embedded")
    image_size: Optional[int] = Field(None, ge=4, description="resize images to this side, in pixels (null: keep)")
    grayscale: bool = Field(False, description="convert RGB images to one channel (luma: 0.299 R + 0.587 G + "
                            "0.114 B) before any resizing")
    limit: Optional[int] = Field(None, ge=1, description="use only the first `limit` images of the dataset")
    held_out: int = Field(200, ge=0, description="held-out images no K-set holds (held-out items, the null): "
                          "from the dataset's own test split where it has one on disk (CIFAR-10 test_batch, "
                          "MNIST t10k), else reserved from the tail of the study's permutation (then K <= N - held_out)")
    # `manifold` / `circle` only: how many images (points) the generator exposes.
    size: int = Field(100_000, ge=1, description="manifold and circle only: how many images (points) the "
                      "generator exposes, the dataset's N (K <= N - held_out)")


class ModelSection(_Section):
    """The network trained per (K, seed), or a model that needs no training (``type``). The UNet keys
    are diffusers UNet2DModel's, the circle-mlp keys the 2-D score MLP's; ``variants`` override any
    of them but ``type``."""
    # unet: diffusers UNet2DModel (DDPM); empirical: the exact memorizer of the K-set (no training);
    # circle-mlp: the 2-D circle's score MLP (VE SDE, sigma(t) = sigma_max sqrt(t)); gaussian: the optimal
    # denoiser of the Gaussian fitted to the K-set (raystudy.models.gaussian; no training; images only).
    type: Literal["unet", "empirical", "circle-mlp", "gaussian"] = Field(
        "unet", description="unet: a UNet trained on DDPM epsilon matching (images); empirical: the exact memorizer, "
        "the optimal denoiser of the K-set itself (no training); circle-mlp: the circle's score MLP (VE SDE); "
        "gaussian: the optimal denoiser of the Gaussian fitted to the K-set (no training; images only)")
    block_out_channels: tuple[int, ...] = Field(
        (32, 64), description="UNet channels per resolution level, one level per entry (each level halves the "
        "image side, which must be divisible by 2^(levels - 1)); the main lever on the model's size (`params`)")
    layers_per_block: int = Field(1, ge=1, description="ResNet layers per UNet down block (each up block has one more)")
    attention: tuple[bool, ...] = Field(
        (False, True), description="per level (one entry per block_out_channels entry): true gives that level's "
        "blocks self-attention (AttnDownBlock2D / AttnUpBlock2D)")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups in the UNet; every block_out_channels "
                                 "entry must be a multiple of it")
    num_train_timesteps: int = Field(1000, ge=2, description="T, the number of DDPM noise steps (linear betas): "
                                     "training draws t from 0..T-1, ddpm sampling and the basins scan use every "
                                     "step; also the schedule of the empirical and gaussian models")
    # circle-mlp only.
    width: int = Field(128, ge=1, description="circle-mlp only: hidden units per layer of the score MLP")
    depth: int = Field(3, ge=1, description="circle-mlp only: hidden layers of the score MLP")
    sigma_max: float = Field(1.0, gt=0, description="sigma_max of the circle's VE SDE, sigma(t) = sigma_max sqrt(t): "
                             "the noise scale at t = 1, where sampling starts (circle-mlp, and the exact memorizer "
                             "on the circle)")
    t_min: float = Field(1e-5, gt=0, lt=1, description="circle only: the smallest VE time trained and sampled "
                         "(Euler-Maruyama ends there; the energy stage's t = 0 means t_min)")

    @model_validator(mode="after")
    def _levels(self):
        if len(self.attention) != len(self.block_out_channels):
            raise ValueError("model.attention needs one entry per block_out_channels level")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError("model.block_out_channels must be multiples of model.norm_num_groups")
        return self


class TrainSection(_Section):
    """Training of each run (K, seed, variant, twin) as a Ray Tune trial: AdamW on the model's loss,
    an exponential moving average (EMA) of the weights, which is the saved model. A changed training
    key on a study with trained models is refused; the speed, resource, checkpoint-spacing and
    tracking keys are not part of a run and may change."""
    images: int = Field(102_400, ge=1, description="training length in images seen (ceil(images / batch_size) "
                        "optimizer steps); longer training moves the transition to larger K")
    batch_size: int = Field(128, ge=1, description="the global batch: images per optimizer step, drawn uniformly "
                            "with replacement from the K-set (split evenly over `workers`)")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate (with the cosine schedule: its start, annealed "
                      "to 5% of it at the last step)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's (decoupled) weight decay")
    ema_decay: float = Field(0.995, ge=0, lt=1, description="decay per optimizer step of the EMA of the weights "
                             "(diffusers EMAModel, capped by (1 + step) / (10 + step) early on); the EMA weights "
                             "are what is saved, sampled and analysed")
    grad_clip: Optional[float] = Field(1.0, gt=0, description="max gradient norm (null: no clipping)")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="learning rate over the run: "
                                                       "constant, or cosine annealing from lr to 0.05 lr")
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field(
        "auto", description="Accelerate's mixed precision for training, also the autocast of sampling: auto is "
        "bf16 on a GPU and no (fp32) on the CPU; write 'no' quoted in YAML")
    checkpoint_every: int = Field(25_600, ge=1, description="images seen between checkpoints")
    # The training-time axis (raystudy.axes): the EMA weights are also kept after each of these
    # (images seen, multiples of batch_size, below `images`); the final model is always there.
    snapshots: tuple[int, ...] = Field((), description="images seen at which the EMA weights are kept as "
                                       "models of their own (the final one, `images`, always exists)")
    # The loss curves (raystudy.onset): measured on the EMA weights with a generator of their own, so
    # they change no model and stay out of the fingerprint; stop_on_gap changes where runs end.
    gap_evals: int = Field(24, ge=0, description="evaluations per run of the loss_curves table (the EMA model's "
                           "loss on fixed batches of its K-set and of held-out images), log-spaced in images seen "
                           "from images / 100 to the end, plus one at every snapshot; 0: none")
    gap_images: int = Field(32, ge=2, description="images per batch of the loss curves (training and held-out "
                            "each; fewer held-out where data.held_out is smaller)")
    gap_levels: int = Field(6, ge=1, description="noise levels of the loss curves: the midpoints of equal "
                            "timestep buckets across the schedule")
    stop_on_gap: bool = Field(False, description="stop each run where its held-out gap opens (raystudy.onset's "
                              "rule, confirmed at the next evaluation) and keep that model as its final one; in "
                              "the train stage's fingerprint when on")
    # Speed only (not in the train stage's fingerprint: they change results at rounding level):
    channels_last: bool = Field(False, description="UNet in channels-last memory (faster convolutions on GPUs)")
    tf32: bool = Field(False, description="allow TF32 matmuls/convolutions on CUDA (no effect on CPU)")
    fused_adam: bool = Field(False, description="fused AdamW kernel on CUDA (no effect on CPU)")
    compile: bool = Field(False, description="torch.compile the network's forward (minutes of compile "
                          "time; pays off on long GPU runs, not measured to help on CPU)")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs one training run books in Ray (split over "
                                  "`workers`); runs train side by side as the cluster's CPUs allow")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs one training run books (fractions put several runs "
                                  "on one GPU, e.g. 0.25: four; split over `workers`); 0: train on the CPU")
    # Data-parallel training (Ray Train's TorchTrainer inside the Tune trial, DDP through
    # Accelerate): the same model within float tolerance for any number of workers.
    workers: int = Field(1, ge=1, description="data-parallel workers per trial, each with cpus_per_trial / "
                         "workers and gpus_per_trial / workers (1: one process, as without Ray Train)")
    workers_min_k: int = Field(0, ge=0, description="runs with K below this train as one process with one "
                               "worker's share of the resources (small K gain nothing from more workers)")
    max_failures: int = Field(2, ge=0, description="times Ray Tune retries a failed training run (a lost node, a "
                              "crash); each retry resumes from the run's last checkpoint")
    # Following training (not in the fingerprint either: they change where metrics go, not the model).
    tracking: tuple[Literal["tensorboard", "mlflow", "wandb"], ...] = Field(
        ("tensorboard",), description="Ray Tune logger callbacks fed at every log interval (wandb: only if installed)")
    mlflow_uri: Optional[str] = Field(None, description="MLflow tracking URI (null: sqlite:///DIR/mlflow.db in the study folder)")

    @model_validator(mode="after")
    def _split(self):
        if self.batch_size % self.workers:
            raise ValueError(f"train.batch_size ({self.batch_size}) must be a multiple of train.workers "
                             f"({self.workers}): each worker takes an equal share of the global batch")
        return self

    def workers_for(self, k: int) -> int:
        """How many data-parallel workers train run K (1: one process)."""
        return self.workers if k >= self.workers_min_k else 1


class GenerateSection(_Section):
    """Sampling: two independent sets per model, eval (the samples that are labelled) and ref (the
    other set, to which d_synth is measured), each sample drawn from its own seed, so a sample
    does not depend on the batch or actor it lands in."""
    n_samples: int = Field(200, ge=2, description="samples per set (eval and ref) per K and seed")
    # ddpm / ddim: diffusers schedulers (unet, empirical); em: Euler-Maruyama of the VE SDE (circle).
    sampler: Literal["ddpm", "ddim", "em"] = Field(
        "ddim", description="ddpm: ancestral sampling over every training step (the paper's); ddim: DDIM with "
        "`steps` steps, eta = 0; em: Euler-Maruyama of the VE SDE in `steps` steps (the circle's, and only its)")
    steps: int = Field(50, ge=1, description="sampling steps of ddim and em (ddpm uses all training steps)")
    batch_size: int = Field(100, ge=1, description="samples per model call in a generate actor (memory and speed "
                            "only: a sample depends on its seed alone)")
    part_size: int = Field(10_000, ge=1, description="rows per Parquet part of samples and neighbors")
    workers: int = Field(2, ge=1, description="generate actors at most: the pool starts with one and grows as "
                         "nodes join")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs each generate actor books (also each basins and "
                                   "energy actor)")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs each generate actor books, which then samples on "
                                   "its GPU (fractions share one; also each basins and energy actor)")


class KnnSection(_Section):
    """Exact nearest-neighbour search, per metric: each eval sample's nearest training images of its
    K-set (d_train) and nearest samples of the ref set (d_synth)."""
    metrics: tuple[str, ...] = Field(
        ("l2",), description="the distances searched: l2 (per-pixel RMS on [-1, 1] images), euclidean (the plain "
        "distance: the circle's plane), lpips-alex, lpips-vgg (LPIPS on torchvision backbones); l2 is always "
        "added, the ratio test uses it")
    k: int = Field(5, ge=2, description="neighbours kept per sample in each reference set (the K-set and the ref "
                   "set); the labels use the nearest, the ratio test NN1 / NN2 the nearest two")
    batch_size: int = Field(1024, ge=1, description="query samples per search call in a knn actor")
    workers: int = Field(2, ge=1, description="knn actors at most: the pool starts with one and grows as nodes join")
    faiss_threads: int = Field(1, ge=1, description="FAISS OpenMP threads per knn actor, and the CPUs each knn "
                               "actor books")
    shard_size: int = Field(50_000, ge=1, description="reference rows per FAISS shard (top-k merged exactly)")
    weights_dir: Optional[str] = Field(None, description="folder holding torchvision backbone .pth files")
    max_ram_gb: float = Field(4.0, gt=0, description="embeddings larger than this (GB) per actor spill to a disk "
                                "memmap")
    # faiss: FAISS on the CPU; torch: blockwise float32 products on the actor's device (its GPU
    # if it has one); auto: torch where the actor has a GPU, FAISS otherwise. Same answers.
    backend: Literal["faiss", "torch", "auto"] = Field(
        "auto", description="faiss: FAISS on the CPU; torch: blockwise float32 products on the actor's device; "
        "auto: torch where the actor has a GPU, FAISS otherwise (the same neighbours and distances)")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per knn actor (fractions share one); "
                                   "the actor embeds and searches on it")

    @field_validator("metrics")
    @classmethod
    def _known(cls, v):
        known = {"l2", "euclidean", "lpips-alex", "lpips-vgg"}
        bad = [m for m in v if m not in known]
        if bad or not v:
            raise ValueError(f"unknown metric {bad}; known: {sorted(known)}")
        # l2 is always searched: it is cheap and the ratio test is defined on it.
        return v if "l2" in v else ("l2", *v)


class ClassifySection(_Section):
    """The labels, from the stored distances (the paper's rule): memorized if d_train <= delta_m, else
    spurious if d_synth <= delta_s, else generalized. One threshold per metric, in that metric's
    units: l2 per-pixel RMS on [-1, 1] images, euclidean the plain distance (the circle's plane)."""
    delta_m: dict[str, float] = Field(default_factory=lambda: dict(DELTA_M), description="delta_m per metric: a "
                                      "sample is memorized if its distance to the nearest training image, d_train, "
                                      "is <= delta_m (also the twins' reproducibility threshold)")
    delta_s: dict[str, float] = Field(default_factory=lambda: dict(DELTA_S), description="delta_s per metric: a "
                                      "sample that is not memorized is spurious if its distance to the nearest "
                                      "sample of the other set, d_synth, is <= delta_s")

    @field_validator("delta_m", "delta_s")
    @classmethod
    def _positive(cls, v):
        bad = {m: d for m, d in v.items() if not d > 0}
        if bad:
            raise ValueError(f"thresholds must be > 0, got {bad}")
        return v


class BasinsSection(_Section):
    """Critical time: noise an item to step t, denoise with DDIM (eta = 0), recovered if within delta."""
    enabled: bool = Field(False, description="run the basins stage (tables basins, basin_trials, basin_rates)")
    metric: str = Field("l2", description="distance that decides a recovery (a knn metric)")
    per_label: int = Field(4, ge=0, description="samples per label and K: half the top, half the bottom of "
                           "the label's ranking (basins.rank)")
    rank: Literal["paper", "d_train"] = Field("paper", description="paper: memorized by d_train ascending, "
                                              "spurious by d_synth ascending, generalized by d_synth descending; "
                                              "d_train: every label by d_train ascending")
    train: int = Field(4, ge=0, description="training images per K (the basin of a stored memory)")
    held_out: int = Field(4, ge=0, description="held-out dataset images per K (never stored)")
    trials: int = Field(10, ge=1, description="noisings per item and t")
    p: float = Field(0.9, gt=0, le=1, description="t_crit: the last t before the recovery rate first drops below p")
    delta: float = Field(0.1, gt=0, description="recovered if the distance to the item is <= delta (in "
                         "basins.metric's units)")
    stride: int = Field(25, ge=1, description="scan t = 1, 1 + stride, ... up to the last training step "
                        "(training timesteps; on the circle thousandths of the VE time)")
    ddim_steps: int = Field(20, ge=1, description="DDIM steps from t back to 0")
    batch_size: int = Field(64, ge=1, description="items per batch (batch_size x trials rows per model call)")
    workers: int = Field(2, ge=1, description="basins and energy actors at most (each books generate.cpus_per_worker "
                         "and generate.gpus_per_worker)")


class EnergySection(_Section):
    """Relative energy along the quarter circle x(a) = cos(a) x + sin(a) r."""
    enabled: bool = Field(False, description="run the energy stage (table energy)")
    t: int = Field(0, ge=0, description="timestep index of the score, 0..T-1 (the paper: the first "
                   "step); on the circle thousandths of the VE time, 0 meaning model.t_min")
    per_label: int = Field(4, ge=0, description="samples per label and K (basins.rank)")
    train: int = Field(2, ge=0, description="training images of the K-set as targets (items)")
    held_out: int = Field(2, ge=0, description="held-out images as targets (items)")
    train_refs: int = Field(2, ge=0, description="training images of the same K as references")
    held_out_refs: int = Field(2, ge=0, description="held-out images as references")
    points: int = Field(32, ge=2, description="Gauss-Legendre nodes (the error estimate uses 2x); rule ours")
    rule: Literal["ours", "paper"] = Field("ours", description="ours: Gauss-Legendre, scale sqrt(1 - alpha_bar_t); "
                                           "paper: the reference code's scale sqrt(1 - cumprod(betas)), 20 points "
                                           "with step pi/38 summed, its drift")


class SweepSection(_Section):
    """An adaptive K sweep (raystudy.adaptive): ``initial`` K log-spaced over [k_min, k_max],
    then up to ``rounds`` rounds of ``per_round`` new K each, placed where they narrow the
    crossing's interval most, until it is narrower than ``target_ratio`` (hi / lo, in K). When
    enabled, the study's K are the sweep's and ``ks`` is ignored."""
    enabled: bool = Field(False, description="let the sweep choose the study's K, round by round (`ks` is then "
                          "ignored)")
    k_min: int = Field(2, ge=1, description="the smallest K of the sweep's range")
    k_max: int = Field(1797, ge=2, description="the largest K of the sweep's range (at most the dataset's N - "
                       "data.held_out)")
    initial: int = Field(4, ge=2, description="K of the first round, log-spaced from k_min to k_max")
    rounds: int = Field(3, ge=0, description="rounds after the first, at most")
    per_round: int = Field(2, ge=1, description="new K per round (they train at once)")
    target_ratio: float = Field(1.25, gt=1, description="stop when the crossing's interval hi / lo is below this")
    metric: str = Field("l2", description="the knn metric whose labels place the K")

    @model_validator(mode="after")
    def _range(self):
        if self.k_max <= self.k_min:
            raise ValueError(f"sweep.k_max ({self.k_max}) must be larger than sweep.k_min ({self.k_min})")
        if self.initial > self.k_max - self.k_min + 1:
            raise ValueError(f"sweep.initial ({self.initial}) is more K than k_min..k_max holds")
        return self


class RaySection(_Section):
    """How a run gets its Ray: it joins the cluster RAY_ADDRESS names, else starts a local Ray of its own."""
    num_cpus: Optional[int] = Field(None, ge=1, description="CPUs for a local Ray (ignored on a cluster)")
    scale_up_wait_s: float = Field(0.0, ge=0, description="on an autoscaling cluster (workers from 0 nodes): how "
                                   "many seconds to wait for a node that can hold one worker before giving up; 0: the "
                                   "cluster is as it is")


class StudyConfig(_Section):
    study: StudySection = StudySection()
    data: DataSection = DataSection()
    ks: tuple[int, ...] = Field((2, 8, 32), description="the training-set sizes K: K-set K is the first K images "
                                "of the study's permutation (nested sets); one model per K and seed (ignored when "
                                "sweep.enabled)")
    seeds: tuple[int, ...] = Field((0,), description="training seeds: per K, one run per seed on the same K-set, "
                                   "each with its own initial weights, batches and noise")
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    generate: GenerateSection = GenerateSection()
    knn: KnnSection = KnnSection()
    classify: ClassifySection = ClassifySection()
    basins: BasinsSection = BasinsSection()
    energy: EnergySection = EnergySection()
    sweep: SweepSection = SweepSection()
    ray: RaySection = RaySection()
    # The model-size axis (raystudy.axes): name -> overrides of `model` keys; each name is a value of
    # the `variant` column. Empty: one variant, "base" (the `model` section itself).
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict, description="the model-size axis: name -> "
                                                "overrides of `model` keys (not type), one model per variant, K and "
                                                "seed; empty: one variant, base, the `model` section itself")
    # The twin axis: per (K, seed, variant), a second model on a disjoint K-set, same sample seeds.
    twins: bool = Field(False, description="per (K, seed, variant) also train a twin on a disjoint K-set (the K "
                        "images before the held-out tail), sampled from the same seeds (table twins)")

    @field_validator("ks", "seeds")
    @classmethod
    def _axis(cls, v, info):
        """ks: training-set sizes >= 1; seeds: training seeds >= 0; each used once, sorted."""
        name, low, what = info.field_name, *((1, "training-set size") if info.field_name == "ks" else (0, "training seed"))
        if not v:
            raise ValueError(f"{name} must list at least one {what}")
        if any(x < low for x in v):
            raise ValueError(f"every {'K' if name == 'ks' else 'seed'} must be >= {low}, got {list(v)}")
        return _unique(name, v)

    @model_validator(mode="after")
    def _axes(self):
        from .axes import BASE, VARIANT_NAME

        t = self.train
        for s in t.snapshots:
            if not 0 < s < t.images:
                raise ValueError(f"train.snapshots: {s} is not between 0 and train.images ({t.images}); the final "
                                 "model is always kept")
            if s % t.batch_size:
                raise ValueError(f"train.snapshots: {s} is not a multiple of train.batch_size ({t.batch_size}): "
                                 "a snapshot is taken after a whole step")
        object.__setattr__(t, "snapshots", _unique("train.snapshots", t.snapshots))
        for name, over in self.variants.items():
            if not VARIANT_NAME.fullmatch(name):
                raise ValueError(f"variants: name {name!r} must be letters, digits and _ (a letter first)")
            if not isinstance(over, dict):
                raise ValueError(f"variants.{name} must map model keys to values, got {over!r}")
            if name == BASE and over:
                raise ValueError("variants.base is the `model` section itself: give it no overrides "
                                 "(name other configurations otherwise)")
            bad = [k for k in over if k not in ModelSection.model_fields or k == "type"]
            if bad:
                raise ValueError(f"variants.{name}.{bad[0]}: unknown model key (a variant overrides "
                                 f"{', '.join(k for k in ModelSection.model_fields if k != 'type')})")
            try:
                ModelSection.model_validate({**self.model.model_dump(), **over})
            except ValidationError as err:
                line = _validation_line(err).removeprefix("config: ").removeprefix("config: ")
                raise ValueError(f"variants.{name}: {line}") from None
        return self

    def for_variant(self, name: str) -> "StudyConfig":
        """This config with the model of variant ``name`` (raystudy.axes)."""
        model = ModelSection.model_validate({**self.model.model_dump(), **self.variants.get(name, {})})
        return self.model_copy(update={"model": model})

    @model_validator(mode="after")
    def _thresholds(self):
        for m in self.knn.metrics:
            for name in ("delta_m", "delta_s"):
                if m not in getattr(self.classify, name):
                    raise ValueError(f"classify.{name} has no threshold for metric {m!r}")
        if self.sweep.enabled and self.sweep.metric not in self.knn.metrics:
            raise ValueError(f"sweep.metric {self.sweep.metric!r} is not one of knn.metrics")
        if self.train.stop_on_gap and (self.train.gap_evals < 3 or self.data.held_out < 2 or self.train.snapshots):
            raise ValueError("train.stop_on_gap needs train.gap_evals >= 3, data.held_out >= 2 and no "
                             "train.snapshots (a run stopped at its onset never reaches later snapshots)")
        if self.basins.metric not in self.knn.metrics:
            raise ValueError(f"basins.metric {self.basins.metric!r} is not one of knn.metrics")
        from .models.kinds import KINDS

        circle = self.data.name == "circle"
        if (self.model.type, circle) not in KINDS:
            fits = " or ".join(t for t, c in KINDS if c == circle)
            raise ValueError(f"model.type {self.model.type!r} does not fit data.name {self.data.name!r} "
                             f"({'the circle needs' if circle else 'images need'} {fits})")
        if KINDS[self.model.type, circle].ve != (self.generate.sampler == "em"):
            raise ValueError(f"generate.sampler {self.generate.sampler!r} does not fit data.name "
                             f"{self.data.name!r} (em is the circle's VE sampler)")
        return self

    def value(self, key: str) -> Any:
        """The value at a dotted key (``train.lr``, ``classify.delta_m.l2``) as plain JSON data."""
        node: Any = self.to_dict()
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _unique(key: str, v) -> tuple:
    """Sorted, each value once; a list that repeats a value is said so (one unit per value)."""
    out = tuple(sorted(set(v)))
    if len(out) != len(v):
        logging.getLogger("raystudy").warning(f"config: {key}: {list(v)} repeats a value; using {list(out)}")
    return out


def _validation_line(err: ValidationError) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"]) or "config"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict):
        msg = f"{msg} (got {e['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    # A rule across sections has no key of its own: its message is the line.
    return f"config: {msg}{more}" if key == "config" else f"config: {key}: {msg}{more}"


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"config: override {item!r} must look like section.key=value")
    key, value = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def _merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, section by section, so a file or an override that sets one
    threshold (``classify.delta_m.l2``) keeps the defaults of the others."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def from_dict(raw: dict, overrides: list[str] = ()) -> StudyConfig:
    raw = _merge(StudyConfig().to_dict(), json.loads(json.dumps(raw or {})))
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
        raise ConfigError(_validation_line(err)) from None


# The example studies, shipped inside the package so that a pip install can run them by name.
PACKAGED = Path(__file__).with_name("configs")


def packaged_configs() -> list[str]:
    """Names of the example configs shipped in the package (``demo``, ``cifar10``, ...)."""
    return sorted(p.stem for p in PACKAGED.glob("*.yaml"))


def resolve(path: str | Path) -> Path:
    """A config file, or the bare name of a packaged one (``demo``, ``demo.yaml``): a file that
    exists always wins, so a user's own ``demo.yaml`` in the working directory is never shadowed."""
    path = Path(path)
    if path.exists() or path.parent != Path("."):
        return path
    packaged = PACKAGED / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    return packaged if packaged.is_file() else path


def load_config(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    path = resolve(path)
    if not path.exists():
        raise ConfigError(f"config: file {path} does not exist (packaged configs, usable by name: "
                          f"{', '.join(packaged_configs())})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config: {path} is not valid YAML: {one_line(e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config: {path} must hold a mapping of sections")
    return from_dict(raw, overrides)


def save(cfg: StudyConfig, study_dir: str | Path) -> Path:
    """Save the resolved config beside the results (atomically)."""
    from .tables import write_text

    return write_text(Path(study_dir) / "config.yaml", cfg.to_yaml())
