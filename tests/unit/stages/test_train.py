"""What a training trial asks Tune for (Ray's own resource request, no Ray started)."""

from tests.conftest import ROOT


def test_a_quarter_gpu_per_trial_is_what_tune_books(tmp_path):
    from ray.tune.trainable.function_trainable import wrap_function

    from raystudy.axes import Unit
    from raystudy.config import load_config
    from raystudy.stages import fingerprint
    from raystudy.stages.train import make_trainable

    cfg = load_config(ROOT / "configs" / "cifar10.yaml", ["train.gpus_per_trial=0.25", "train.cpus_per_trial=2"])
    # What Tune books for each trial: one bundle of 2 CPU and a quarter GPU.
    request = wrap_function(make_trainable(cfg, tmp_path)).default_resource_request({})
    assert request.bundles == [{"CPU": 2.0, "GPU": 0.25}]
    assert request.required_resources == {"CPU": 2.0, "GPU": 0.25}
    # Packing is a resource setting: it does not change what a run is (its fingerprint).
    train = __import__("raystudy.study", fromlist=["STAGES"]).STAGES["train"]
    whole = load_config(ROOT / "configs" / "cifar10.yaml")
    assert fingerprint(train.depends_on(cfg, Unit(2, 0))) == fingerprint(train.depends_on(whole, Unit(2, 0)))
    # The documented example is the one tested here.
    assert "--set train.gpus_per_trial=0.25 --set train.cpus_per_trial=2" in \
        (ROOT / "configs" / "cifar10.yaml").read_text()


def test_tune_shows_each_run_by_its_label_and_books_by_its_k(tmp_path):
    from ray.tune.trainable.function_trainable import wrap_function

    from raystudy import axes
    from raystudy.config import from_dict
    from raystudy.stages.parallel import trial_resources
    from raystudy.stages.train import label_fields, make_trainable, run_dirname, run_label, trial_runs

    units = [axes.Unit(k, 0, axis=axes.Axis(v, t, s))
             for v, t, s, k in [("base", 0, None, 64), ("wide", 1, None, 64), ("base", 0, 32, 1597)]]
    runs = trial_runs(units)
    labels = [run_label(r) for r in runs]
    assert labels == ["K=64 seed=0", "K=64 seed=0 variant=wide twin=1", "K=1597 seed=0"]
    for r, label in zip(runs, labels):
        fields = label_fields(label)
        assert (int(fields["K"]), int(fields["seed"]), fields.get("variant", "base"), int(fields.get("twin", 0))) == \
            (r["K"], r["seed"], r["variant"], r["twin"])
    assert run_dirname(labels[1]) == "K64_seed0_variantwide_twin1"
    # A data-parallel study books by each trial's K, read from its label.
    dp = from_dict({"train": {"cpus_per_trial": 2, "workers": 2, "workers_min_k": 1000, "batch_size": 64}})
    trainable = wrap_function(make_trainable(dp, tmp_path, {}, runs))
    for label in labels:
        want = trial_resources(dp, int(label_fields(label)["K"]))
        got = trainable.default_resource_request({"run": label}).bundles[0]
        assert got == {"CPU": want["cpu"], **({"GPU": want["gpu"]} if want["gpu"] else {})}, label
