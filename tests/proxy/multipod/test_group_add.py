"""Adding a replica group online, through real processes: three `miroir-proxy` pods on one
redis-server, group `g0` of two devnodes (RF=2, S=8), and two empty devnodes that become
group `g1` through `POST /_miroir/groups`.

What is checked is what a user sees: the operation's progress and end state, which group
served searches (`miroir_group_reads_total` on every pod), and the documents every node
holds at the end, compared with what the writer's acknowledged writes say they must be.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import LocalNodes, NodeProcess, ProxyProcess
from miroir_proxy.core.hashing import shard_of

from .conftest import COORDINATION, MASTER_KEY, NODE_KEY, eventually, hints_replayed, http, ok

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SHARDS = 8
INDEX = "books"
OPERATION_DEADLINE_S = 300.0


def _settings(docs_per_s: int) -> dict[str, Any]:
    return {
        "health": {"interval_ms": 200, "timeout_ms": 1_000, "unhealthy_after": 3},
        "timeouts": {"node_connect_ms": 500, "task_node_deadline_ms": 5_000},
        "coordination": COORDINATION,
        "operations": {
            "ack_timeout_ms": 20_000,
            "copy_page_size": 200,
            "copy_docs_per_s": docs_per_s,
        },
    }


class Cluster:
    def __init__(self, fleet: DevCluster, spare: LocalNodes) -> None:
        self.fleet = fleet
        self.spare = spare
        self._turn = itertools.count()

    @property
    def url(self) -> str:
        """A pod, round robin over the live ones."""
        live = [p for p in self.fleet.proxies if p.is_running and not p.is_paused]
        return live[next(self._turn) % len(live)].url

    def new_group(self) -> dict[str, Any]:
        return {
            "id": "g1",
            "nodes": [{"id": f"s{i}", "url": n.url} for i, n in enumerate(self.spare.nodes)],
        }

    def groups(self) -> dict[str, list[NodeProcess]]:
        return {"g0": self.fleet.nodes, "g1": self.spare.nodes}


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    docs_per_s = getattr(request, "param", 3_000)
    spec = ClusterSpec(
        nodes=2,
        replica_groups=1,
        replication_factor=2,
        shards=SHARDS,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=tmp_path / "cluster",
        proxy_settings=_settings(docs_per_s),
        proxies=3,
        store="redis",
    )
    fleet = DevCluster(spec)
    spare = LocalNodes(2, tmp_path / "spare", NODE_KEY)
    fleet.start()
    try:
        spare.start()
        yield Cluster(fleet, spare)
    finally:
        spare.stop()
        fleet.stop()


def wait_task(url: str, uid: int) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(ok(http("GET", f"{url}/tasks/{uid}")))
        return found["status"] in ("succeeded", "failed", "canceled")

    eventually(finished, f"task {uid} finishes", timeout_s=120)
    return found


def load(cluster: Cluster, count: int) -> dict[str, dict[str, Any]]:
    url = cluster.url
    ok(http("POST", f"{url}/indexes", json={"uid": INDEX, "primaryKey": "id"}), 202)
    expected = {}
    for start in range(0, count, 1_000):
        batch = [document(i, 0) for i in range(start, min(count, start + 1_000))]
        task = ok(http("POST", f"{url}/indexes/{INDEX}/documents", json=batch), 202)
        assert wait_task(url, task["taskUid"])["status"] == "succeeded"
        expected.update((str(d["id"]), d) for d in batch)
    return expected


def document(i: int, version: int) -> dict[str, Any]:
    # Words spread over few documents each: the devnode's search time grows fast with
    # words that every document holds.
    return {"id": i, "title": f"t{i % 997} u{i % 13}", "version": version, "shelf": i % 17}


class Writer(threading.Thread):
    """Adds, updates and deletes documents through the pods until stopped; keeps what
    every acknowledged (succeeded) write says the index must hold.

    A write whose task failed may still have reached some replicas (Miroir does not undo
    what a node applied), so its documents are `uncertain` until a later write succeeds on
    them: the checks leave those out."""

    def __init__(self, cluster: Cluster, expected: dict[str, dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.expected = expected
        self.uncertain: set[str] = set()
        self.stop = threading.Event()
        self.rounds = 0
        self.failure: BaseException | None = None
        self._next_id = 10**6
        self._rng = random.Random(7)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self._round()
        except BaseException as e:  # reported by the test
            self.failure = e

    def _round(self) -> None:
        existing = list(self.expected)
        updates = [
            document(int(k), self.expected[k]["version"] + 1)
            for k in self._rng.sample(existing, 20)
        ]
        added = [document(self._next_id + i, 0) for i in range(20)]
        self._next_id += 20
        written = [*updates, *added]
        if self._apply("POST", f"/indexes/{INDEX}/documents", written, [d["id"] for d in written]):
            self.expected.update((str(d["id"]), d) for d in written)
        gone = self._rng.sample(list(self.expected), 5)
        if self._apply("POST", f"/indexes/{INDEX}/documents/delete-batch", gone, gone):
            for key in gone:
                del self.expected[key]
        self.rounds += 1

    def _apply(self, method: str, path: str, body: Any, ids: list[Any]) -> bool:
        """Send the write, wait for its task; True when it succeeded. Either way, what it
        touched is settled (succeeded) or uncertain (failed)."""
        succeeded = self._send(method, path, body)
        keys = {str(i) for i in ids}
        if succeeded:
            self.uncertain -= keys
        else:
            self.uncertain |= keys
        return succeeded

    def _send(self, method: str, path: str, body: Any) -> bool:
        """Send until a pod accepts it (a write can be refused while a node is down), then
        wait for its task; True when it succeeded."""
        for _ in range(600):
            if self.stop.is_set():
                return False
            url = self.cluster.url
            try:
                response = http(method, url + path, json=body)
            except requests.RequestException:
                continue
            if response.status_code == 202:
                task = self._finished(response.json()["taskUid"])
                return bool(task["status"] == "succeeded")
            self.stop.wait(0.2)  # a pod down, or no quorum for a while: try again
        raise AssertionError("no pod accepted a write for two minutes")

    def _finished(self, uid: int) -> dict[str, Any]:
        """Task `uid` once finished, asked of any live pod (one may be killed meanwhile)."""
        found: dict[str, Any] = {}

        def finished() -> bool:
            try:
                response = http("GET", f"{self.cluster.url}/tasks/{uid}")
            except requests.RequestException:
                return False
            found.update(ok(response))
            return found["status"] in ("succeeded", "failed", "canceled")

        eventually(finished, f"task {uid} finishes", timeout_s=120)
        return found


def group_documents(nodes: list[NodeProcess]) -> dict[str, list[dict[str, Any]]]:
    """Every document each node of a group holds, by id (one entry per copy)."""
    held: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        offset = 0
        while True:
            page = ok(
                http(
                    "POST",
                    f"{node.url}/indexes/{INDEX}/documents/fetch",
                    key=NODE_KEY,
                    json={"offset": offset, "limit": 1_000},
                )
            )["results"]
            for doc in page:
                held.setdefault(str(doc["id"]), []).append(doc)
            offset += len(page)
            if len(page) < 1_000:
                break
    return held


def assert_group_holds(
    nodes: list[NodeProcess],
    expected: dict[str, dict[str, Any]],
    copies_each: int = 2,
    uncertain: Iterable[str] = (),
) -> None:
    skip = set(uncertain)
    held = {k: v for k, v in group_documents(nodes).items() if k not in skip}
    expected = {k: v for k, v in expected.items() if k not in skip}
    missing, extra = set(expected) - set(held), set(held) - set(expected)
    assert not missing and not extra, (
        f"missing {sorted(missing)[:5]}, extra {[held[k] for k in sorted(extra)[:3]]}"
    )
    for key, copies in held.items():
        assert len(copies) == copies_each, f"document {key} has {len(copies)} copies"
        for copy in copies:
            assert copy["_miroir_shard"] == shard_of(key, SHARDS)
            content = {k: v for k, v in copy.items() if not k.startswith("_miroir_")}
            assert content == expected[key], (key, content, expected[key])


def group_reads(proxies: list[ProxyProcess]) -> dict[str, float]:
    """`miroir_group_reads_total` summed over the running pods."""
    totals: dict[str, float] = {}
    for proxy in proxies:
        if not proxy.is_running:
            continue
        text = requests.get(f"{proxy.metrics_url}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("miroir_group_reads_total{"):
                group = line.split('group="')[1].split('"')[0]
                totals[group] = totals.get(group, 0) + float(line.split()[-1])
    return totals


def operation(cluster: Cluster, op_id: str) -> dict[str, Any]:
    return ok(http("GET", f"{cluster.url}/_miroir/operations/{op_id}"))


def wait_operation(cluster: Cluster, op_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def finished() -> bool:
        try:
            seen.update(operation(cluster, op_id))
        except (requests.RequestException, AssertionError):
            return False  # a pod being restarted
        return seen["state"] != "running"

    eventually(finished, f"operation {op_id} finishes", timeout_s=OPERATION_DEADLINE_S)
    return seen


def in_sync_phase(cluster: Cluster, op_id: str, synced_at_least: int = 1) -> bool:
    response = http("GET", f"{cluster.url}/_miroir/groups/g1")
    if response.status_code == 404:
        return False  # not registered yet
    view = ok(response)
    return view["operation"]["phase"] == "sync" and view["shards"]["synced"] >= synced_at_least


def search_a_few(cluster: Cluster, count: int = 12) -> None:
    for i in range(count):
        answer = ok(http("POST", f"{cluster.url}/indexes/{INDEX}/search", json={"q": f"u{i}"}))
        assert answer["hits"], answer


def test_a_group_joins_under_writes_and_survives_a_dead_source_and_a_dead_pod(
    cluster: Cluster,
) -> None:
    expected = load(cluster, 20_000)
    writer = Writer(cluster, expected)
    writer.start()
    try:
        started = ok(http("POST", f"{cluster.url}/_miroir/groups", json=cluster.new_group()), 202)
        assert started["group"] == "g1" and started["state"] == "initializing"
        op_id = started["operation"]
        eventually(lambda: in_sync_phase(cluster, op_id), "the sync copies", timeout_s=120)
        reads_before = group_reads(cluster.fleet.proxies)
        search_a_few(cluster)
        # During the sync every search is answered by group 0 alone.
        during = group_reads(cluster.fleet.proxies)
        assert during.get("g1", 0) == 0
        assert during["g0"] >= reads_before.get("g0", 0) + 12

        # The pod running a chunk dies: another pod takes the chunk over from its cursor.
        busy = next(
            p
            for p in cluster.fleet.proxies
            if ok(http("GET", f"{p.url}/_miroir/coordination"))["jobsInProgress"]
        )
        busy.kill()
        # A source node dies mid-sync: chunks read from its replica elsewhere or pause.
        source = cluster.fleet.nodes[0]
        source.kill()
        eventually(lambda: in_sync_phase(cluster, op_id, 3), "sync goes on", timeout_s=120)
        # Restarting reads 20,000 documents back: on a loaded machine that takes a while.
        source.start()
        source.wait_healthy(timeout_s=180)
        busy.start()
        busy.wait_ready(timeout_s=180)

        final = wait_operation(cluster, op_id)
        assert final["state"] == "succeeded", final
        assert final["error"] is None
    finally:
        writer.stop.set()
        writer.join(timeout=180)
    assert writer.failure is None, writer.failure
    assert writer.rounds >= 3
    view = ok(http("GET", f"{cluster.url}/_miroir/groups/g1"))
    assert view["state"] == "active"
    assert view["shards"] == {"total": SHARDS, "synced": SHARDS}
    assert view["documentsCopied"] >= 20_000
    # The new group holds exactly what the acknowledged writes say, mid-sync writes
    # included, and so does the source node that never died. The killed node may have
    # missed writes acknowledged while it was down (the new group could be active by
    # then): repairing a replica that missed writes is anti-entropy's job, not the sync's.
    hints_replayed(cluster.url)
    assert_group_holds(cluster.spare.nodes, expected, uncertain=writer.uncertain)
    assert_group_holds(
        [cluster.fleet.nodes[1]], expected, copies_each=1, uncertain=writer.uncertain
    )
    # Once active, round robin sends searches to the new group too.
    search_a_few(cluster)
    assert group_reads(cluster.fleet.proxies).get("g1", 0) > 0


def topology_groups(cluster: Cluster) -> dict[str, str]:
    topology = ok(http("GET", f"{cluster.url}/_miroir/topology"))
    return {group["id"]: group["state"] for group in topology["groups"]}


@pytest.mark.parametrize("cluster", [250], indirect=True)
def test_every_pod_restarted_mid_operation_and_it_completes(cluster: Cluster) -> None:
    expected = load(cluster, 3_000)
    started = ok(http("POST", f"{cluster.url}/_miroir/groups", json=cluster.new_group()), 202)
    op_id = started["operation"]
    eventually(lambda: in_sync_phase(cluster, op_id), "the sync copies", timeout_s=120)
    for proxy in cluster.fleet.proxies:
        proxy.kill()
    for proxy in cluster.fleet.proxies:
        proxy.start()
    for proxy in cluster.fleet.proxies:
        proxy.wait_ready()
    final = wait_operation(cluster, op_id)
    assert final["state"] == "succeeded", final
    assert topology_groups(cluster) == {"g0": "active", "g1": "active"}
    for nodes in cluster.groups().values():
        assert_group_holds(nodes, expected)


@pytest.mark.parametrize("cluster", [250], indirect=True)
def test_a_canceled_sync_leaves_the_cluster_as_it_was(cluster: Cluster) -> None:
    expected = load(cluster, 3_000)
    before = ok(http("GET", f"{cluster.url}/_miroir/topology"))
    started = ok(http("POST", f"{cluster.url}/_miroir/groups", json=cluster.new_group()), 202)
    op_id = started["operation"]
    eventually(lambda: in_sync_phase(cluster, op_id), "the sync copies", timeout_s=120)
    canceled = ok(http("POST", f"{cluster.url}/_miroir/operations/{op_id}/cancel"), 202)
    assert canceled["cancelRequested"] is True
    final = wait_operation(cluster, op_id)
    assert final["state"] == "canceled", final
    after = ok(http("GET", f"{cluster.url}/_miroir/topology"))
    assert after["groups"] == before["groups"]  # g1 gone, g0 untouched
    assert (
        http("GET", f"{cluster.url}/_miroir/groups/g1").json()["code"] == "miroir_group_not_found"
    )
    for node in cluster.spare.nodes:  # what the sync created is deleted again
        indexes = ok(http("GET", f"{node.url}/indexes", key=NODE_KEY))
        assert indexes["total"] == 0, indexes
    assert_group_holds(cluster.fleet.nodes, expected)
    # The scope is free again: the same group can be added afresh.
    again = ok(http("POST", f"{cluster.url}/_miroir/groups", json=cluster.new_group()), 202)
    assert wait_operation(cluster, again["operation"])["state"] == "succeeded"
    assert_group_holds(cluster.spare.nodes, expected)


def test_bad_requests_get_meilisearch_shaped_errors(cluster: Cluster) -> None:
    url = cluster.url

    def error(method: str, path: str, status: int, code: str, **kwargs: Any) -> str:
        response = http(method, url + path, **kwargs)
        body = response.json()
        assert (response.status_code, body["code"]) == (status, code), body
        assert set(body) == {"message", "code", "type", "link"}
        assert body["link"].endswith("#" + code)
        return str(body["message"])

    error("GET", "/_miroir/groups/nope", 404, "miroir_group_not_found")
    error("DELETE", "/_miroir/groups/nope", 404, "miroir_group_not_found")
    error("GET", "/_miroir/operations/op-nope", 404, "miroir_operation_not_found")
    error("POST", "/_miroir/operations/op-nope/cancel", 404, "miroir_operation_not_found")
    assert "`nodes`" in error("POST", "/_miroir/groups", 400, "bad_request", json={"id": "g1"})
    assert "`nodes[0]`" in error(
        "POST", "/_miroir/groups", 400, "bad_request", json={"nodes": [{"id": "x"}]}
    )
    assert "`colour`" in error(
        "POST", "/_miroir/groups", 400, "bad_request", json={"colour": 1, "nodes": []}
    )
    assert "url" in error(
        "POST", "/_miroir/groups", 400, "bad_request", json={"nodes": [{"id": "x", "url": "ftp:"}]}
    )
    taken = {"id": "g1", "nodes": [{"id": "n0", "url": cluster.spare.nodes[0].url}]}
    assert "`n0` already belongs" in error(
        "POST", "/_miroir/groups", 400, "miroir_invalid_topology", json=taken
    )
    error("DELETE", "/_miroir/groups/g0", 400, "miroir_invalid_topology")  # the last active one
    error("POST", "/_miroir/groups", 401, "missing_authorization_header", key=None, json={})
    # A node that does not answer like Meilisearch: nothing is registered.
    good = {"id": "s0", "url": cluster.spare.nodes[0].url}
    for bad in (cluster.fleet.proxy.metrics_url, "http://127.0.0.1:9"):
        body = {"id": "g1", "nodes": [good, {"id": "x1", "url": bad}]}
        assert "`x1`" in error("POST", "/_miroir/groups", 400, "miroir_invalid_node", json=body)
    assert ok(http("GET", f"{url}/_miroir/operations"))["results"] == []
    # One topology change at a time.
    first = ok(http("POST", f"{url}/_miroir/groups", json=cluster.new_group()), 202)
    for method, path in (("POST", "/_miroir/groups"), ("DELETE", "/_miroir/groups/g0")):
        body = cluster.new_group() if method == "POST" else None
        message = error(method, path, 409, "miroir_operation_in_progress", json=body)
        assert first["operation"] in message
    assert wait_operation(cluster, first["operation"])["state"] == "succeeded"
    listed = ok(http("GET", f"{url}/_miroir/operations"))["results"]
    assert [(o["id"], o["kind"], o["state"]) for o in listed] == [
        (first["operation"], "group-add", "succeeded")
    ]
    assert listed[0]["finishedAt"] >= listed[0]["startedAt"]


@pytest.mark.parametrize("cluster", [250], indirect=True)
def test_a_new_node_down_during_the_sync_never_fails_a_settings_change(cluster: Cluster) -> None:
    load(cluster, 3_000)
    started = ok(http("POST", f"{cluster.url}/_miroir/groups", json=cluster.new_group()), 202)
    op_id = started["operation"]
    eventually(lambda: in_sync_phase(cluster, op_id), "the sync copies", timeout_s=120)
    lagging = cluster.spare.nodes[1]
    lagging.kill()
    change = {"searchableAttributes": ["title"], "filterableAttributes": ["shelf"]}
    task = ok(http("PATCH", f"{cluster.url}/indexes/{INDEX}/settings", json=change), 202)
    assert wait_task(cluster.url, task["taskUid"])["status"] == "succeeded"
    lagging.start()
    lagging.wait_healthy(timeout_s=180)
    assert wait_operation(cluster, op_id)["state"] == "succeeded"
    # Before the group served searches, its nodes got the settings they had missed.
    path = f"/indexes/{INDEX}/settings"
    reference = ok(http("GET", cluster.fleet.nodes[0].url + path, key=NODE_KEY))
    assert reference["searchableAttributes"] == ["title"]
    for node in cluster.spare.nodes:
        assert ok(http("GET", node.url + path, key=NODE_KEY)) == reference
