"""The little Ray glue shared by the stages: connecting, and turning a stream of
Ray Data batches into whole (K, seed) groups that can be written as parts."""

from __future__ import annotations

import os
from typing import Callable, Iterable

import numpy as np


def ensure_ray(cfg) -> None:
    """Join the cluster a job runs on (RAY_ADDRESS), or start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False)


def stream_groups(batches: Iterable[dict], expected: int, on_group: Callable[[dict], None]) -> None:
    """Regroup batches by (K, seed); call ``on_group`` once a group has ``expected`` rows,
    so a long stage leaves whole parts behind if it is interrupted."""
    pending: dict[tuple[int, int], list[dict]] = {}
    for batch in batches:
        for k, s in set(zip(batch["K"].tolist(), batch["seed"].tolist())):
            rows = (batch["K"] == k) & (batch["seed"] == s)
            pending.setdefault((k, s), []).append({c: v[rows] for c, v in batch.items()})
            if sum(len(p["K"]) for p in pending[(k, s)]) == expected:
                parts = pending.pop((k, s))
                on_group({c: np.concatenate([p[c] for p in parts]) for c in parts[0]})
    if pending:
        raise RuntimeError(f"rows went missing for (K, seed) {sorted(pending)}")


def pool_size(workers: int, cpus_per_worker: float, gpus_per_worker: float = 0.0) -> int:
    """Actors that fit the cluster now: a fixed pool larger than the cluster never starts."""
    import ray

    res = ray.cluster_resources()
    fit = workers
    if cpus_per_worker > 0:
        fit = min(fit, int(res.get("CPU", 0) // cpus_per_worker))
    if gpus_per_worker > 0:
        fit = min(fit, int(res.get("GPU", 0) // gpus_per_worker))
    if fit < 1:
        raise RuntimeError(f"the Ray cluster ({res.get('CPU', 0)} CPU, {res.get('GPU', 0)} GPU) cannot hold one "
                           f"worker needing {cpus_per_worker} CPU and {gpus_per_worker} GPU")
    return fit
