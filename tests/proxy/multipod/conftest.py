"""Three `miroir-proxy` processes ("pods") sharing one redis-server, over six devnodes
(RG=2, RF=2, S=16): the cluster `miroir dev up --proxies 3 --store redis` runs.

One cluster serves the whole module (each test uses its own index and job ids); a test
may kill -9 a pod, and the `pods` fixture brings every pod back before the next test.
Coordination runs on short clocks (lease TTL 1 s renewed every 0.3 s, chunk claims of 1 s,
topology polled every 0.2 s) so takeovers are measured in about a second.

The tests talk HTTP to the pods and nodes; the only other window is a Redis client on the
cluster's store, to sample lease holders and chunk claims the way an operator would
(`redis-cli`), with key names from `miroir_proxy.state.keys`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import NodeProcess, ProxyProcess
from miroir_proxy.state.keys import Keys

from ..scaffold import PLUGIN, REPO_ROOT

MASTER_KEY = "miroir-multipod-master-key-0123"
NODE_KEY = "multipod-node-master-key-0123"
HTTP_TIMEOUT_S = 10
DEADLINE_S = 15.0
LEASE_TTL_S = 1.0
LEASE_RENEW_S = 0.3
CLAIM_TTL_S = 1.0
TOPOLOGY_POLL_S = 0.2
COORDINATION: dict[str, Any] = {
    "topology_poll_ms": int(TOPOLOGY_POLL_S * 1000),
    "peer_heartbeat_ms": 200,
    "peer_ttl_ms": 1_000,
    "lease_ttl_ms": int(LEASE_TTL_S * 1000),
    "lease_renew_ms": int(LEASE_RENEW_S * 1000),
    "job_claim_ttl_ms": int(CLAIM_TTL_S * 1000),
    # One chunk per pod at a time: three pods, three chunks in flight.
    "job_concurrency": 1,
}
SETTINGS: dict[str, Any] = {
    "health": {"interval_ms": 200, "timeout_ms": 1_000, "unhealthy_after": 3},
    "timeouts": {"node_connect_ms": 500, "task_node_deadline_ms": 5_000},
    "coordination": COORDINATION,
    # A session search waits for its write behind a big backlog on a loaded machine.
    "features": {"session_wait_ms": 20_000},
    # What stands behind hinted handoff is checked here (tombstones read by another pod):
    # a replayed hint would do the repair first. Handoff's own two-pod tests: test_handoff.py.
    "handoff": {"enabled": False},
}
KEYS = Keys()

log = logging.getLogger(__name__)


def figure(name: str, value: float) -> None:
    """A measured figure, logged (`-o log_cli=true --log-cli-level=INFO` shows them)."""
    log.info("figure %s = %s", name, value)


def http(
    method: str, url: str, *, key: str | None = MASTER_KEY, **kwargs: Any
) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.request(method, url, headers=headers, timeout=HTTP_TIMEOUT_S, **kwargs)


def ok(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


def node_http(node: NodeProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    return http(method, node.url + path, key=NODE_KEY, **kwargs)


def eventually(check: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> float:
    """Poll `check` until true; returns the seconds it took."""
    started = time.monotonic()
    pause = 0.005
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"still not true after {timeout_s}s: {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return time.monotonic() - started


def wait_task(url: str, uid: int, status: str = "succeeded") -> dict[str, Any]:
    """Poll task `uid` through the pod at `url` until it is finished; assert `status`."""
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(ok(http("GET", f"{url}/tasks/{uid}")))
        return found["status"] in ("succeeded", "failed", "canceled")

    eventually(finished, f"task {uid} finishes")
    assert found["status"] == status, found
    return found


def hints_replayed(url: str) -> None:
    """Wait until no node has hints left to replay: a write acknowledged with a replica
    hinted reaches that replica only then."""

    def drained() -> bool:
        nodes = ok(http("GET", f"{url}/_miroir/hints"))["nodes"]
        return not any(entry["pending"] for entry in nodes)

    eventually(drained, "every hint replayed")


def create_index(url: str, uid: str) -> None:
    task = ok(http("POST", f"{url}/indexes", json={"uid": uid, "primaryKey": "id"}), 202)
    wait_task(url, task["taskUid"])


def node_task_total(node: NodeProcess) -> int:
    return int(ok(node_http(node, "GET", "/tasks", params={"limit": 1}))["total"])


def queue_depth_metric(proxy: ProxyProcess) -> float:
    """`miroir_background_queue_depth` as this pod's Prometheus endpoint exports it."""
    text = requests.get(f"{proxy.metrics_url}/metrics", timeout=HTTP_TIMEOUT_S).text
    for line in text.splitlines():
        if line.startswith("miroir_background_queue_depth "):
            return float(line.split()[1])
    raise AssertionError("no miroir_background_queue_depth in /metrics")


def run_fleet(data_dir: Path, store: str) -> Iterator[DevCluster]:
    """The module's cluster on `store`: "redis" (a redis-server of its own) or a store URL."""
    spec = ClusterSpec(
        nodes=6,
        replica_groups=2,
        replication_factor=2,
        shards=16,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=data_dir,
        proxy_settings=SETTINGS,
        proxies=3,
        store=store,
        plugins=(PLUGIN,),
        python_path=(REPO_ROOT,),
    )
    cluster = DevCluster(spec)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    yield from run_fleet(tmp_path_factory.mktemp("multipod"), "redis")


@pytest.fixture
def pods(fleet: DevCluster) -> DevCluster:
    """The module's cluster with all three pods running (a previous test may have killed or
    frozen one)."""
    for proxy in fleet.proxies:
        if proxy.is_paused:
            proxy.resume()
        if not proxy.is_running:
            proxy.start()
    for proxy in fleet.proxies:
        proxy.wait_ready()
    return fleet


@pytest.fixture
def store(fleet: DevCluster) -> Iterator[redis.Redis]:
    assert fleet.store_url is not None
    client = redis.Redis.from_url(fleet.store_url, decode_responses=True)
    yield client
    client.close()
