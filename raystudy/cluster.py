"""The Ray cluster a study runs on: connecting (or starting a local Ray), checking that it can
do the work (resources, a study folder every node sees) and sizing elastic actor pools.

With ``raystudy.stages`` and ``raystudy.submit`` this is the only place that imports Ray."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from .errors import ClusterError


def ensure_ray(cfg) -> None:
    """Join the cluster a job runs on (RAY_ADDRESS; ``auto`` joins a ``ray start``ed one), or
    start a local Ray of this run's own: without an address, ``ray.init`` would join whatever
    Ray happens to run on this machine (another study's, a test's) and then refuse num_cpus."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=cfg.ray.num_cpus, include_dashboard=False)


def cluster_resources() -> dict:
    import ray

    return ray.cluster_resources()


def cluster_summary() -> dict | None:
    """The connected cluster's size for the study's provenance: alive nodes, CPUs, GPUs and
    accelerator types; None when Ray is not initialised."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        res = cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
    except Exception:  # noqa: BLE001 - provenance must never stop a study
        return None
    kinds = sorted(k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:"))
    return {"nodes": len(nodes), "cpus": res.get("CPU", 0.0), "gpus": res.get("GPU", 0.0), "accelerators": kinds}


def check_fits(what: str, cpus: float, gpus: float, wait_s: float = 0.0, poll_s: float = 2.0) -> None:
    """One worker of ``what`` must fit the cluster, or nothing would ever start.

    With ``wait_s`` (an autoscaling cluster whose worker group may be at 0 nodes) the worker's
    shape is asked of the autoscaler (``request_resources``: nothing is queued yet that would
    make it scale) and the cluster is polled until it fits, for at most ``wait_s`` seconds; the
    request is withdrawn afterwards so the cluster can shrink again once the study is done."""
    import time

    def fits(res) -> bool:
        return cpus <= res.get("CPU", 0) and gpus <= res.get("GPU", 0)

    res = cluster_resources()
    if not fits(res) and wait_s > 0:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{k: v for k, v in (("CPU", cpus), ("GPU", gpus)) if v > 0}])
        deadline = time.monotonic() + wait_s
        try:
            while not fits(res) and time.monotonic() < deadline:
                time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
                res = cluster_resources()
        finally:
            request_resources(bundles=[])
    if not fits(res):
        waited = f" after waiting {wait_s:g} s for the autoscaler" if wait_s > 0 else ""
        raise ClusterError(f"the Ray cluster ({res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU) cannot hold one "
                           f"{what} needing {cpus:g} CPU and {gpus:g} GPU{waited}; lower the config's resources or "
                           f"grow it")


def _probe(path: str, token: str, reply: str) -> tuple[str, str]:
    """On one node: does the driver's marker exist there, and can this node write beside it?"""
    p = Path(path)
    try:
        seen = p.read_text() == token
    except OSError:
        seen = False
    if seen:
        try:
            Path(reply).write_text(token)
        except OSError as e:
            return socket.gethostname(), f"cannot write there ({type(e).__name__})"
        return socket.gethostname(), ""
    return socket.gethostname(), "does not see it"


def check_shared_storage(study_dir, timeout_s: float = 120.0) -> None:
    """Every alive node must see (and write) the study folder at the same path.

    The driver writes a marker file in the study folder; one tiny task pinned to each alive
    node (zero CPUs, so a busy or CPU-less node still runs it) reads it and writes a reply
    beside it, which the driver then reads. Nothing is left behind, and a study folder this
    call had to create is removed again. Raises ``ClusterError`` naming the first node that
    fails, so a study on node-local storage fails at once instead of as a missing file
    an hour later. On a one-node cluster there is nothing to check."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return  # the driver runs on the only node: it sees what the driver sees
    study_dir = Path(study_dir).resolve()
    created = [p for p in (study_dir, *study_dir.parents) if not p.exists()]
    study_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = study_dir / f".raystudy-shared-{token[:12]}"
    replies = {n["NodeID"]: marker.with_name(f"{marker.name}-{n['NodeID'][:12]}") for n in nodes}
    try:
        marker.write_text(token)
        probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
        refs = {n["NodeID"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(marker), token, str(replies[n["NodeID"]])) for n in nodes}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        for n in nodes:
            ref, where = refs[n["NodeID"]], f"node {n.get('NodeManagerAddress', '?')} ({n['NodeID'][:8]})"
            if ref not in ready:
                raise ClusterError(f"{where} did not answer within {timeout_s:g} s whether it sees the study folder "
                                   f"{study_dir}")
            try:
                host, why = ray.get(ref)
            except ray.exceptions.RayError as e:
                raise ClusterError(f"{where} could not check the study folder {study_dir} "
                                   f"({type(e).__name__})") from None
            if not why and not _readable(replies[n["NodeID"]], token):
                why = "writes there do not reach the driver"
            if why:
                raise ClusterError(f"{where} ({host}) {why}: the study folder {study_dir} must be on storage every "
                                   f"node mounts at the same path (NFS, a mounted bucket)")
    finally:
        for p in (marker, *replies.values()):
            p.unlink(missing_ok=True)
        for p in created:  # innermost first
            try:
                p.rmdir()
            except OSError:
                break


def _readable(path: Path, token: str) -> bool:
    try:
        return path.read_text() == token
    except OSError:
        return False


def pool(workers: int, cpus: float, gpus: float = 0.0) -> dict:
    """map_batches arguments for an elastic actor pool: one actor at least, ``workers`` at most,
    so a cluster that grows (autoscaling, nodes joining) gets more actors during a stage."""
    from ray.data import ActorPoolStrategy

    return {"compute": ActorPoolStrategy(min_size=1, max_size=max(1, workers)),
            "num_cpus": cpus, "num_gpus": gpus or None}
