"""Black-box fixtures: real `miroir-proxy` processes over real node processes (`DevCluster`).

The tests talk HTTP only, with the official SDK or `requests`, exactly as a user would; the
only inside knowledge they use is where a shard lives (`GET /_miroir/shards`) and which shard
a primary key hashes to (`core.hashing.shard_of`), to aim failures at the right nodes.

The proxy's master key is the single node's master key (`tests/conftest.py`), so keys and
tenant tokens can be compared like for like; the cluster's nodes have a key of their own.
Clusters that tests break probe often with short timeouts, so a killed node is noticed
within ~0.2 s; the shared cluster probes patiently (`STEADY`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import meilisearch
import pytest
import requests

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import NodeProcess
from miroir_proxy.core.hashing import shard_of

MASTER_KEY = "miroir-test-master-key-0123456789"
NODE_KEY = "e2e-node-master-key-0123456789"
SHARDS = 16
HTTP_TIMEOUT_S = 10
TASK_TIMEOUT_MS = 20_000
DEADLINE_S = 15.0
FAST_FAILURE: dict[str, Any] = {
    "health": {"interval_ms": 100, "timeout_ms": 300, "unhealthy_after": 1, "healthy_after": 1},
    "timeouts": {
        "node_connect_ms": 300,
        "node_read_ms": 1_500,
        "node_write_ms": 3_000,
        "task_node_deadline_ms": 3_000,
    },
}

# The shared cluster never loses a node: probes that tolerate a loaded CI machine, so that
# no node flaps unhealthy and every request of a test sees the same covering sets.
STEADY: dict[str, Any] = {
    "health": {"interval_ms": 500, "timeout_ms": 3_000, "unhealthy_after": 3},
    "timeouts": {},
}

StartClusters = Callable[..., list[DevCluster]]

# The JavaScript client's scenario needs node and `npm ci` in tests/sdk_js: `make sdk-js`.
collect_ignore = [] if os.environ.get("MIROIR_SDK_JS") == "1" else ["test_sdk_js.py"]


def cluster_spec(data_dir: Path, **settings: Any) -> ClusterSpec:
    """Six nodes, RG=2, RF=2, S=16, quick failure detection; `settings` override it."""
    return ClusterSpec(
        nodes=6,
        replica_groups=2,
        replication_factor=2,
        shards=SHARDS,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=data_dir,
        proxy_settings={**FAST_FAILURE, **settings},
    )


def start_clusters(specs: list[ClusterSpec]) -> list[DevCluster]:
    """Start several clusters at once; each is ready (every shard served) on return."""
    clusters = [DevCluster(spec) for spec in specs]
    with ThreadPoolExecutor(max_workers=len(clusters)) as pool:
        futures = [pool.submit(cluster.start) for cluster in clusters]
        errors = [f.exception() for f in futures]
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        for cluster in clusters:
            cluster.stop()
        raise failed
    return clusters


@pytest.fixture(scope="session")
def e2e_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """One cluster shared by the modules whose tests never kill nodes (each uses its own
    index uids)."""
    (cluster,) = start_clusters([cluster_spec(tmp_path_factory.mktemp("cluster"), **STEADY)])
    yield cluster
    cluster.stop()


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[StartClusters]:
    """`clusters(n, **settings)`: `n` private clusters (started in parallel) a test may break."""
    started: list[DevCluster] = []

    def start(count: int = 1, **settings: Any) -> list[DevCluster]:
        specs = [cluster_spec(tmp_path / f"c{len(started) + i}", **settings) for i in range(count)]
        new = start_clusters(specs)
        started.extend(new)
        return new

    yield start
    for cluster in started:
        cluster.stop()


def sdk(url: str, key: str = MASTER_KEY) -> meilisearch.Client:
    return meilisearch.Client(url, key, timeout=HTTP_TIMEOUT_S)


def wait_done(client: meilisearch.Client, task_uid: int) -> Any:
    return client.wait_for_task(task_uid, timeout_in_ms=TASK_TIMEOUT_MS, interval_in_ms=10)


def http(
    method: str, url: str, *, key: str | None = MASTER_KEY, **kwargs: Any
) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.request(method, url, headers=headers, timeout=HTTP_TIMEOUT_S, **kwargs)


def node_http(node: NodeProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    """Straight to one node of a cluster, with the nodes' own master key."""
    return http(method, node.url + path, key=NODE_KEY, **kwargs)


@dataclass(frozen=True)
class ShardMap:
    """Which node ids hold each shard in each group (`GET /_miroir/shards`)."""

    groups: dict[str, list[list[str]]]

    def holders(self, shard: int) -> list[str]:
        return [node for replicas in self.groups.values() for node in replicas[shard]]

    def group_nodes(self, group: str) -> set[str]:
        return {node for replicas in self.groups[group] for node in replicas}


def shard_map(cluster: DevCluster) -> ShardMap:
    answer = http("GET", f"{cluster.url}/_miroir/shards")
    assert answer.status_code == 200, answer.text
    return ShardMap(answer.json()["groups"])


def id_in_shard(shard: int, shards: int = SHARDS, start: int = 0) -> int:
    """The smallest integer primary key >= `start` that hashes to `shard`."""
    return next(i for i in range(start, start + 100 * shards) if shard_of(i, shards) == shard)


def eventually(check: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    pause = 0.01
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout_s}s: {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def proxy_sees_down(cluster: DevCluster, node_ids: set[str]) -> None:
    """Wait until the proxy's health prober marks `node_ids` unhealthy (`/_miroir/topology`)."""

    def down() -> bool:
        topology = http("GET", f"{cluster.url}/_miroir/topology").json()
        states = {n["id"]: n["health"] for g in topology["groups"] for n in g["nodes"]}
        return all(states[node] == "unhealthy" for node in node_ids)

    eventually(down, f"proxy marks {sorted(node_ids)} unhealthy")


def strip(hit: Mapping[str, Any]) -> dict[str, Any]:
    """A hit without the search-time fields that may legitimately differ."""
    return {k: v for k, v in hit.items() if k not in ("_rankingScore", "_rankingScoreDetails")}
