"""Every seed a study derives, by one rule: numpy's ``SeedSequence`` over the integers that
name what is seeded. A sample's or an item's seed is a function of what it is, never of the
batch, shard or actor it lands in, and it is stored beside it in the tables."""

from __future__ import annotations

import numpy as np

SETS = ("eval", "ref")                       # the two independent sample sets of a (K, seed)
ITEM_KINDS = ("sample", "train", "held-out")  # what the basins and energy stages measure
_RUN_SALT = 0x7EA1


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
        return derive(study_seed, k, seed, _RUN_SALT, twin, words=1)
    return derive(study_seed, k, seed, _RUN_SALT, words=1)


def sample_seed(study_seed: int, k: int, seed: int, set_name: str, i: int) -> int:
    """Sample i of set ``set_name`` of model (K, seed): its initial noise and every step's noise."""
    return derive(study_seed, k, seed, SETS.index(set_name), i)


def item_seed(study_seed: int, k: int, seed: int, kind: str, item_id: int, salt: int) -> int:
    """A basins/energy item: its noisings (``salt`` keeps the two stages' draws apart)."""
    return derive(study_seed, k, seed, ITEM_KINDS.index(kind), int(item_id), salt)
