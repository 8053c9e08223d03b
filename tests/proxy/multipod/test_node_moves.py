"""Adding, draining and removing nodes online, through real processes: three
`miroir-proxy` pods on one redis-server over one group of three devnodes (RF=2, S=16),
and a spare devnode that joins through `POST /_miroir/nodes`.

Two indexes: `books`, which a writer keeps changing, and `shelf`, which nobody writes
while a searcher checks that every search returns exactly its documents, none missing and
none twice. At the end each node's documents are read directly: every document is on
exactly RF nodes of the group, those its tables name, with the content the acknowledged
writes say.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import LocalNodes, NodeProcess, ProxyProcess
from miroir_proxy.core.hashing import shard_of

from .conftest import KEYS, MASTER_KEY, NODE_KEY, eventually, hints_replayed, http, ok
from .test_group_add import INDEX, Writer, _settings, load, wait_operation

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SHARDS = 16
RF = 2
STABLE = "shelf"
STABLE_DOCS = 900  # under the default `maxTotalHits` (1000)


class Fleet:
    """What the writer and the helpers of test_group_add expect of a cluster."""

    def __init__(self, fleet: DevCluster, spare: LocalNodes) -> None:
        self.fleet = fleet
        self.spare = spare
        self._turn = 0

    @property
    def url(self) -> str:
        live = [p for p in self.fleet.proxies if p.is_running and not p.is_paused]
        self._turn += 1
        return live[self._turn % len(live)].url

    def nodes(self) -> dict[str, NodeProcess]:
        return {**self.fleet.node_ids(), "s0": self.spare.nodes[0]}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    # Chunks copy 150 documents a second each, so a move lasts long enough (seconds) for
    # the tests to kill pods in the middle of it.
    spec = ClusterSpec(
        nodes=3,
        replica_groups=1,
        replication_factor=RF,
        shards=SHARDS,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=tmp_path / "cluster",
        proxy_settings=_settings(150),
        proxies=3,
        store="redis",
    )
    cluster = DevCluster(spec)
    spare = LocalNodes(1, tmp_path / "spare", NODE_KEY)
    cluster.start()
    try:
        spare.start()
        yield Fleet(cluster, spare)
    finally:
        spare.stop()
        cluster.stop()


def load_stable(fleet: Fleet) -> set[int]:
    url = fleet.url
    ok(http("POST", f"{url}/indexes", json={"uid": STABLE, "primaryKey": "id"}), 202)
    docs = [{"id": i, "title": f"shelf item {i % 7}"} for i in range(STABLE_DOCS)]
    task = ok(http("POST", f"{url}/indexes/{STABLE}/documents", json=docs), 202)
    eventually(
        lambda: ok(http("GET", f"{url}/tasks/{task['taskUid']}"))["status"] == "succeeded",
        "the shelf is loaded",
        timeout_s=120,
    )
    return {d["id"] for d in docs}


class Searcher(threading.Thread):
    """Searches `shelf` through the pods until stopped; any answer without exactly its
    documents is kept as a failure."""

    def __init__(self, fleet: Fleet, ids: set[int]) -> None:
        super().__init__(daemon=True)
        self.fleet = fleet
        self.ids = ids
        self.stop = threading.Event()
        self.searches = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                response = http(
                    "POST",
                    f"{self.fleet.url}/indexes/{STABLE}/search",
                    json={"q": "", "limit": STABLE_DOCS + 10, "attributesToRetrieve": ["id"]},
                )
            except requests.RequestException:
                continue  # a pod being killed
            if response.status_code != 200:
                self.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                continue
            hits = [hit["id"] for hit in response.json()["hits"]]
            if len(hits) != len(set(hits)) or set(hits) != self.ids:
                missing = len(self.ids - set(hits))
                self.failures.append(f"{len(hits)} hits, {missing} missing")
            self.searches += 1


def tables(fleet: Fleet) -> list[list[str]]:
    return list(ok(http("GET", f"{fleet.url}/_miroir/shards"))["groups"]["g0"])


def assert_placed(
    fleet: Fleet,
    index: str,
    expected: dict[str, Any],
    table: list[list[str]],
    uncertain: Iterable[str] = (),
) -> None:
    """Every document of `index` on exactly the nodes its shard's row names, as expected
    (`uncertain` documents, touched by failed writes, only on nodes that own them)."""
    skip = set(uncertain)
    nodes = fleet.nodes()
    for node_id, node in nodes.items():
        if not node.is_running:
            continue
        held = group_documents_of(node, index)
        owned = {s for s, row in enumerate(table) if node_id in row}
        wrong = [k for k in held if shard_of(k, SHARDS) not in owned]
        assert not wrong, f"{node_id} holds {len(wrong)} documents of shards it does not own"
        held = {k: v for k, v in held.items() if k not in skip}
        want = {k for k in expected if shard_of(k, SHARDS) in owned and k not in skip}
        assert set(held) == want, (
            f"{node_id}: missing {sorted(want - set(held))[:5]}, "
            f"extra {sorted(set(held) - want)[:5]}"
        )
        for key, copies in held.items():
            assert len(copies) == 1
            content = {k: v for k, v in copies[0].items() if not k.startswith("_miroir_")}
            assert content == expected[key], (node_id, key, content, expected[key])


def group_documents_of(node: NodeProcess, index: str) -> dict[str, list[dict[str, Any]]]:
    """Every document of `index` on `node`, by id (none when the node lacks the index)."""
    held: dict[str, list[dict[str, Any]]] = {}
    offset = 0
    while True:
        response = http(
            "POST",
            f"{node.url}/indexes/{index}/documents/fetch",
            key=NODE_KEY,
            json={"offset": offset, "limit": 1_000},
        )
        if response.status_code == 404:
            return held
        page = ok(response)["results"]
        for doc in page:
            held.setdefault(str(doc["id"]), []).append(doc)
        offset += len(page)
        if len(page) < 1_000:
            return held


def start(fleet: Fleet, method: str, path: str, **kwargs: Any) -> str:
    started = ok(http(method, f"{fleet.url}{path}", **kwargs), 202)
    return str(started["operation"])


def copying(fleet: Fleet, op_id: str) -> bool:
    """True once the operation copies and some chunk finished; fails if it ended first."""
    seen = ok(http("GET", f"{fleet.url}/_miroir/operations/{op_id}"))
    assert seen["state"] == "running", f"the operation ended before it was interrupted: {seen}"
    return bool(seen["phase"] == "copy" and seen["progress"]["done"] >= 1)


def lease_holder(fleet: Fleet, op_id: str) -> ProxyProcess:
    """The pod holding the operation's lease (its token is the lease's value)."""
    assert fleet.fleet.store_url is not None
    client = redis.Redis.from_url(fleet.fleet.store_url, decode_responses=True)
    try:
        token = client.get(KEYS.lease(f"operation:{op_id}"))
    finally:
        client.close()
    for proxy in fleet.fleet.proxies:
        if ok(http("GET", f"{proxy.url}/_miroir/coordination"))["token"] == token:
            return proxy
    raise AssertionError(f"no pod holds the lease of {op_id} ({token!r})")


def succeeded(fleet: Fleet, op_id: str) -> None:
    final = wait_operation(fleet, op_id)
    assert final["state"] == "succeeded", final


def test_a_node_joins_and_drains_out_under_writes_and_searches(fleet: Fleet) -> None:
    expected = load(fleet, 6_000)
    shelf = load_stable(fleet)
    before = tables(fleet)
    writer = Writer(fleet, expected)
    searcher = Searcher(fleet, shelf)
    writer.start()
    searcher.start()
    try:
        spare = {"id": "s0", "url": fleet.spare.nodes[0].url, "group": "g0"}
        op_id = start(fleet, "POST", "/_miroir/nodes", json=spare)
        eventually(lambda: copying(fleet, op_id), "the move copies", timeout_s=180)
        # The pod running the move (its lease holder) dies: another pod takes the lease
        # over within its TTL and the move completes.
        holder = lease_holder(fleet, op_id)
        holder.kill()
        succeeded(fleet, op_id)
        holder.start()
        holder.wait_ready(timeout_s=180)
        joined = tables(fleet)

        op_id = start(fleet, "POST", "/_miroir/nodes/s0/drain")
        succeeded(fleet, op_id)
        drained = tables(fleet)
    finally:
        writer.stop.set()
        searcher.stop.set()
        writer.join(timeout=180)
        searcher.join(timeout=60)
    assert writer.failure is None, writer.failure
    assert writer.rounds >= 3
    assert searcher.searches >= 20
    assert not searcher.failures, searcher.failures[:5]

    # The new node took its balanced share (S*RF/N = 8 replicas), and every replica that
    # moved went to it: none moved between the old nodes.
    assert sum("s0" in row for row in joined) == SHARDS * RF // 4
    for old, new in zip(before, joined, strict=True):
        assert set(new) - set(old) <= {"s0"}, (old, new)
    # Drained: it holds nothing, and the old nodes are balanced again.
    assert not any("s0" in row for row in drained)
    assert all(len(row) == RF for row in drained)
    loads = [sum(n in row for row in drained) for n in ("n0", "n1", "n2")]
    assert max(loads) - min(loads) <= 1, loads
    hints_replayed(fleet.url)
    assert_placed(fleet, INDEX, expected, drained, writer.uncertain)
    assert_placed(
        fleet, STABLE, {str(i): {"id": i, "title": f"shelf item {i % 7}"} for i in shelf}, drained
    )

    # Drained, it can be forgotten.
    succeeded(fleet, start(fleet, "DELETE", "/_miroir/nodes/s0"))
    topology = ok(http("GET", f"{fleet.url}/_miroir/topology"))
    assert [n["id"] for n in topology["groups"][0]["nodes"]] == ["n0", "n1", "n2"]


def test_a_dead_node_is_removed_with_force_and_a_drain_survives_restarted_pods(
    fleet: Fleet,
) -> None:
    def error(method: str, path: str, status: int, code: str, **kwargs: Any) -> str:
        response = http(method, f"{fleet.url}{path}", **kwargs)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["code"] == code and set(body) == {"message", "code", "type", "link"}
        return str(body["message"])

    assert "still holds" in error("DELETE", "/_miroir/nodes/n1", 409, "miroir_node_not_drained")
    error("DELETE", "/_miroir/nodes/nope", 404, "miroir_node_not_found")
    error("POST", "/_miroir/nodes/nope/drain", 404, "miroir_node_not_found")
    pod = fleet.fleet.proxies[0]
    not_meili = {"id": "x0", "url": f"{pod.metrics_url}", "group": "g0"}
    assert "x0" in error("POST", "/_miroir/nodes", 400, "miroir_invalid_node", json=not_meili)
    error("POST", "/_miroir/nodes", 400, "bad_request", json={"id": "x0", "url": "ftp://x"})
    topology = ok(http("GET", f"{fleet.url}/_miroir/topology"))
    assert [n["id"] for n in topology["groups"][0]["nodes"]] == ["n0", "n1", "n2"]

    expected = load(fleet, 3_000)
    spare = {"id": "s0", "url": fleet.spare.nodes[0].url, "group": "g0"}
    # Canceled mid-copy: the node leaves again, empty, and the tables are as they were.
    before = tables(fleet)
    op_id = start(fleet, "POST", "/_miroir/nodes", json=spare)
    eventually(lambda: copying(fleet, op_id), "the move copies", timeout_s=180)
    ok(http("POST", f"{fleet.url}/_miroir/operations/{op_id}/cancel"), 202)
    assert wait_operation(fleet, op_id)["state"] == "canceled"
    assert tables(fleet) == before
    nodes = ok(http("GET", f"{fleet.url}/_miroir/nodes"))["results"]
    assert [n["id"] for n in nodes] == ["n0", "n1", "n2"]
    held = ok(http("GET", f"{fleet.spare.nodes[0].url}/indexes", key=NODE_KEY))
    assert held["total"] == 0, held
    assert_placed(fleet, INDEX, expected, before)

    op_id = start(fleet, "POST", "/_miroir/nodes", json=spare)
    succeeded(fleet, op_id)
    # A cancel that comes too late changes nothing, not even the record.
    late = ok(http("POST", f"{fleet.url}/_miroir/operations/{op_id}/cancel"), 202)
    assert late["state"] == "succeeded" and late["cancelRequested"] is False

    # n2 dies for good: its replicas come back from the survivors.
    fleet.fleet.node_ids()["n2"].kill()
    succeeded(fleet, start(fleet, "DELETE", "/_miroir/nodes/n2?force=true"))
    refilled = tables(fleet)
    assert all(len(row) == RF and "n2" not in row for row in refilled)
    assert_placed(fleet, INDEX, expected, refilled)

    # Every pod restarted mid-drain: the drain resumes and completes.
    op_id = start(fleet, "POST", "/_miroir/nodes/n0/drain")
    eventually(lambda: copying(fleet, op_id), "the drain copies", timeout_s=180)
    for proxy in fleet.fleet.proxies:
        proxy.kill()
    for proxy in fleet.fleet.proxies:
        proxy.start()
    for proxy in fleet.fleet.proxies:
        proxy.wait_ready(timeout_s=180)
    succeeded(fleet, op_id)
    drained = tables(fleet)
    assert all(len(row) == RF and "n0" not in row for row in drained)
    assert_placed(fleet, INDEX, expected, drained)
