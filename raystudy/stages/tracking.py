"""Following training: Ray Tune's own logger callbacks, chosen by ``train.tracking``.

Each trial reports at every log interval (``train_one``'s ``on_log``), with
``timesteps_total`` = images seen, so every tracker's x axis is the project's length unit
whatever the batch size or a resume. The callbacks run in the Tune driver: a local MLflow
store under the study folder is written by that one process, never by the workers.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ray.air.integrations.mlflow import MLflowLoggerCallback

from ..errors import ConfigError

log = logging.getLogger(__name__)


def mlflow_uri(cfg, study_dir) -> str:
    """``train.mlflow_uri``, or an SQLite store in the study folder (MLflow 3 refuses its plain
    file store ./mlruns unless told to allow it, and the database is its replacement)."""
    return cfg.train.mlflow_uri or f"sqlite:///{Path(study_dir).resolve() / 'mlflow.db'}"


def callbacks(cfg, study_dir, experiment: str) -> list:
    """The Tune callbacks for ``train.tracking``. Tune writes TensorBoard events
    (``TBXLoggerCallback``) under ``ray_results/`` by itself when none is given; naming it here
    makes that a setting instead of a side effect. wandb is skipped, with a warning, where it
    is not installed; mlflow missing is a one-line error (it is asked for and cannot work)."""
    out = []
    tracking = cfg.train.tracking
    if "tensorboard" in tracking:
        from ray.tune.logger import TBXLoggerCallback

        out.append(TBXLoggerCallback())
    if "mlflow" in tracking:
        out.append(_mlflow(cfg, study_dir, experiment))
    if "wandb" in tracking:
        if importlib.util.find_spec("wandb") is None:
            log.warning("train.tracking names wandb, which is not installed here: skipped (pip install wandb)")
        else:
            from ray.air.integrations.wandb import WandbLoggerCallback

            out.append(WandbLoggerCallback(project=cfg.study.name, group=experiment, tags=[cfg.study.name]))
    return out


def _mlflow(cfg, study_dir, experiment: str):
    uri = mlflow_uri(cfg, study_dir)
    needs = ["mlflow"] + (["sqlalchemy", "alembic"] if uri.startswith("sqlite") else [])
    if any(importlib.util.find_spec(m) is None for m in needs):
        raise ConfigError(f"train.tracking names mlflow with {uri.split(':')[0]}:, which needs {', '.join(needs)} installed: "
                          "pip install 'raystudy[tracking]' (mlflow-skinny, sqlalchemy, alembic)")
    import mlflow

    if cfg.train.mlflow_uri is None:
        # Artifacts of the default store stay in the study folder too, not under the driver's cwd.
        client = mlflow.MlflowClient(tracking_uri=uri)
        if client.get_experiment_by_name(cfg.study.name) is None:
            client.create_experiment(cfg.study.name, artifact_location=(Path(study_dir).resolve() / "mlartifacts").as_uri())
    tags = {"study": cfg.study.name, "study_dir": str(Path(study_dir).resolve()), "tune_experiment": experiment}
    return RunTags(tracking_uri=uri, experiment_name=cfg.study.name, tags=tags)


class RunTags(MLflowLoggerCallback):
    """Ray's MLflow callback, with each run's K and seed (and variant and twin where it has them)
    as tags beside the study's (Ray logs the trial config, the run's label ``K=4 seed=0``, as
    its param ``run``)."""

    def setup(self, *args, **kwargs):
        self.study_tags = dict(self.tags or {})
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial):
        from . import label_fields

        self.tags = {**self.study_tags, **label_fields(trial.config["run"])}
        super().log_trial_start(trial)
