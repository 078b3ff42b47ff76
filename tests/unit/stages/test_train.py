"""What a training trial asks Tune for (Ray's own resource request, no Ray started)."""

from tests.conftest import ROOT


def test_a_quarter_gpu_per_trial_is_what_tune_books(tmp_path):
    from ray.tune.trainable.function_trainable import wrap_function

    from raystudy.config import load
    from raystudy.stages import fingerprint
    from raystudy.stages.train import make_trainable

    cfg = load(ROOT / "configs" / "cifar10.yaml", ["train.gpus_per_trial=0.25", "train.cpus_per_trial=2"])
    # What Tune books for each trial: one bundle of 2 CPU and a quarter GPU.
    request = wrap_function(make_trainable(cfg, tmp_path)).default_resource_request({})
    assert request.bundles == [{"CPU": 2.0, "GPU": 0.25}]
    assert request.required_resources == {"CPU": 2.0, "GPU": 0.25}
    # Packing is a resource setting: it does not change what a run is (its fingerprint).
    train = __import__("raystudy.study", fromlist=["STAGES"]).STAGES["train"]
    whole = load(ROOT / "configs" / "cifar10.yaml")
    assert fingerprint(train.depends_on(cfg, (2, 0))) == fingerprint(train.depends_on(whole, (2, 0)))
    # The documented example is the one tested here.
    assert "--set train.gpus_per_trial=0.25 --set train.cpus_per_trial=2" in \
        (ROOT / "configs" / "cifar10.yaml").read_text()
