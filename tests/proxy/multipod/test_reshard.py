"""Online resharding through real processes: three `miroir-proxy` pods on one redis-server
over two replica groups of two devnodes (RF=1), an index of 4,000 documents resharded from
16 to 32 shards while a writer changes it and a searcher counts it.

What is checked is what a client sees (every search complete, the documents listed and
counted once each, filters and sorts after the flip, the index's name unchanged in
`GET /indexes` and tasks) and what the nodes hold at the end: each document once per
group, tagged with its shard under the new count, and no trace of the other index.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import NodeProcess, ProxyProcess
from miroir_proxy.core.hashing import shard_of

from .conftest import COORDINATION, MASTER_KEY, NODE_KEY, eventually, http, ok
from .test_group_add import INDEX, Writer, load, wait_operation, wait_task

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BEFORE = 16
AFTER = 32
DOCUMENTS = 4_000


class Cluster:
    """What the writer and the helpers of test_group_add expect of a cluster."""

    def __init__(self, fleet: DevCluster) -> None:
        self.fleet = fleet
        self._turn = 0

    @property
    def url(self) -> str:
        """A pod, round robin over the live ones."""
        live = [p for p in self.fleet.proxies if p.is_running]
        self._turn += 1
        return live[self._turn % len(live)].url


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # Each backfill chunk copies 400 documents a second, so the backfill lasts long enough
    # (seconds) to kill a pod or cancel in the middle of it.
    settings = {
        "health": {"interval_ms": 200, "timeout_ms": 1_000, "unhealthy_after": 3},
        "timeouts": {"node_connect_ms": 500, "task_node_deadline_ms": 5_000},
        "coordination": COORDINATION,
        "operations": {
            "ack_timeout_ms": 20_000,
            "copy_page_size": 100,
            "copy_docs_per_s": 400,
            "reshard_retain_s": 0,
        },
    }
    spec = ClusterSpec(
        nodes=4,
        replica_groups=2,
        replication_factor=1,
        shards=BEFORE,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=tmp_path / "cluster",
        proxy_settings=settings,
        proxies=3,
        store="redis",
    )
    fleet = DevCluster(spec)
    fleet.start()
    try:
        yield Cluster(fleet)
    finally:
        fleet.stop()


def prepare(cluster: Cluster) -> dict[str, dict[str, Any]]:
    url = cluster.url
    expected = load(cluster, DOCUMENTS)
    body = {
        "filterableAttributes": ["shelf"],
        "sortableAttributes": ["id"],
        "pagination": {"maxTotalHits": 100_000},  # counts exact past 1,000
    }
    task = ok(http("PATCH", f"{url}/indexes/{INDEX}/settings", json=body), 202)
    assert wait_task(url, task["taskUid"])["status"] == "succeeded"
    return expected


def total(cluster: Cluster, **query: Any) -> int:
    answer = ok(
        http("POST", f"{cluster.url}/indexes/{INDEX}/search", json={"q": "", **query, "limit": 0})
    )
    return int(answer["estimatedTotalHits"])


class Searcher(threading.Thread):
    """Counts the index through the pods until stopped. The writer adds at most 20
    documents and deletes at most 5 per acknowledged step, so a complete count lies within
    those margins of the sizes its acknowledged writes gave before and after the search."""

    def __init__(self, cluster: Cluster, expected: dict[str, dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.expected = expected
        self.stop = threading.Event()
        self.searches = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            before = len(self.expected)
            try:
                response = http(
                    "POST",
                    f"{self.cluster.url}/indexes/{INDEX}/search",
                    json={"q": "", "limit": 0},
                )
            except requests.RequestException:
                continue  # a pod being killed
            after = len(self.expected)
            if response.status_code != 200:
                self.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                continue
            found = response.json()["estimatedTotalHits"]
            if not min(before, after) - 5 <= found <= max(before, after) + 20:
                self.failures.append(f"{found} documents counted, {before}..{after} held")
            self.searches += 1


def phase(cluster: Cluster, op_id: str) -> tuple[str, int]:
    seen = ok(http("GET", f"{cluster.url}/_miroir/operations/{op_id}"))
    assert seen["state"] == "running", f"the operation ended before it was interrupted: {seen}"
    return str(seen["phase"]), int(seen["progress"]["done"])


def backfilling(cluster: Cluster, op_id: str) -> bool:
    now, done = phase(cluster, op_id)
    return now == "backfill" and done >= 1


def node_indexes(node: NodeProcess) -> list[str]:
    listed = ok(http("GET", f"{node.url}/indexes", key=NODE_KEY, params={"limit": 100}))
    return sorted(str(i["uid"]) for i in listed["results"])


def node_documents(node: NodeProcess, uid: str) -> list[dict[str, Any]]:
    held: list[dict[str, Any]] = []
    while True:
        page = ok(
            http(
                "POST",
                f"{node.url}/indexes/{uid}/documents/fetch",
                key=NODE_KEY,
                json={"offset": len(held), "limit": 1_000},
            )
        )["results"]
        held.extend(page)
        if len(page) < 1_000:
            return held


def listed(cluster: Cluster) -> list[dict[str, Any]]:
    """Every document of the index as a client lists it."""
    found: list[dict[str, Any]] = []
    while True:
        page = ok(
            http(
                "GET",
                f"{cluster.url}/indexes/{INDEX}/documents",
                params={"offset": len(found), "limit": 1_000},
            )
        )["results"]
        found.extend(page)
        if len(page) < 1_000:
            return found


def assert_serves(cluster: Cluster, expected: dict[str, dict[str, Any]]) -> None:
    documents = listed(cluster)
    ids = [str(d["id"]) for d in documents]
    assert len(ids) == len(set(ids)), "a document is listed twice"
    assert set(ids) == set(expected)
    assert {str(d["id"]): d for d in documents} == expected
    stats = ok(http("GET", f"{cluster.url}/indexes/{INDEX}/stats"))
    assert stats["numberOfDocuments"] == len(expected)
    assert total(cluster) == len(expected)


def test_reshard_under_writes_survives_a_killed_pod_and_keeps_the_name(cluster: Cluster) -> None:
    expected = prepare(cluster)
    writer = Writer(cluster, expected)
    searcher = Searcher(cluster, expected)
    writer.start()
    searcher.start()
    try:
        started = ok(
            http("POST", f"{cluster.url}/_miroir/indexes/{INDEX}/reshard", json={"shards": AFTER}),
            202,
        )
        op_id = started["operation"]
        assert started["previousShards"] == BEFORE
        view = ok(http("GET", f"{cluster.url}/_miroir/indexes/{INDEX}"))
        assert view["shards"] == BEFORE and view["reshard"]["toShards"] == AFTER
        # Another topology change waits for this one.
        busy = http("POST", f"{cluster.url}/_miroir/indexes/{INDEX}/reshard", json={"shards": 8})
        assert busy.status_code == 409 and busy.json()["code"] == "miroir_operation_in_progress"

        eventually(lambda: backfilling(cluster, op_id), "the backfill copies", timeout_s=120)
        # The pod running a backfill chunk dies: another pod resumes the chunk.
        busy: list[ProxyProcess] = []

        def chunk_running() -> bool:
            assert phase(cluster, op_id)[0] == "backfill", "the backfill ended first"
            busy[:] = [
                p
                for p in cluster.fleet.proxies
                if ok(http("GET", f"{p.url}/_miroir/coordination"))["jobsInProgress"]
            ]
            return bool(busy)

        eventually(chunk_running, "a pod runs a backfill chunk")
        running = busy[0]
        running.kill()
        final = wait_operation(cluster, op_id)
        assert final["state"] == "succeeded", final
        assert final["progress"]["documentsCopied"] >= DOCUMENTS
        running.start()
        running.wait_ready(timeout_s=180)
    finally:
        writer.stop.set()
        searcher.stop.set()
        writer.join(timeout=180)
        searcher.join(timeout=60)
    assert writer.failure is None, writer.failure
    assert writer.rounds >= 3
    assert searcher.searches >= 20
    assert not searcher.failures, searcher.failures[:5]

    view = ok(http("GET", f"{cluster.url}/_miroir/indexes/{INDEX}"))
    assert view["uid"] == INDEX and view["shards"] == AFTER and view["reshard"] is None
    assert_serves(cluster, expected)
    # Filters and sorts work on the new shards.
    shelf = [d for d in expected.values() if d["shelf"] == 3]
    assert total(cluster, filter="shelf = 3") == len(shelf)
    first = ok(
        http(
            "POST",
            f"{cluster.url}/indexes/{INDEX}/search",
            json={"q": "", "sort": ["id:desc"], "limit": 5, "filter": "shelf = 3"},
        )
    )
    assert [h["id"] for h in first["hits"]] == sorted((d["id"] for d in shelf), reverse=True)[:5]

    # Clients still see the name they created, never the new index's uid on the nodes.
    indexes = ok(http("GET", f"{cluster.url}/indexes"))
    assert [i["uid"] for i in indexes["results"]] == [INDEX]
    assert list(ok(http("GET", f"{cluster.url}/stats"))["indexes"]) == [INDEX]
    assert ok(http("GET", f"{cluster.url}/indexes/{INDEX}"))["uid"] == INDEX
    task = ok(http("POST", f"{cluster.url}/indexes/{INDEX}/documents", json=[{"id": 10**9}]), 202)
    assert wait_task(cluster.url, task["taskUid"])["indexUid"] == INDEX
    tasks = ok(http("GET", f"{cluster.url}/tasks", params={"limit": 1000}))["results"]
    assert {t["indexUid"] for t in tasks} == {INDEX}
    expected[str(10**9)] = {"id": 10**9}

    # Multi-search and aliases know the name too; the hidden uid is no index to clients.
    multi = {"queries": [{"indexUid": INDEX, "q": "", "limit": 0}]}
    (answer,) = ok(http("POST", f"{cluster.url}/multi-search", json=multi))["results"]
    assert answer["indexUid"] == INDEX and answer["estimatedTotalHits"] == len(expected)
    alias = {"name": "shelves", "target": INDEX}
    ok(http("POST", f"{cluster.url}/_miroir/aliases", json=alias), 201)
    through = ok(http("POST", f"{cluster.url}/indexes/shelves/search", json={"limit": 0}))
    assert through["estimatedTotalHits"] == len(expected)

    # On the nodes: one index (the new one), every document once per group, tagged with
    # its shard under the new count; the old index is gone.
    nodes = cluster.fleet.nodes
    concrete = {uid for node in nodes for uid in node_indexes(node)}
    assert len(concrete) == 1 and INDEX not in concrete, concrete
    (uid,) = concrete
    hidden = http("POST", f"{cluster.url}/indexes/{uid}/search", json={})
    assert hidden.status_code == 404 and hidden.json()["code"] == "index_not_found"
    for group in (nodes[:2], nodes[2:]):
        held = [d for node in group for d in node_documents(node, uid)]
        assert sorted(str(d["id"]) for d in held) == sorted(expected)
        assert all(d["_miroir_shard"] == shard_of(d["id"], AFTER) for d in held)

    # Deleted, the name is free again: a new index of that name is an ordinary one.
    task = ok(http("DELETE", f"{cluster.url}/indexes/{INDEX}"), 202)
    assert wait_task(cluster.url, task["taskUid"])["status"] == "succeeded"
    assert ok(http("GET", f"{cluster.url}/indexes"))["results"] == []
    task = ok(http("POST", f"{cluster.url}/indexes", json={"uid": INDEX, "primaryKey": "id"}), 202)
    assert wait_task(cluster.url, task["taskUid"])["status"] == "succeeded"
    assert ok(http("GET", f"{cluster.url}/_miroir/indexes/{INDEX}"))["shards"] == BEFORE
    assert all(node_indexes(node) == [INDEX] for node in nodes)


def test_a_reshard_canceled_mid_backfill_leaves_the_index_as_it_was(cluster: Cluster) -> None:
    expected = prepare(cluster)
    op_id = ok(
        http("POST", f"{cluster.url}/_miroir/indexes/{INDEX}/reshard", json={"shards": AFTER}),
        202,
    )["operation"]
    eventually(lambda: backfilling(cluster, op_id), "the backfill copies", timeout_s=120)
    # Each node holds the shadow now, partly filled.
    assert all(len(node_indexes(node)) == 2 for node in cluster.fleet.nodes)
    # Clients do not see it.
    (shadow,) = set(node_indexes(cluster.fleet.nodes[0])) - {INDEX}
    hidden = http("POST", f"{cluster.url}/indexes/{shadow}/search", json={})
    assert hidden.status_code == 404 and hidden.json()["code"] == "index_not_found"
    assert [i["uid"] for i in ok(http("GET", f"{cluster.url}/indexes"))["results"]] == [INDEX]
    ok(http("POST", f"{cluster.url}/_miroir/operations/{op_id}/cancel"), 202)
    final = wait_operation(cluster, op_id)
    assert final["state"] == "canceled", final

    view = ok(http("GET", f"{cluster.url}/_miroir/indexes/{INDEX}"))
    assert view["shards"] == BEFORE and view["reshard"] is None
    assert ok(http("GET", f"{cluster.url}/_miroir/topology")).get("reshards") is None
    for node in cluster.fleet.nodes:
        assert node_indexes(node) == [INDEX]  # the shadow is deleted on every node
    assert_serves(cluster, expected)
    assert [i["uid"] for i in ok(http("GET", f"{cluster.url}/indexes"))["results"]] == [INDEX]


def test_bad_reshard_requests_get_meilisearch_shaped_errors(cluster: Cluster) -> None:
    url = cluster.url
    ok(http("POST", f"{url}/indexes", json={"uid": INDEX, "primaryKey": "id"}), 202)

    def error(path: str, body: Any, status: int, code: str) -> None:
        response = http("POST", f"{url}{path}", json=body)
        assert response.status_code == status, response.text
        answer = response.json()
        assert answer["code"] == code and set(answer) == {"message", "code", "type", "link"}

    error(f"/_miroir/indexes/{INDEX}/reshard", {"shards": 0}, 400, "bad_request")
    error(f"/_miroir/indexes/{INDEX}/reshard", {"shards": "8"}, 400, "bad_request")
    error(f"/_miroir/indexes/{INDEX}/reshard", {"shards": 8, "x": 1}, 400, "bad_request")
    error(f"/_miroir/indexes/{INDEX}/reshard", {"shards": BEFORE}, 400, "bad_request")
    error("/_miroir/indexes/nope/reshard", {"shards": 8}, 404, "index_not_found")
    response = http("POST", f"{url}/_miroir/indexes/{INDEX}/reshard", key=None, json={})
    assert response.status_code == 401
    assert http("GET", f"{url}/_miroir/indexes/nope").json()["code"] == "index_not_found"


def test_a_cancel_while_the_old_index_is_kept_flips_back_without_losing_writes(
    cluster: Cluster,
) -> None:
    expected = prepare(cluster)
    body = {"shards": AFTER, "retainS": 300}
    op_id = ok(http("POST", f"{cluster.url}/_miroir/indexes/{INDEX}/reshard", json=body), 202)[
        "operation"
    ]
    eventually(lambda: phase(cluster, op_id)[0] == "retain", "the reshard flips", timeout_s=120)
    view = ok(http("GET", f"{cluster.url}/_miroir/indexes/{INDEX}"))
    assert view["shards"] == AFTER and view["reshard"]["phase"] == "retain"
    # Written after the flip: the old index, kept for a rollback, gets it too.
    late = [{"id": 10**9 + i, "title": "late", "version": 0, "shelf": 1} for i in range(30)]
    task = ok(http("POST", f"{cluster.url}/indexes/{INDEX}/documents", json=late), 202)
    assert wait_task(cluster.url, task["taskUid"])["status"] == "succeeded"
    gone = [str(i) for i in range(10)]
    task = ok(http("POST", f"{cluster.url}/indexes/{INDEX}/documents/delete-batch", json=gone), 202)
    assert wait_task(cluster.url, task["taskUid"])["status"] == "succeeded"
    expected.update((str(d["id"]), d) for d in late)
    for key in gone:
        del expected[key]

    ok(http("POST", f"{cluster.url}/_miroir/operations/{op_id}/cancel"), 202)
    assert wait_operation(cluster, op_id)["state"] == "canceled"
    view = ok(http("GET", f"{cluster.url}/_miroir/indexes/{INDEX}"))
    assert view["shards"] == BEFORE and view["reshard"] is None
    for node in cluster.fleet.nodes:
        assert node_indexes(node) == [INDEX]
    assert_serves(cluster, expected)
