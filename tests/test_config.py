import pytest

from raystudy.config import ConfigError, StudyConfig, from_dict, load, save
from raystudy.data import DataError
from raystudy.study import StudyError, check_compatible, validate_against_data

from .conftest import ROOT, TINY


def test_configs_in_repo_load():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if path.name == "toy.yaml":
            continue
        cfg = load(path)
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
])
def test_config_errors_are_one_line_and_name_the_key(raw, overrides, needle):
    with pytest.raises(ConfigError) as e:
        from_dict(raw, overrides)
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_overrides_and_roundtrip(tmp_path):
    cfg = load(TINY, ["train.lr=0.01", "ks=[3, 1, 3]", "knn.metrics=[lpips-alex]"])
    assert cfg.train.lr == 0.01
    assert cfg.ks == (1, 3)  # sorted, deduplicated
    assert cfg.knn.metrics == ("l2", "lpips-alex")  # l2 always searched (ratio test)
    path = save(cfg, tmp_path)
    assert load(path) == cfg
    assert cfg.section_hash("train") != load(TINY).section_hash("train")


def test_k_larger_than_dataset(digits):
    cfg = from_dict({"ks": [2, 5000]})
    with pytest.raises(DataError, match=r"K=5000 is larger than the dataset \(digits has 1797 images\)"):
        validate_against_data(cfg, digits)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.yaml")


def test_changed_config_is_refused_for_an_existing_study(tmp_path):
    cfg = load(TINY)
    save(cfg, tmp_path)
    check_compatible(load(TINY, ["ks=[2, 16, 64]", "knn.metrics=[l2, lpips-alex]"]), tmp_path)  # allowed
    with pytest.raises(StudyError, match="train.lr"):
        check_compatible(load(TINY, ["train.lr=0.5"]), tmp_path)
