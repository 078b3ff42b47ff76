import pytest

from raystudy.config import ConfigError, StudyConfig, from_dict, load_config, save
from raystudy.errors import DataError
from raystudy.study import validate_against_data
from tests.conftest import ROOT, TINY


def test_configs_in_repo_load():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert isinstance(cfg, StudyConfig)


@pytest.mark.parametrize("raw, overrides, needle", [
    ({"train": {"lrr": 1}}, [], "config: train.lrr: unknown key"),
    ({"bogus": 1}, [], "config: bogus: unknown key"),
    ({"train": {"lr": "fast"}}, [], "config: train.lr:"),
    ({"ks": [0, 4]}, [], "config: ks: every K must be >= 1"),
    ({"ks": []}, [], "config: ks:"),
    ({}, ["generate.sampler=euler"], "config: generate.sampler:"),
    ({}, ["knn.metrics=[cosine]"], "config: knn.metrics:"),
    ({"model": {"attention": [True]}}, [], "config: model"),
    ({}, ["train.images"], "must look like section.key=value"),
    ({}, ["model.type=circle-mlp"], "does not fit data.name"),
    ({}, ["data.name=circle"], "does not fit data.name"),
    ({}, ["basins.metric=lpips-alex"], "basins.metric"),
    ({}, ["train.stop_on_gap=true", "train.snapshots=[128]"], "config: train.stop_on_gap needs"),
    ({}, ["train.stop_on_gap=true", "data.held_out=1"], "config: train.stop_on_gap needs"),
    ({}, ["train.stop_on_gap=true", "train.gap_evals=2"], "config: train.stop_on_gap needs"),
])
def test_config_errors_are_one_line_and_name_the_key(raw, overrides, needle):
    with pytest.raises(ConfigError) as e:
        from_dict(raw, overrides)
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_overrides_and_roundtrip(tmp_path):
    cfg = load_config(TINY, ["train.lr=0.01", "ks=[3, 1, 3]", "knn.metrics=[lpips-alex]"])
    assert cfg.train.lr == 0.01
    assert cfg.ks == (1, 3)  # sorted, deduplicated
    assert cfg.knn.metrics == ("l2", "lpips-alex")  # l2 always searched (ratio test)
    path = save(cfg, tmp_path)
    assert load_config(path) == cfg
    assert cfg.value("train.lr") == 0.01 and cfg.value("classify.delta_m.l2") == 0.1
    assert cfg.value("train.nope") is None


def test_k_larger_than_dataset(digits):
    cfg = from_dict({"ks": [2, 5000]})
    with pytest.raises(DataError, match=r"K=5000 is larger than the dataset \(digits has 1797 training images\)"):
        validate_against_data(cfg, digits)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_circle_config_file_is_the_toy_shortcut():
    from raystudy.datasets.toy import CIRCLE_CONFIG

    assert load_config(ROOT / "configs" / "circle.yaml") == load_config(CIRCLE_CONFIG)
    assert (ROOT / "configs" / "circle.yaml").resolve() == CIRCLE_CONFIG.resolve()


def test_bad_thresholds_and_repeated_values_are_said_in_one_line(tmp_path, capsys):
    from raystudy.cli import main

    for bad in ("classify.delta_m.l2=-1", "classify.delta_s.l2=0", "seeds=[-1]"):
        assert main(["run", str(TINY), "--study", str(tmp_path / "s"), "--set", bad, "--dry-run"]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("raystudy: error: config:") and err.count("\n") == 1, err
    # Repeated K (or seeds) are used once, and the run says so on stderr, even with -q.
    assert main(["run", str(TINY), "--study", str(tmp_path / "s"), "--set", "ks=[2, 2, 16]", "--set", "seeds=[0, 0]",
                 "--dry-run", "-q"]) == 0
    out, err = capsys.readouterr()
    assert "ks: [2, 2, 16] repeats a value; using [2, 16]" in err and "seeds: [0, 0] repeats a value; using [0]" in err
    assert "train: reads -; writes runs, train_log, loss_curves; 2 of 2 missing" in out


def test_study_that_is_a_file_is_one_line(tmp_path, capsys):
    from raystudy.cli import main

    f = tmp_path / "notes.txt"
    f.write_text("not a study")
    for argv in (["run", str(TINY), "--study", str(f)], ["run", str(TINY), "--study", str(f), "--dry-run"],
                 ["show", str(f)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("raystudy: error:") and f"{f} is a file, not a study folder" in err and err.count("\n") == 1, err
    assert f.read_text() == "not a study"
