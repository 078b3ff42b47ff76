"""``models.family(cfg)``, the one place that reads a study's model kind from its config: what it
returns for every packaged config and for the tiny config on each model type, against a table
written here; its fields against the config's own rules; and what its ``build`` makes, by value."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from raystudy.config import load_config, packaged_configs
from raystudy.models import family
from raystudy.study import TRAIN
from tests.conftest import TINY

CIRCLE = ["data.name=circle", "generate.sampler=em"]

# (trains, closed_form, ve) of each family, as the stages need it: a UNet and the circle's MLP are
# trained; the exact memorizer and the fitted Gaussian are closed forms; only the circle is VE.
FAMILY = {
    "unet": (True, False, False),
    "circle-mlp": (True, False, True),
    "empirical": (False, True, False),
    "empirical on the circle": (False, True, True),
    "gaussian": (False, True, False),
}

PACKAGED = {
    "cifar10": "unet", "cifar10-paper": "unet", "circle": "circle-mlp", "demo": "unet",
    "demo-adaptive": "unet", "demo-basins": "unet", "digits-onset": "unet", "digits-phase": "unet", "manifold": "unet",
    "mnist": "unet",
}

OVERRIDDEN = [
    (TINY, ["model.type=unet"], "unet"),
    (TINY, ["model.type=empirical"], "empirical"),
    (TINY, ["model.type=gaussian"], "gaussian"),
    (TINY, [*CIRCLE, "model.type=circle-mlp"], "circle-mlp"),
    (TINY, [*CIRCLE, "model.type=empirical"], "empirical on the circle"),
    ("circle", ["model.type=empirical"], "empirical on the circle"),
]

CASES = [(name, [], kind) for name, kind in PACKAGED.items()] + OVERRIDDEN


def _fields(fam) -> tuple:
    return fam.trains, fam.closed_form, fam.ve


def test_the_table_names_every_packaged_config():
    assert sorted(PACKAGED) == packaged_configs()


@pytest.mark.parametrize("path, overrides, kind", CASES, ids=lambda v: str(getattr(v, "name", v)))
def test_family_of_each_config(path, overrides, kind):
    cfg = load_config(path, overrides)
    fam = family(cfg)
    assert fam.name == kind.split(" ")[0]
    assert _fields(fam) == FAMILY[kind]


@pytest.mark.parametrize("path, overrides, kind", CASES, ids=lambda v: str(getattr(v, "name", v)))
def test_family_agrees_with_the_config_rules(path, overrides, kind):
    cfg = load_config(path, overrides)
    fam = family(cfg)
    assert fam.name == cfg.model.type
    # VE <-> the circle <-> Euler-Maruyama: the config's own pairing of data.name and generate.sampler.
    assert fam.ve == (cfg.data.name == "circle") == (cfg.generate.sampler == "em")
    if cfg.model.type == "circle-mlp":
        assert fam.ve and fam.trains
    # What trains has a network and a checkpoint; a closed form has neither.
    assert fam.trains != fam.closed_form
    assert (fam.network is not None) == fam.trains
    assert TRAIN.uses_ray(cfg) == fam.trains  # only a trained model needs Ray Tune
    assert family(cfg) == fam  # decided by the config alone


def test_a_pair_the_config_refuses_has_no_family():
    cfg = load_config("circle")
    with pytest.raises(ValueError, match="does not fit"):
        family(cfg.model_copy(update={"model": cfg.model.model_copy(update={"type": "gaussian"})}))


def test_asking_the_family_imports_no_torch():
    code = ("import sys; from raystudy.config import load_config; from raystudy.models import family; "
            f"f = family(load_config({str(TINY)!r})); assert f.trains and 'torch' not in sys.modules, sorted(sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _alphas_cumprod(n: int) -> np.ndarray:
    # diffusers' linear schedule (beta 1e-4 .. 0.02), float32 as DDPMScheduler builds it
    return np.cumprod(1 - np.linspace(1e-4, 0.02, n, dtype=np.float32).astype(np.float64))


def _no_kset():
    raise AssertionError("a trained model is loaded from its folder, not built from its K-set")


def _images(k: int = 3) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (k, 1, 2, 2)).astype(np.float32)


@pytest.mark.parametrize("kind", ["empirical", "gaussian"])
def test_build_of_a_closed_form_image_model_is_its_eps_by_value(kind):
    cfg = load_config(TINY, [f"model.type={kind}"])
    train = _images()
    model = family(cfg).build(cfg.model, None, lambda: train)
    t = 600
    ab = _alphas_cumprod(cfg.model.num_train_timesteps)[t]
    a, s2 = np.sqrt(ab), 1 - ab
    x = np.random.default_rng(1).standard_normal((4, 4))
    flat = train.reshape(len(train), -1).astype(np.float64)
    if kind == "empirical":  # E[x_0 | x_t]: the softmax-weighted training images
        logits = -((x[:, None] - a * flat[None]) ** 2).sum(-1) / (2 * s2)
        w = np.exp(logits - logits.max(1, keepdims=True))
        x0 = (w / w.sum(1, keepdims=True)) @ flat
    else:  # the Gaussian of the K-set's mean and (maximum likelihood) covariance
        mu, cov = flat.mean(0), np.cov(flat.T, bias=True)
        x0 = mu + (a * cov @ np.linalg.solve(ab * cov + s2 * np.eye(4), (x - a * mu).T)).T
    want = (x - a * x0) / np.sqrt(s2)
    got = model(torch.tensor(x.reshape(4, 1, 2, 2), dtype=torch.float32), t).sample
    np.testing.assert_allclose(got.double().numpy().reshape(4, 4), want, rtol=1e-4, atol=1e-4)


def test_build_of_the_circle_memorizer_is_its_ve_score_by_value():
    cfg = load_config("circle", ["model.type=empirical", "model.sigma_max=2.0"])
    train = _images(5).reshape(5, 1, 1, 4)[..., :2]
    score = family(cfg).build(cfg.model, None, lambda: train)
    x, t = np.random.default_rng(2).standard_normal((6, 2)), 0.03
    sig2 = 2.0 ** 2 * t
    pts = train.reshape(5, 2).astype(np.float64)
    logits = -((x[:, None] - pts[None]) ** 2).sum(-1) / (2 * sig2)
    w = np.exp(logits - logits.max(1, keepdims=True))
    want = ((w / w.sum(1, keepdims=True)) @ pts - x) / sig2
    got = score(torch.tensor(x, dtype=torch.float32), torch.full((6,), t))
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("overrides, shape", [
    (["model.type=unet"], (1, 8, 8)),
    ([*CIRCLE, "model.type=circle-mlp", "model.width=8", "model.depth=1"], (1, 1, 2)),
])
def test_build_of_a_trained_model_loads_what_its_network_saved(tmp_path, overrides, shape):
    cfg = load_config(TINY, overrides)
    fam = family(cfg)
    net = fam.network().build(cfg.model, shape, seed=3)
    fam.network().save(net, tmp_path / "model", cfg.model)
    got = fam.build(cfg.model, tmp_path / "model", _no_kset)
    assert type(got) is type(net)
    want = net.state_dict()
    assert got.state_dict().keys() == want.keys()
    for name, value in got.state_dict().items():
        torch.testing.assert_close(value, want[name], msg=name)
