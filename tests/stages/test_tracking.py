"""Following training: the train stage, through Ray Tune's own logger callbacks, writes files that
TensorBoard's and MLflow's own readers open, at every log interval."""

import logging

import numpy as np
import pandas as pd
import pytest

from raystudy.axes import Unit
from raystudy.config import load_config
from raystudy.models import model_dir
from raystudy.study import TRAIN
from tests.conftest import TINY

# 4 steps of 32 images, one log interval each; one checkpoint, at the end: reports made only at
# checkpoints would give one point, not four.
SETTINGS = ["ks=[4]", "train.images=128", "train.batch_size=32", "train.checkpoint_every=128"]


@pytest.fixture(scope="module")
def tracked(study_of):
    cfg, out = study_of(TINY, *SETTINGS, "train.tracking=[tensorboard, mlflow]", only="train")
    log = pd.read_parquet(out / "tables" / "train_log")
    return cfg, out, log.sort_values("step")


def curve_means(out) -> pd.DataFrame:
    """The loss curves' mean over noise levels per evaluation (4 steps: every step is one)."""
    lc = pd.read_parquet(out / "tables" / "loss_curves")
    return lc.groupby("images_seen")[["train_loss", "held_out_loss"]].mean().sort_index()


@pytest.mark.slow
def test_tensorboard_reader_parses_the_loss_at_every_log_interval(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out, log = tracked
    files = list((out / "ray_results").rglob("events.out.tfevents.*"))
    assert len(files) == 1
    acc = EventAccumulator(str(files[0]))
    acc.Reload()
    loss = acc.Scalars("ray/tune/loss")
    assert [e.step for e in loss] == list(log.images_seen) == [32, 64, 96, 128]
    np.testing.assert_allclose([e.value for e in loss], log.loss, rtol=1e-6)
    speed = acc.Scalars("ray/tune/images_per_s")
    assert len(speed) == 4 and all(e.value > 0 for e in speed)
    curves = curve_means(out)
    for tag, col in (("gap_train_loss", "train_loss"), ("gap_held_out_loss", "held_out_loss")):
        got = acc.Scalars(f"ray/tune/{tag}")
        assert [e.step for e in got] == list(curves.index) == [32, 64, 96, 128]
        np.testing.assert_allclose([e.value for e in got], curves[col], rtol=1e-6)


@pytest.mark.slow
def test_mlflow_client_lists_the_run_with_its_metrics_params_and_tags(tracked):
    import mlflow

    cfg, out, log = tracked
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name(cfg.study.name)
    assert exp is not None and exp.artifact_location.startswith((out / "mlartifacts").as_uri())
    (r,) = client.search_runs([exp.experiment_id])
    assert r.info.status == "FINISHED"
    assert r.data.params["run"] == "K=4 seed=0"
    assert {k: r.data.tags[k] for k in ("study", "K", "seed")} == {"study": "tiny", "K": "4", "seed": "0"}
    hist = sorted(client.get_metric_history(r.info.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in hist] == [32, 64, 96, 128]
    np.testing.assert_allclose([m.value for m in hist], log.loss, rtol=1e-6)
    held = sorted(client.get_metric_history(r.info.run_id, "gap_held_out_loss"), key=lambda m: m.step)
    np.testing.assert_allclose([m.value for m in held], curve_means(out).held_out_loss, rtol=1e-6)
    assert model_dir(out, 4, 0).exists()


def test_tracking_settings_are_not_in_the_train_fingerprint():
    base = load_config(TINY, SETTINGS)
    tracked = load_config(TINY, [*SETTINGS, "train.tracking=[mlflow, wandb]", "train.mlflow_uri=sqlite:////tmp/x.db",
                                 "train.gap_evals=5", "train.gap_images=8", "train.gap_levels=2"])
    other_lr = load_config(TINY, [*SETTINGS, "train.lr=1e-3"])
    stopped = load_config(TINY, [*SETTINGS, "train.stop_on_gap=true"])
    unstopped = load_config(TINY, [*SETTINGS, "train.stop_on_gap=false"])
    fp = [TRAIN.meta(c, Unit(4, 0))["fingerprint"] for c in (base, tracked, other_lr, stopped, unstopped)]
    # stop_on_gap off is the fingerprint a study had before the key existed
    assert fp[0] == fp[1] == fp[4] != fp[2] and fp[3] not in (fp[0], fp[2])
    assert "train.stop_on_gap" in TRAIN.meta(stopped, Unit(4, 0))["depends"]


def test_wandb_is_skipped_where_not_installed(tmp_path, caplog):
    import importlib.util

    from raystudy.stages.tracking import callbacks

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    cfg = load_config(TINY, ["train.tracking=[tensorboard, wandb]"])
    with caplog.at_level(logging.WARNING):
        got = callbacks(cfg, tmp_path, "train-x")
    assert [type(c).__name__ for c in got] == ["TBXLoggerCallback"]
    assert "wandb" in caplog.text and "not installed" in caplog.text
