"""Which images and which noise: the study's permutation, every K-set (a twin's too), the
held-out split, and every seed a study derives.

One rule for every seed: numpy's ``SeedSequence`` over the integers that name what is seeded,
one of the salts below among them, so that no two random streams share their integers. A
sample's or an item's seed is a function of what it is, never of the batch, shard or actor it
lands in, and it is stored beside it in the tables. Plain numpy: a dataset is read only for
its sizes (``n_train``, ``n_test``), never imported.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

# The salts, one per random stream. Every stored number of every study depends on them.
PERMUTATION_SALT = 0x5EED      # the study's permutation of the training images: K-sets, held-out tail
TEST_ORDER_SALT = 0x7E57       # the order of a dataset's own test split, whose first images are held out
RUN_SALT = 0x7EA1              # a training run: initial weights, batches, noise
BASINS_SALT = 0xBA5            # a basins item's noisings
ENERGY_SALT = 0xE6             # an energy item's noisings
CIRCLE_SALT = 0xC1C            # the circle dataset's angles (with seed 0: one circle for every study)
CIRCLE_START_SALT = 0x57A127   # the circle sampler's pick of a training point, apart from its noise stream
MANIFOLD_SALT = 0x5EED         # the manifold dataset's latents: added to its splitmix64 key, no SeedSequence
PROBE_SALT = 0x6C05            # a run's loss-curve batches (compute.losses): which items, their noise

SETS = ("eval", "ref")                       # the two independent sample sets of a (K, seed)
ITEM_KINDS = ("sample", "train", "held-out")  # what the basins and energy stages measure


def derive(*parts: int, words: int = 2) -> int:
    """An integer seed from ``parts``: one 32-bit word, or two combined into a 63-bit one."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(words, np.uint32)
    if words == 1:
        return int(state[0])
    return int((int(state[0]) << 31) ^ int(state[1]))


def run_seed(study_seed: int, k: int, seed: int, twin: int = 0) -> int:
    """The training run (K, seed): its initial weights, batches and noise. A twin (raystudy.axes)
    draws its own, so twins that agree do so because of their data, not a shared start; the
    variants of a (K, seed) share it."""
    if twin:
        return derive(study_seed, k, seed, RUN_SALT, twin, words=1)
    return derive(study_seed, k, seed, RUN_SALT, words=1)


def probe_seeds(run: int) -> tuple[int, int]:
    """A run's loss-curve batches (``run``: its ``run_seed``): the seed of which items they hold and
    the seed of their fixed noise, apart from every stream the run trains with."""
    return derive(run, PROBE_SALT), derive(run, PROBE_SALT, 1)


def sample_seed(study_seed: int, k: int, seed: int, set_name: str, i: int) -> int:
    """Sample i of set ``set_name`` of model (K, seed): its initial noise and every step's noise."""
    return derive(study_seed, k, seed, SETS.index(set_name), i)


def item_seed(study_seed: int, k: int, seed: int, kind: str, item_id: int, salt: int) -> int:
    """A basins/energy item: its noisings (``salt``, BASINS_SALT or ENERGY_SALT, keeps the two
    stages' draws apart)."""
    return derive(study_seed, k, seed, ITEM_KINDS.index(kind), int(item_id), salt)


def permutation(n: int, seed: int) -> np.ndarray:
    """The study's one seeded permutation of ``n`` training images: twin 0's K-set is its first
    K items, twin 1's its K items before the held-out tail."""
    return np.random.default_rng(np.random.SeedSequence([seed, PERMUTATION_SALT])).permutation(n)


def kset_indices(n: int, k: int, seed: int, held_out: int = 0, twin: int = 0) -> np.ndarray:
    """The K-set of a model (dataset indices) among ``n`` training images: the permutation's first
    K for twin 0 (the nested sets of every study), its K items just before the held-out tail
    (``held_out`` items; 0 where the dataset has its own test split) for twin 1, read from the
    tail backwards, so the twins' sets are nested too and never meet while 2K <= n - held_out."""
    if not twin:
        if not 1 <= k <= n:
            raise DataError(f"K={k} is outside 1..{n} (the dataset has {n} images)")
        return permutation(n, seed)[:k]
    if 2 * k > n - held_out:
        raise DataError(f"twins: K={k} needs 2K = {2 * k} images beside the held-out split, the dataset "
                        f"leaves {n - held_out} ({n} - data.held_out {held_out})")
    return permutation(n, seed)[n - held_out - k:n - held_out][::-1].copy()


def kset(cfg, dataset, axis, k: int) -> np.ndarray:
    """The K-set (dataset indices) of the model of ``axis`` (raystudy.axes.Axis: its twin) at K in
    ``dataset``: among its training images (``n_train``), less the permutation's held-out tail
    where the dataset has no test split of its own. Images: ``dataset.get`` or ``dataset.images``."""
    reserved = 0 if getattr(dataset, "n_test", 0) else cfg.data.held_out
    return kset_indices(getattr(dataset, "n_train", len(dataset)), k, cfg.study.seed, reserved, axis.twin)


def held_out_indices(n: int, reserve: int, seed: int, n_test: int = 0) -> np.ndarray:
    """The study's held-out split of ``reserve`` images, which no K-set of the study holds.

    Where the dataset has its own test split (its last ``n_test`` of ``n`` indices), ``reserve``
    of those, in a seeded order; otherwise the last ``reserve`` items of the study's permutation,
    in its order. Either way twin 0's K-sets stay the permutation's prefixes (reserving changes
    none of them); without a test split a study refuses K > n - reserve."""
    if n_test:
        if not 0 <= reserve <= n_test:
            raise DataError(f"data.held_out={reserve} must be in 0..{n_test} (the dataset's test split has "
                            f"{n_test} images)")
        order = np.random.default_rng(np.random.SeedSequence([seed, TEST_ORDER_SALT])).permutation(n_test)
        return (n - n_test + order[:reserve]).astype(np.int64)
    if not 0 <= reserve < n:
        raise DataError(f"data.held_out={reserve} must be in 0..{n - 1} (the dataset has {n} images)")
    return permutation(n, seed)[n - reserve:]


def held_out(cfg, dataset) -> np.ndarray:
    """The study's held-out split in ``dataset`` (``data.held_out`` images of its own test split
    where it has one, else the permutation's tail): ``held_out_indices``."""
    return held_out_indices(len(dataset), cfg.data.held_out, cfg.study.seed, getattr(dataset, "n_test", 0))
