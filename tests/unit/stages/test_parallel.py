"""The pieces of data-parallel training that need no Ray: a worker's share of the loss, the
batch split's validation, and what a trial books (tests/system/test_data_parallel.py runs the workers)."""

from contextlib import nullcontext as nullctx

import pytest
import torch

from raystudy.config import from_dict
from raystudy.errors import ConfigError
from raystudy.models import family, unet


@pytest.mark.parametrize("kind", ["unet", "circle-mlp"])
def test_the_shares_of_a_batch_make_the_one_process_loss(kind):
    if kind == "unet":
        cfg = from_dict({"model": {"block_out_channels": [8, 16], "attention": [False, False], "norm_num_groups": 4}})
        shape = (1, 8, 8)
    else:
        cfg = from_dict({"data": {"name": "circle"}, "model": {"type": "circle-mlp"}, "generate": {"sampler": "em"}})
        shape = (2,)
    network = family(cfg).network()
    net = network.build(cfg.model, shape, seed=0)
    alphas = unet.build_train_scheduler(cfg.model).alphas_cumprod if kind == "unet" else None
    x0 = torch.rand((12, *shape), generator=torch.Generator().manual_seed(1)) * 2 - 1

    def run(part, rows):
        gen = torch.Generator().manual_seed(7)
        net.zero_grad()
        loss = network.loss(cfg.model, net, x0[rows], gen, alphas, nullctx, part=part)
        loss.backward()
        return loss.item(), [p.grad.clone() for p in net.parameters()], gen.get_state()

    whole, g_whole, s_whole = run(None, slice(None))
    shares = [run((a, 12), slice(a, a + 4)) for a in (0, 4, 8)]  # three workers of 4 rows
    assert sum(v for v, _, _ in shares) / 3 == pytest.approx(whole, rel=1e-6)
    for i, g in enumerate(g_whole):  # what DDP's all-reduce averages
        torch.testing.assert_close(sum(s[1][i] for s in shares) / 3, g, rtol=1e-5, atol=1e-7)
    # Every worker leaves the generator where one process leaves it: the next batch agrees too.
    assert all(torch.equal(s[2], s_whole) for s in shares)
    # Not trivially equal: a share alone is another loss.
    assert abs(shares[0][0] - whole) > 1e-4


def test_batch_must_split_evenly_over_workers():
    with pytest.raises(ConfigError) as e:
        from_dict({"train": {"batch_size": 10, "workers": 4}})
    assert "multiple of train.workers" in str(e.value) and "\n" not in str(e.value)
    assert from_dict({"train": {"batch_size": 12, "workers": 4}}).train.workers_for(2) == 4


def test_what_a_trial_books():
    from raystudy.stages.parallel import DRIVER_CPU, trial_resources

    one = from_dict({"train": {"cpus_per_trial": 2, "gpus_per_trial": 0.5}})
    assert trial_resources(one, 50_000) == {"cpu": 2, "gpu": 0.5}  # workers: 1, as before
    dp = from_dict({"train": {"cpus_per_trial": 8, "gpus_per_trial": 4, "workers": 4, "workers_min_k": 1000}})
    assert trial_resources(dp, 50_000) == {"cpu": DRIVER_CPU, "gpu": 0.0}  # the workers book theirs
    assert trial_resources(dp, 500) == {"cpu": 2, "gpu": 1}  # small K: one process, one worker's share
    assert dp.train.workers_for(999) == 1 and dp.train.workers_for(1000) == 4
