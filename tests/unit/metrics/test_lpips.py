"""LPIPS as a Euclidean embedding, checked against the real ``lpips`` package.

Random backbones (pnet_rand=True) with lpips's shipped v0.1 linear weights; the
reference ``lpips.LPIPS`` is a separate module given the same backbone state dict.
"""

import warnings

import lpips
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raystudy.metrics import get_metric
from raystudy.metrics.lpips import BACKBONE_FILES, LpipsEmbedding, WeightsCorrupt, WeightsMissing
from raystudy.metrics.search import knn_search

# lpips's slices hold torchvision's `features[i]` under the name str(i).
ALEX_CONVS = {"slice1.0": 0, "slice2.3": 3, "slice3.6": 6, "slice4.8": 8, "slice5.10": 10}
VGG_CONVS = {"slice1.0": 0, "slice1.2": 2, "slice2.5": 5, "slice2.7": 7, "slice3.10": 10,
             "slice3.12": 12, "slice3.14": 14, "slice4.17": 17, "slice4.19": 19, "slice4.21": 21,
             "slice5.24": 24, "slice5.26": 26, "slice5.28": 28}


def quiet_lpips(net):
    with warnings.catch_warnings():  # torchvision's `pretrained=` deprecation, from lpips
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)


@pytest.fixture(scope="module", params=["alex", "vgg"])
def pair(request):
    """(our embedding, an independent lpips.LPIPS with the same random backbone)."""
    net = request.param
    torch.manual_seed(0)
    ours = LpipsEmbedding(net, pnet_rand=True, device="cpu", batch_size=3)
    ref = quiet_lpips(net)
    ref.load_state_dict(ours.model.state_dict())
    return ours, ref.eval()


def preprocess(x):
    """The paper's image handling, written independently of the code under test."""
    x = torch.from_numpy(x)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[-1] < 32:
        x = F.interpolate(x, size=(32, 32), mode="nearest-exact")
    return x


def images(rng, n, c, s):
    return rng.uniform(-1, 1, size=(n, c, s, s)).astype(np.float32)


@pytest.mark.parametrize("size", [8, 16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_embedding_distance_equals_lpips(pair, size, channels):
    ours, ref = pair
    rng = np.random.default_rng(size * 10 + channels)
    n = 2 if ours.net == "vgg" and size == 64 else 4
    x, y = images(rng, n, channels, size), images(rng, n, channels, size)
    # Near-duplicates too: LPIPS is small there and must still match.
    y[0] = x[0] + np.float32(1e-2) * rng.normal(size=x[0].shape).astype(np.float32)
    ex, ey = ours.embed(x), ours.embed(y)
    assert ex.dtype == np.float32 and ex.shape[0] == n
    got = ((ex.astype(np.float64) - ey.astype(np.float64)) ** 2).sum(1)
    with torch.no_grad():
        want = ref(preprocess(x), preprocess(y)).reshape(-1).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert want[0] < 0.5 * want[1:].min()


@pytest.mark.parametrize("size", [32, 64])
def test_fast_backbone_equals_lpips_backbone(pair, size):
    """features(): channels-last, 3x3 convolutions on 1x1 maps as their centre tap (AlexNet
    at 32x32) -- the same outputs as lpips's own forward; batching does not matter."""
    ours, ref = pair
    x = torch.from_numpy(images(np.random.default_rng(size), 2, 3, size))
    with torch.no_grad():
        want = ref.net(ref.scaling_layer(x))
    got = ours.features(x)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        # float32 rounding of different convolution algorithms, relative to the layer's scale
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()))
    e = ours.embed(x.numpy())
    np.testing.assert_allclose(np.concatenate([ours.embed(x.numpy()[:1]), ours.embed(x.numpy()[1:])]), e,
                               rtol=1e-5, atol=1e-7)
    assert ours.embed(np.zeros((0, 3, size, size), np.float32)).shape == (0, e.shape[1])


def test_dimensions_drop_zero_weight_channels(pair):
    ours, ref = pair
    x = np.zeros((1, 3, 32, 32), np.float32)
    with torch.no_grad():
        feats = ref.net(ref.scaling_layer(torch.from_numpy(x)))
    kept = sum(int((lin.model[-1].weight > 0).sum()) * f.shape[2] * f.shape[3]
               for lin, f in zip(ref.lins, feats))
    full = sum(f.shape[1] * f.shape[2] * f.shape[3] for f in feats)
    assert ours.embed(x).shape == (1, kept)
    if ours.net == "alex":  # the shipped alex lin weights have zeros; DESIGN's 5,760 is before dropping
        # AlexNet's five layers on a 32x32 input: 64 x 7 x 7, 192 x 3 x 3, then 384, 256, 256 x 1 x 1
        assert full == 64 * 49 + 192 * 9 + 384 + 256 + 256 and kept < full


def test_preprocessing_grey_and_upsampling():
    torch.manual_seed(0)
    ours = LpipsEmbedding("alex", pnet_rand=True, device="cpu")
    x = np.random.default_rng(0).uniform(-1, 1, size=(2, 1, 8, 8)).astype(np.float32)
    got = ours.preprocess(x).numpy()
    want = np.repeat(np.kron(x, np.ones((1, 1, 4, 4), np.float32)), 3, axis=1)  # 4x replication
    np.testing.assert_array_equal(got, want)
    big = np.zeros((1, 3, 64, 64), np.float32)
    assert ours.preprocess(big).shape == (1, 3, 64, 64)
    # grey image == the same image given as three equal channels
    np.testing.assert_array_equal(ours.embed(x), ours.embed(np.repeat(x, 3, axis=1)))


def test_topk_over_embeddings_equals_pairwise_lpips():
    torch.manual_seed(1)
    ours = LpipsEmbedding("alex", pnet_rand=True, device="cpu")
    ref = quiet_lpips("alex")
    ref.load_state_dict(ours.model.state_dict())
    rng = np.random.default_rng(5)
    refs = images(rng, 40, 3, 32)
    queries = images(rng, 24, 3, 32)
    queries[:4] = refs[[3, 9, 20, 33]] + np.float32(1e-3) * rng.normal(size=(4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        qi, ri = np.divmod(np.arange(len(queries) * len(refs)), len(refs))
        full = ref(preprocess(queries[qi]), preprocess(refs[ri])).reshape(len(queries), len(refs)).double().numpy()
    want_i = np.argsort(full, axis=1, kind="stable")[:, :5]
    d, i = knn_search(ours.embed(queries), ours.embed(refs), 5)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(ours.from_sq(d), np.take_along_axis(full, want_i, 1), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(i[:4, 0], [3, 9, 20, 33])


# --------------------------------------------------------------------------- loading

def write_backbone(folder, net="alex", seed=123):
    from torchvision import models

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if net == "alex":
        sd = models.alexnet(weights=None).state_dict()
    else:  # features only: the classifier (500 MB) is never read
        sd = {f"features.{k}": v for k, v in models.vgg16(weights=None).features.state_dict().items()}
    path = folder / BACKBONE_FILES[net]
    torch.save(sd, path)
    return path, sd


def assert_backbone_is(emb, sd, convs):
    params = dict(emb.model.net.named_parameters())
    for name, i in convs.items():
        for p in ("weight", "bias"):
            torch.testing.assert_close(params[f"{name}.{p}"].cpu(), sd[f"features.{i}.{p}"], rtol=0, atol=0)
    assert len(params) == 2 * len(convs)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    assert str(torch.hub.get_dir()).startswith(str(tmp_path))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_loads_from_weights_dir(tmp_path, empty_hub):
    path, sd = write_backbone(tmp_path / "w")
    emb = LpipsEmbedding("alex", weights_dir=tmp_path / "w", device="cpu")
    assert emb.weights_source == str(path)
    assert_backbone_is(emb, sd, ALEX_CONVS)


def test_loads_from_torch_home(empty_hub):
    path, sd = write_backbone(empty_hub, seed=7)
    emb = LpipsEmbedding("alex", device="cpu")
    assert emb.weights_source == str(path)
    assert_backbone_is(emb, sd, ALEX_CONVS)


def test_loads_vgg_slices(tmp_path, empty_hub):
    _, sd = write_backbone(tmp_path, "vgg")
    emb = LpipsEmbedding("vgg", weights_dir=tmp_path, device="cpu")
    assert_backbone_is(emb, sd, VGG_CONVS)


def test_get_metric_interface(tmp_path, empty_hub):
    write_backbone(tmp_path)
    metric = get_metric("lpips-alex", weights_dir=str(tmp_path), device="cpu")
    assert metric.name == "lpips-alex"
    e = metric.embed(np.zeros((3, 1, 8, 8), np.float32))
    assert e.dtype == np.float32 and e.shape[0] == 3
    sq = np.array([[0.1, 0.2]])
    assert metric.from_sq(sq) is sq


def assert_one_line(err, *needles):
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 500, msg
    for s in needles:
        assert str(s) in msg, msg


def test_missing_weights_one_line(tmp_path, empty_hub):
    with pytest.raises(WeightsMissing) as err:
        LpipsEmbedding("alex", device="cpu", download=False)
    # Both ways a cluster gets it: a folder named by knn.weights_dir, or the image that has it baked in.
    assert_one_line(err, "alexnet-owt-7be5be79.pth", empty_hub, "knn.weights_dir", "Dockerfile")
    with pytest.raises(FileNotFoundError) as err:
        LpipsEmbedding("vgg", weights_dir=tmp_path / "nowhere", device="cpu", download=False)
    assert_one_line(err, "vgg16-397923af.pth", tmp_path / "nowhere")


def test_failed_fetch_is_one_line(tmp_path, empty_hub, offline):
    # torchvision's own fetch is tried, with the network unreachable whether this machine has
    # internet or not.
    with pytest.raises(WeightsMissing) as err:
        LpipsEmbedding("alex", device="cpu")
    assert_one_line(err, "alexnet-owt-7be5be79.pth", empty_hub, "fetching")


def test_corrupt_weights_one_line(tmp_path, empty_hub):
    path = tmp_path / BACKBONE_FILES["alex"]
    path.write_bytes(b"definitely not a torch checkpoint\n" * 10)
    with pytest.raises(WeightsCorrupt) as err:
        LpipsEmbedding("alex", weights_dir=tmp_path, device="cpu")
    assert_one_line(err, path)
    # a truncated real checkpoint
    good, _ = write_backbone(tmp_path / "good")
    path.write_bytes(good.read_bytes()[: 1 << 20])
    with pytest.raises(WeightsCorrupt) as err:
        LpipsEmbedding("alex", weights_dir=tmp_path, device="cpu")
    assert_one_line(err, path)
    # the wrong network under the right name: missing keys, wrong shapes
    _, sd = write_backbone(tmp_path / "good")
    for bad in ({"features.0.weight": torch.zeros(3)}, {**sd, "features.0.weight": torch.zeros(64, 3, 3, 3)}):
        torch.save(bad, path)
        with pytest.raises(WeightsCorrupt) as err:
            LpipsEmbedding("alex", weights_dir=tmp_path, device="cpu")
        assert_one_line(err, "alex")


def test_a_driver_without_torch_checks_the_backbone_in_a_child(tmp_path, empty_hub):
    # A study's driver never imports torch (alone it takes a process past 600 MB): the check runs
    # the same loading in a child and raises its one line here.
    write_backbone(tmp_path / "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / BACKBONE_FILES["alex"]).write_bytes(b"not a checkpoint")
    code = f"""
import sys
from raystudy.metrics import check_backbones
check_backbones(["alex"], {str(tmp_path / 'good')!r})
try:
    check_backbones(["alex"], {str(bad)!r})
except Exception as e:
    print(type(e).__name__, "|", e)
print("torch imported:", "torch" in sys.modules)
"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0, out.stderr[-2000:]
    assert lines[0].startswith("WeightsCorrupt | ") and str(bad) in lines[0]
    assert lines[1] == "torch imported: False"
