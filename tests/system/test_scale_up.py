"""A study on an autoscaling cluster whose worker group is at 0 nodes: the resource check asks
the autoscaler for one worker's shape and waits (bounded) for the node instead of failing at
once. A real Ray cluster on this machine; the autoscaler is a stand-in that, like Ray's, reads
the resource request from the GCS and starts a node that satisfies it."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DRIVER = r'''
import json, sys, threading, time
import ray
from ray.cluster_utils import Cluster
from ray.experimental.internal_kv import _internal_kv_get
from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
from raystudy.errors import ClusterError
from raystudy.cluster import check_fits

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
ray.init(address=cluster.address)
seen, out = [], {}

def study():
    try:
        check_fits("training trial", 2, 0, wait_s=float(sys.argv[1]), poll_s=0.5)
        out["fits_at"] = time.monotonic()
    except ClusterError as e:
        out["error"] = str(e)

# The study's check in a thread; the stand-in autoscaler in the main thread (Ray starts nodes
# only from there): it starts a node only for a request that asks for one, as Ray's does.
t = threading.Thread(target=study)
t.start()
while t.is_alive():
    req = json.loads(_internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL) or b"[]")
    if req and not seen:
        seen.append(req)
        time.sleep(1.0)  # a node takes a while to boot
        out["node_started_at"] = time.monotonic()  # add_node returns once the node has joined
        cluster.add_node(num_cpus=max(int(b.get("CPU", 0)) for b in req))
    time.sleep(0.2)
t.join()
out["request"] = seen[0] if seen else None
out["request_after"] = json.loads(_internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL) or b"null")
out["cpus"] = ray.cluster_resources().get("CPU")
t0 = time.monotonic()
try:
    check_fits("generate worker", 64, 0, wait_s=2.0, poll_s=0.5)
except ClusterError as e:
    out["too_big"], out["too_big_s"] = str(e), time.monotonic() - t0
print("RESULT " + json.dumps(out))
ray.shutdown()
cluster.shutdown()
'''


def _drive(wait_s: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    # Its own cluster in its own process, without token auth (Ray caches the auth mode per
    # process, and the in-process head and added node must agree).
    env.update(RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    p = subprocess.run([sys.executable, "-c", DRIVER, str(wait_s)], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert p.returncode == 0 and line, (p.stdout + p.stderr)[-4000:]
    return json.loads(line[len("RESULT "):])


@pytest.mark.cluster
def test_resource_check_waits_for_the_autoscaler_to_add_a_node():
    r = _drive(wait_s=120)
    assert "error" not in r, r
    # What the autoscaler was asked for: exactly one trial's shape, withdrawn once it fits.
    assert r["request"] == [{"CPU": 2}] and r["request_after"] == []
    # The check returned because the node came, not because its wait ran out (events, not windows).
    assert r["cpus"] == 3 and r["fits_at"] >= r["node_started_at"]
    # Bounded: a worker no node type could hold fails after the wait, in one line that says so.
    assert "cannot hold one generate worker needing 64 CPU" in r["too_big"] and "after waiting 2 s" in r["too_big"]
    assert r["too_big_s"] >= 2.0 and "\n" not in r["too_big"]
