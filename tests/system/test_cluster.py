"""Fault tolerance on a real multi-node Ray cluster on this one machine: a worker node lost
mid-training, the driver SIGKILLed mid-generate and mid-knn, and a node that cannot see the
study folder."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, TINY

pytestmark = pytest.mark.cluster

BIN = Path(sys.executable).parent


@pytest.fixture
def no_ray(monkeypatch):
    """These tests start their own clusters: none of the session's local Ray, and no token
    auth (the in-process head and `ray start` workers must agree)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield
    ray.shutdown()


def _hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for d in ("models", "tables") if (root / d).exists()
                  for p in (root / d).rglob(".*"))


# -- (a) a worker node dies after its trial's first checkpoint ------------------------------

def _crash(cluster, node) -> None:
    """The node's machine is gone: every process on it (raylet, the trial's worker, whatever
    it was writing) is SIGKILLed at once, then the node is removed without draining."""
    import psutil

    for infos in node.all_processes.values():
        for info in infos:
            try:
                for p in psutil.Process(info.process.pid).children(recursive=True):
                    p.kill()
            except psutil.NoSuchProcess:
                pass
    cluster.remove_node(node, allow_graceful=False)


def test_lost_worker_node_resumes_its_trial_from_the_checkpoint(tmp_path, no_ray):
    """The driver is its own process, as a user's is: a test process that has already run a
    local Ray (the rest of this suite) has Tune's trial actors cancelled on a second cluster
    (Ray 2.60: "all references to the actor were removed"), which is not what a user meets."""
    from ray.cluster_utils import Cluster

    from raystudy.config import load_config

    # Head: no CPU, so both trials land on the two 1-CPU workers; fast failure detection.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
                                          "health_check_initial_delay_ms": 0}})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        cluster.wait_for_nodes()
        # ~300 steps per run, a checkpoint every 4 steps: long enough to lose a node mid-run.
        sets = ["train.images=19200", "train.checkpoint_every=256", "train.max_failures=3", "train.cpus_per_trial=1"]
        cfg = load_config(TINY, sets)
        study = tmp_path / "study"
        states = [study / "models" / f".state-K{k}-s0.pt" for k in cfg.ks]
        cmd = [str(BIN / "raystudy"), "run", str(TINY), "--study", str(study), "--only", "train",
               *(a for s in sets for a in ("--set", s))]
        env = {**os.environ, "RAY_ADDRESS": cluster.address, "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None and not all(p.exists() for p in states):
            time.sleep(0.2)
        assert all(p.exists() for p in states), proc.communicate()[0].decode()[-4000:]
        _crash(cluster, workers[0])
        out = proc.communicate(timeout=900)[0].decode()
        retried = proc.returncode != 0
        if retried:
            # Tune may give up on the lost node's trial before the cluster has noticed the node
            # is gone; the user's remedy is to run again, which resumes from the state files.
            assert "training did not finish" in out, out[-4000:]
            again = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
            assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]

        import json

        recs = {k: json.loads((study / "models" / f"K{k}-s0" / "run.json").read_text()) for k in cfg.ks}
        resumed = [k for k, r in recs.items() if r["resumed_from_step"] > 0]
        # The trial on the lost node, and only it (after a retry the other may have resumed too).
        assert len(resumed) == 1 or (retried and len(resumed) >= 1), recs
        total = -(-cfg.train.images // cfg.train.batch_size)
        assert all(r["steps"] == total for r in recs.values())
        assert 0 < recs[resumed[0]]["resumed_from_step"] < total
        runs = pd.read_parquet(study / "tables" / "runs")
        assert sorted(zip(runs.K, runs.seed)) == [(k, 0) for k in cfg.ks]
        assert _hidden(study) == []  # no state file, no temporary part
    finally:
        cluster.shutdown()


# -- (b) the driver SIGKILLed in the middle of a streaming stage ----------------------------

DRIVER = r'''
import os, sys
from raystudy.cli import main
sys.exit(main(sys.argv[1:] + ["--set", "generate.part_size=" + os.environ["PART_ROWS"]]))
'''

# 4 units x 2 sets x 6 shards of 3 samples = 48 samples parts, 24 neighbors parts.
ARGS = ["--set", "model.type=empirical", "--set", "ks=[2, 4, 8, 16]", "--set", "generate.n_samples=18",
        "--set", "generate.steps=20", "--set", "generate.batch_size=1", "--set", "knn.batch_size=1",
        "--set", "generate.workers=2", "--set", "knn.workers=2"]
N_PARTS = {"samples": 48, "neighbors": 24}


def _driver(study: Path, tmp: Path, only=None):
    (tmp / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PART_ROWS": "3", "OMP_NUM_THREADS": "1", "RAY_TMPDIR": str(tmp),
           "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, str(tmp / "driver.py"), "run", str(TINY), "--study", str(study), *ARGS]
    return subprocess.Popen(cmd + (["--only", only] if only else []), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _ours(tmp: Path) -> list:
    """Every process this test started (the driver's Ray: GCS, raylet, workers): they carry our RAY_TMPDIR."""
    import psutil

    out = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get("RAY_TMPDIR") == str(tmp):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def _kill_all(tmp: Path) -> None:
    import psutil

    for p in _ours(tmp):
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(_ours(tmp), timeout=30)


def _parts(study: Path, table: str) -> dict:
    d = study / "tables" / table
    return {p.name: p.stat().st_mtime_ns for p in d.glob("part-*.parquet")} if d.exists() else {}


def _kill_midway(study: Path, tmp: Path, table: str) -> dict:
    """Run the study; SIGKILL the driver once some but not all of ``table``'s parts exist."""
    proc = _driver(study, tmp)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and len(_parts(study, table)) == 0:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stdout.read().decode()[-4000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        _kill_all(tmp)  # what the driver's death leaves running (actors mid-write) is gone too
    parts = _parts(study, table)
    assert 0 < len(parts) < N_PARTS[table], (len(parts), proc.stdout.read().decode()[-3000:])
    return parts


def _rerun(study: Path, tmp: Path) -> str:
    proc = _driver(study, tmp)
    try:
        out, _ = proc.communicate(timeout=900)
    finally:
        _kill_all(tmp)
    out = out.decode()
    assert proc.returncode == 0, out[-4000:]
    return out


def _check_tables(study: Path) -> None:
    from raystudy.splits import sample_seed

    n, ks = 18, [2, 4, 8, 16]
    s = pd.read_parquet(study / "tables" / "samples", columns=["K", "seed", "set", "sample_id", "sample_seed"])
    assert len(s) == len(ks) * 2 * n and not s.duplicated(["K", "seed", "set", "sample_id"]).any()
    for (k, st), g in s.groupby(["K", "set"]):
        assert sorted(g.sample_id) == list(range(n))
        assert all(sample_seed(0, k, 0, st, i) == x for i, x in zip(g.sample_id, g.sample_seed))
    nb = pd.read_parquet(study / "tables" / "neighbors")
    assert len(nb) == len(ks) * n and not nb.duplicated(["metric", "K", "seed", "sample_id"]).any()
    assert all(sorted(g.sample_id) == list(range(n)) for _, g in nb.groupby("K"))
    assert len(pd.read_parquet(study / "tables" / "labels")) == len(ks) * n
    assert _hidden(study) == []
    assert sorted(_parts(study, "samples")) == sorted(
        f"part-K{k}-s0-{st}-{i:05d}.parquet" for k in ks for st in ("eval", "ref") for i in range(6))


def test_driver_killed_in_each_streaming_stage_resumes_without_rewriting_finished_parts(tmp_path):
    """One study, three drivers: the first SIGKILLed inside generate, the second (which finishes
    generate) inside knn, the third finishes. Each finished part stays as it was written."""
    tmp = Path(tempfile.mkdtemp(prefix="rk-", dir="/tmp"))  # Ray's socket paths must stay short
    study = tmp_path / "study"
    try:
        generated = _kill_midway(study, tmp, "samples")
        searched = _kill_midway(study, tmp, "neighbors")
        samples = _parts(study, "samples")
        assert len(samples) == N_PARTS["samples"] and {p: samples[p] for p in generated} == generated
        out = _rerun(study, tmp)
        assert "[generate] complete, skipped" in out and "[knn] " in out and "to do (missing)" in out, out[-3000:]
        after = _parts(study, "neighbors")
        assert {p: after[p] for p in searched} == searched
        assert _parts(study, "samples") == samples  # generate had finished: nothing redone
        _check_tables(study)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


# -- (c) a node that cannot see the study folder ---------------------------------------------

NODE = r'''
import sys, time
from ray._private.node import Node
from ray._private.parameter import RayParams

p = RayParams(gcs_address=sys.argv[1], num_cpus=1, num_gpus=0, object_store_memory=150 * 1024 * 1024,
              min_worker_port=0, max_worker_port=0, include_log_monitor=False, node_manager_port=0)
p.dashboard_agent_listen_port = None
Node(p, head=False, shutdown_at_exit=True, spawn_reaper=True)
while True:
    time.sleep(1)
'''


def test_a_node_that_cannot_see_the_study_folder_is_one_line_before_any_work(tmp_path, no_ray):
    import ray
    from ray.cluster_utils import Cluster

    from raystudy.cluster import check_shared_storage
    from raystudy.errors import ClusterError

    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -m` (root) to give a node its own view of the file system")
    hidden = tmp_path / "shared"
    hidden.mkdir()
    study = hidden / "deep" / "study"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    node = None
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        check_shared_storage(study)  # two nodes, one file system: fine
        assert not hidden.joinpath("deep").exists()  # and nothing left behind
        # A third node whose mount namespace has an empty tmpfs over the study's parent:
        # the same path, another file system (a node without the NFS mount).
        # (Started as Cluster.add_node starts one: `ray start --address` picks fixed agent ports,
        # which collide with the other nodes on this one machine.)
        (tmp_path / "node.py").write_text(NODE)
        node = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs tmpfs {hidden} && exec {sys.executable} {tmp_path / 'node.py'} {cluster.address}"],
            env={**os.environ, "RAY_AUTH_MODE": "disabled"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.time() + 180
        while sum(n["Alive"] for n in ray.nodes()) < 3:
            assert node.poll() is None, node.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "the unshared node never joined"
            time.sleep(1)
        study.mkdir(parents=True)
        (study / "config.yaml").write_text("kept\n")
        with pytest.raises(ClusterError, match="does not see it: the study folder .* must be on storage every "
                                               "node mounts") as e:
            check_shared_storage(study)
        assert "\n" not in str(e.value)
        assert sorted(p.name for p in study.iterdir()) == ["config.yaml"]  # no marker left
    finally:
        if node is not None:
            os.killpg(node.pid, signal.SIGTERM)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
        ray.shutdown()
        cluster.shutdown()



# -- GPU packing: a fractional GPU per trial ---------------------------------------------------

