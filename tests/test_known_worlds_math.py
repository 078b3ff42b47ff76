"""Known answers of the labelling math that need no study run."""

import numpy as np

from raystudy.labels import ratio_test


def test_ratio_test_without_a_second_neighbour_is_undefined():
    # K = 1: the missing second neighbour is stored as distance inf (index -1).
    nn1 = np.array([0.0, 0.01, 0.5, 2.0])
    for missing in (np.inf, np.nan):
        ratio, mem = ratio_test(nn1, np.full(4, missing))
        assert np.isnan(ratio).all() and not mem.any()
    # Mixed rows: only the row that has a second neighbour gets a ratio.
    ratio, mem = ratio_test([0.1, 0.1], [0.5, np.inf])
    assert ratio[0] == 0.2 and mem[0] and np.isnan(ratio[1]) and not mem[1]
    # Exact duplicates (two identical training images) stay a copy; nn2 = 0 < nn1 is no copy.
    ratio, mem = ratio_test([0.0, 0.3], [0.0, 0.0])
    assert ratio[0] == 0.0 and mem[0] and ratio[1] == np.inf and not mem[1]


def _ddim(model, n, size, seed, steps):
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler

    sched = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=1000).config)
    sched.set_timesteps(steps)
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, t).sample, t, x).prev_sample
    return x.clamp(-1, 1).numpy()


def test_exact_memorizer_samples_sit_on_the_manifold_and_its_blends_do_not():
    # 50 DDIM steps of the exact memorizer return training discs: on the manifold. Its
    # prediction of x_0 at t = 999 is the posterior mean there, a blend of all K discs
    # (the archetypal spurious state): off it. (A 100-step UNet's samples score 0.82-0.95, but training it
    # takes minutes on a 2-core CPU.)
    import torch
    from diffusers import DDPMScheduler

    from raystudy.memorizer import EmpiricalEpsilon
    from raystudy.datasets.manifold import latents, manifold_error, render

    size, K = 16, 16
    train = render(latents(np.arange(K)), size)
    model = EmpiricalEpsilon(torch.from_numpy(train), DDPMScheduler(num_train_timesteps=1000).alphas_cumprod)
    good = _ddim(model, 16, size, seed=0, steps=50)
    d = np.sqrt(((good[:, None] - train[None]) ** 2).mean((2, 3, 4))).min(1)
    assert d.max() < 0.01  # they are training images
    assert manifold_error(good).max() < 0.005
    x = torch.randn(16, 3, size, size, generator=torch.Generator().manual_seed(1))
    blend = model.denoise(x, 999).numpy()
    assert manifold_error(blend).min() > 0.03
