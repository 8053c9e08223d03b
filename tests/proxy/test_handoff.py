"""Hinted handoff through the public API, over real devnode processes: 3 nodes, one group,
RF=2. A node is paused (SIGSTOP) or stopped; writes keep succeeding, and the node catches
up by itself once it is back.

The node deadlines are left long (60 s per write call, 120 s per node task): a write that
waited on the paused node would outlast every `eventually` of these tests, so each test
finishing at all shows that writes do not wait on a node the prober knows is down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from miroir_proxy.api.app import make_app
from miroir_proxy.api.appkeys import CLUSTER, STORE
from miroir_proxy.cli.processes import LocalNodes
from miroir_proxy.config import from_mapping
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.operations.handoff import lease_scope

from .devfleet import (
    MASTER,
    MASTER_HEADERS,
    NODE_KEY,
    ProxyClient,
    eventually,
    fresh_uid,
    node_call,
    wait_task,
)

SHARDS = 8
DOWN = "n0"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNodes]:
    with LocalNodes(3, tmp_path_factory.mktemp("handoff"), NODE_KEY) as started:
        yield started


def config(nodes: LocalNodes, state: Path, **extra: Any) -> dict[str, Any]:
    return {
        "shards": SHARDS,
        "replication_factor": 2,
        "replica_groups": [
            {"id": "g0", "nodes": [{"id": f"n{i}", "url": url} for i, url in enumerate(nodes.urls)]}
        ],
        "master_key": MASTER,
        "node_master_key": NODE_KEY,
        "state_path": str(state),
        "health": {"interval_ms": 50, "timeout_ms": 300, "unhealthy_after": 1},
        "timeouts": {"node_write_ms": 60_000, "task_node_deadline_ms": 120_000},
        **extra,
        "handoff": {"replay_interval_ms": 100, **extra.get("handoff", {})},
    }


@asynccontextmanager
async def proxy(nodes: LocalNodes, state: Path, **extra: Any) -> AsyncIterator[ProxyClient]:
    app = make_app(from_mapping(config(nodes, state, **extra), env={}))
    async with TestClient(TestServer(app), headers=MASTER_HEADERS) as client:
        yield client


@asynccontextmanager
async def paused(nodes: LocalNodes) -> AsyncIterator[None]:
    nodes.nodes[0].pause()
    try:
        yield
    finally:
        nodes.nodes[0].resume()


def ids_on(client: ProxyClient, node: str, count: int, start: int = 0) -> list[int]:
    """`count` document ids whose shard has a replica on `node`."""
    assert client.app is not None
    layout = client.app[CLUSTER].layout
    replicas = layout.placement(layout.topology.groups[0], SHARDS).replicas
    found: list[int] = []
    candidate = start
    while len(found) < count:
        if node in replicas[shard_of(candidate, SHARDS)]:
            found.append(candidate)
        candidate += 1
    return found


async def create_index(client: ProxyClient) -> str:
    uid = fresh_uid("handoff")
    task = await wait_task(
        client, await client.post("/indexes", json={"uid": uid, "primaryKey": "id"})
    )
    assert task["status"] == "succeeded", task
    return uid


async def node_document(nodes: LocalNodes, uid: str, doc_id: int) -> dict[str, Any] | None:
    status, body = await node_call(nodes.urls[0], "GET", f"/indexes/{uid}/documents/{doc_id}")
    return body if status == 200 else None


async def hints(client: ProxyClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/_miroir/hints")
    assert response.status == 200, await response.text()
    return {entry["node"]: entry for entry in (await response.json())["nodes"]}


async def write_one(client: ProxyClient, uid: str, document: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"/indexes/{uid}/documents", json=[document])
    assert response.status == 202, await response.text()
    degraded = response.headers.get("X-Miroir-Degraded", "")
    task = await wait_task(client, response)
    return {"degraded": degraded, "task": task}


async def test_writes_with_a_paused_node_succeed_and_reach_it_when_it_returns(
    nodes: LocalNodes, tmp_path: Path
) -> None:
    async with proxy(nodes, tmp_path / "state.sqlite3") as client:
        uid = await create_index(client)
        ids = ids_on(client, DOWN, 20)
        async with paused(nodes):
            for doc_id in ids:
                outcome = await write_one(client, uid, {"id": doc_id, "title": f"t{doc_id}"})
                assert outcome["task"]["status"] == "succeeded", outcome
                assert outcome["task"]["details"]["indexedDocuments"] == 1
                assert outcome["task"]["details"]["miroirUnconfirmedNodes"] == [DOWN]
                items = outcome["degraded"].split(",")
                assert items and all(item.endswith(f"/{DOWN}:hinted") for item in items), items
            assert (await hints(client))[DOWN]["pending"] == 20
            # Searches and reads see every write meanwhile (the live replicas have them).
            search = await (await client.post(f"/indexes/{uid}/search", json={"limit": 50})).json()
            assert sorted(hit["id"] for hit in search["hits"]) == sorted(ids)

        async def node_holds_all() -> bool:
            found = [await node_document(nodes, uid, doc_id) for doc_id in ids]
            return all(
                doc is not None and doc["title"] == f"t{doc_id}"
                for doc, doc_id in zip(found, ids, strict=True)
            )

        await eventually(node_holds_all, f"{DOWN} holds the 20 writes it missed")

        async def no_hints_left() -> bool:
            return DOWN not in await hints(client)

        await eventually(no_hints_left, "every hint replayed and deleted")
        metrics = await (await client.get("/_miroir/metrics")).text()
        assert "miroir_hints_replayed_total 20.0" in metrics


async def test_hints_replay_in_order_and_writes_wait_behind_them(
    nodes: LocalNodes, tmp_path: Path
) -> None:
    """Five versions of one document while its replica is paused, a sixth as it returns:
    the node ends with the last one, whether the sixth came before the replay or after."""
    async with proxy(nodes, tmp_path / "state.sqlite3") as client:
        uid = await create_index(client)
        (doc_id,) = ids_on(client, DOWN, 1, start=1_000)
        async with paused(nodes):
            for version in range(1, 6):
                outcome = await write_one(client, uid, {"id": doc_id, "version": version})
                assert outcome["task"]["status"] == "succeeded", outcome

        async def seen_healthy() -> bool:
            topology = await (await client.get("/_miroir/topology")).json()
            node = next(n for n in topology["groups"][0]["nodes"] if n["id"] == DOWN)
            return bool(node["health"] != "unhealthy")

        await eventually(seen_healthy, f"{DOWN} seen healthy again")
        outcome = await write_one(client, uid, {"id": doc_id, "version": 6})
        assert outcome["task"]["status"] == "succeeded", outcome

        async def latest() -> bool:
            doc = await node_document(nodes, uid, doc_id)
            return DOWN not in await hints(client) and doc is not None and doc["version"] == 6

        await eventually(latest, f"{DOWN} holds version 6 and no hint is left")
        assert (await node_document(nodes, uid, doc_id) or {})["version"] == 6


async def test_a_replica_with_hints_pending_is_never_searched_or_copied_from(
    nodes: LocalNodes, tmp_path: Path
) -> None:
    """A group joins while n0 is back but has not replayed its hints yet (the test holds the
    replay lease): n0 lacks writes and still has a deleted document, so searches go to the
    other replicas, and the new group is copied and verified from them only: it holds
    exactly what was acknowledged."""
    async with proxy(nodes, tmp_path / "state.sqlite3") as client:
        assert client.app is not None
        uid = await create_index(client)
        doomed, *ids = ids_on(client, DOWN, 13, start=9_000)
        assert (await write_one(client, uid, {"id": doomed}))["task"]["status"] == "succeeded"
        store = client.app[STORE]
        assert await store.lease_acquire(lease_scope(DOWN), "test", 600_000)
        async with paused(nodes):
            for doc_id in ids:
                outcome = await write_one(client, uid, {"id": doc_id})
                assert outcome["task"]["status"] == "succeeded", outcome
            deletion = await client.post(f"/indexes/{uid}/documents/delete-batch", json=[doomed])
            assert (await wait_task(client, deletion))["status"] == "succeeded"
        assert await node_document(nodes, uid, doomed) is not None  # n0 missed the deletion

        async def seen_healthy() -> bool:
            topology = await (await client.get("/_miroir/topology")).json()
            node = next(n for n in topology["groups"][0]["nodes"] if n["id"] == DOWN)
            return bool(node["health"] == "healthy")

        await eventually(seen_healthy, f"{DOWN} seen healthy again")
        assert (await hints(client))[DOWN]["pending"] >= len(ids)
        # Searches leave n0 out while it is behind: each sees every acknowledged write.
        for _ in range(8):
            search = await client.post(f"/indexes/{uid}/search", json={"limit": 50})
            assert sorted(hit["id"] for hit in (await search.json())["hits"]) == sorted(ids)
        with LocalNodes(2, tmp_path / "spare", NODE_KEY) as spare:
            group = {
                "id": "g1",
                "nodes": [{"id": f"s{i}", "url": url} for i, url in enumerate(spare.urls)],
            }
            started = await client.post("/_miroir/groups", json=group)
            assert started.status == 202, await started.text()
            path = f"/_miroir/operations/{(await started.json())['operation']}"

            async def finished() -> bool:
                return bool((await (await client.get(path)).json())["state"] != "running")

            await eventually(finished, "the group joins")
            operation = await (await client.get(path)).json()
            assert operation["state"] == "succeeded", operation
            for url in spare.urls:  # RF=2 on two nodes: each holds every shard
                held = [
                    (await node_call(url, "GET", f"/indexes/{uid}/documents/{i}"))[0] for i in ids
                ]
                assert held == [200] * len(ids)
                assert (await node_call(url, "GET", f"/indexes/{uid}/documents/{doomed}"))[0] == 404
        await store.lease_release(lease_scope(DOWN), "test")

        async def caught_up() -> bool:
            return DOWN not in await hints(client)

        await eventually(caught_up, f"{DOWN} replays its hints once the lease is free")
        assert await node_document(nodes, uid, doomed) is None


async def test_hints_are_bounded_and_an_overflow_is_reported(
    nodes: LocalNodes, tmp_path: Path
) -> None:
    async with proxy(
        nodes, tmp_path / "state.sqlite3", handoff={"max_hints_per_node": 5}
    ) as client:
        uid = await create_index(client)
        ids = ids_on(client, DOWN, 8, start=2_000)
        async with paused(nodes):
            headers = []
            for doc_id in ids:
                outcome = await write_one(client, uid, {"id": doc_id})
                assert outcome["task"]["status"] == "succeeded", outcome
                headers.append(outcome["degraded"])
            # Five hints fit; the sixth drops them all and flags the node for anti-entropy.
            assert all(h.endswith(":hinted") for h in headers[:5]), headers
            assert all(h.endswith(":anti-entropy") for h in headers[5:]), headers
            entry = (await hints(client))[DOWN]
            assert entry == {"node": DOWN, "pending": 0, "dropped": 8, "needsAntiEntropy": True}

        async def flagged_in_metrics() -> bool:
            metrics = await (await client.get("/_miroir/metrics")).text()
            return f'miroir_hints_overflowed{{node="{DOWN}"}} 1.0' in metrics

        await eventually(flagged_in_metrics, "the overflow is exported as a metric")

        # Back, it takes new writes directly (no partial history is replayed to it).
        (fresh,) = ids_on(client, DOWN, 1, start=3_000)

        async def direct() -> bool:
            outcome = await write_one(client, uid, {"id": fresh})
            return outcome["degraded"] == ""

        await eventually(direct, f"a write reaches {DOWN} directly once it is back")
        assert await node_document(nodes, uid, fresh) is not None
        # The first write may have reached the paused node's socket before the prober marked
        # it down (it then ran it on SIGCONT); none of the dropped hints was replayed.
        assert all([await node_document(nodes, uid, doc_id) is None for doc_id in ids[1:]])
        assert (await hints(client))[DOWN]["needsAntiEntropy"] is True

        # A full anti-entropy pass brings the node in line and lifts the flag.
        started = await client.post("/_miroir/maintenance/anti-entropy")
        assert started.status == 202, await started.text()
        operation = (await started.json())["operation"]

        async def pass_done() -> bool:
            view = await (await client.get(f"/_miroir/operations/{operation}")).json()
            return bool(view["state"] != "running")

        await eventually(pass_done, "the anti-entropy pass ends")
        view = await (await client.get(f"/_miroir/operations/{operation}")).json()
        assert view["state"] == "succeeded", view
        assert all([await node_document(nodes, uid, doc_id) is not None for doc_id in ids])
        assert not (await hints(client)).get(DOWN, {}).get("needsAntiEntropy")
        async with paused(nodes):  # and it takes hints again
            outcome = await write_one(client, uid, {"id": fresh, "title": "hinted again"})
        assert outcome["degraded"].endswith(f"/{DOWN}:hinted"), outcome


async def test_hints_survive_a_proxy_restart(nodes: LocalNodes, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite3"
    async with proxy(nodes, state) as client:
        uid = await create_index(client)
        ids = ids_on(client, DOWN, 5, start=4_000)
        nodes.nodes[0].stop()
        try:
            for doc_id in ids:
                outcome = await write_one(client, uid, {"id": doc_id})
                assert outcome["task"]["status"] == "succeeded", outcome
        except BaseException:
            nodes.nodes[0].start()
            raise
    nodes.nodes[0].start()
    nodes.nodes[0].wait_healthy(30)
    # A new proxy process on the same state: nobody is told anything, the node catches up.
    async with proxy(nodes, state) as client:

        async def caught_up() -> bool:
            found = [await node_document(nodes, uid, doc_id) for doc_id in ids]
            return all(doc is not None for doc in found) and DOWN not in await hints(client)

        await eventually(caught_up, f"{DOWN} holds the writes hinted before the restart")


async def test_hints_of_an_index_deleted_meanwhile_are_dropped(
    nodes: LocalNodes, tmp_path: Path
) -> None:
    """A replay must not bring documents back into an index deleted since the write (the
    node, which missed the deletion, still has it)."""
    async with proxy(nodes, tmp_path / "state.sqlite3") as client:
        uid = await create_index(client)
        ids = ids_on(client, DOWN, 3, start=7_000)
        nodes.nodes[0].stop()
        try:
            for doc_id in ids:
                outcome = await write_one(client, uid, {"id": doc_id})
                assert outcome["task"]["status"] == "succeeded", outcome
            assert (await hints(client))[DOWN]["pending"] == 3
            deletion = await client.delete(f"/indexes/{uid}")
            assert deletion.status == 202, await deletion.text()
        finally:
            nodes.nodes[0].start()
        nodes.nodes[0].wait_healthy(30)

        async def no_hints_left() -> bool:
            return DOWN not in await hints(client)

        await eventually(no_hints_left, "the hints of the deleted index are gone")
        status, _ = await node_call(nodes.urls[0], "GET", f"/indexes/{uid}")
        assert status == 200  # the node missed the deletion: its copy of the index is there
        assert all([await node_document(nodes, uid, doc_id) is None for doc_id in ids])


async def test_a_node_that_lost_the_index_is_not_given_a_bare_copy(
    nodes: LocalNodes, tmp_path: Path
) -> None:
    """The node comes back without the index (an empty volume): a replay would create it
    with default settings (no `_miroir_shard` filter), so the hints are dropped instead."""
    async with proxy(nodes, tmp_path / "state.sqlite3") as client:
        uid = await create_index(client)
        ids = ids_on(client, DOWN, 3, start=8_000)
        status, _ = await node_call(nodes.urls[0], "DELETE", f"/indexes/{uid}")
        assert status == 202

        async def gone_on_node() -> bool:
            return (await node_call(nodes.urls[0], "GET", f"/indexes/{uid}"))[0] == 404

        await eventually(gone_on_node, "the index is gone from the node")
        nodes.nodes[0].stop()
        try:
            for doc_id in ids:
                outcome = await write_one(client, uid, {"id": doc_id})
                assert outcome["task"]["status"] == "succeeded", outcome
            assert (await hints(client))[DOWN]["pending"] == 3
        finally:
            nodes.nodes[0].start()
        nodes.nodes[0].wait_healthy(30)

        async def no_hints_left() -> bool:
            return DOWN not in await hints(client)

        await eventually(no_hints_left, "the hints are dropped")
        assert await gone_on_node()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_two_pods_replay_each_hint_once(
    nodes: LocalNodes, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """Both pods see the node return; the lease `hints:n0` lets one replay: the node gets
    one task per hint, not two. On one SQLite file and on a real Redis."""
    state = tmp_path / "state.sqlite3"
    shared: dict[str, Any] = {}
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        shared["store"] = f"{server.url}?namespace={fresh_uid('handoff')}:"
    async with (
        proxy(nodes, state, coordination={"pod_id": "pod-a"}, **shared) as a,
        proxy(nodes, state, coordination={"pod_id": "pod-b"}, **shared) as b,
    ):
        uid = await create_index(a)
        ids = ids_on(a, DOWN, 12, start=6_000)
        async with paused(nodes):

            async def both_see_it_down() -> bool:
                views = [await (await c.get("/_miroir/topology")).json() for c in (a, b)]
                return all(
                    next(n for n in v["groups"][0]["nodes"] if n["id"] == DOWN)["health"]
                    == "unhealthy"
                    for v in views
                )

            # Once both know, no write is even sent to the paused node.
            await eventually(both_see_it_down, "both pods see the paused node down")
            for i, doc_id in enumerate(ids):
                outcome = await write_one((a, b)[i % 2], uid, {"id": doc_id})
                assert outcome["task"]["status"] == "succeeded", outcome
            assert (await hints(b))[DOWN]["pending"] == len(ids)

        async def caught_up() -> bool:
            found = [await node_document(nodes, uid, doc_id) for doc_id in ids]
            return all(doc is not None for doc in found) and DOWN not in await hints(a)

        await eventually(caught_up, f"{DOWN} caught up")
        status, listing = await node_call(
            nodes.urls[0],
            "GET",
            f"/tasks?indexUids={uid}&types=documentAdditionOrUpdate&limit=1000",
        )
        assert status == 200, listing
        assert listing["total"] == len(ids)


async def test_without_handoff_a_down_replica_fails_the_write_at_once(
    nodes: LocalNodes, tmp_path: Path
) -> None:
    async with proxy(nodes, tmp_path / "state.sqlite3", handoff={"enabled": False}) as client:
        uid = await create_index(client)
        (doc_id,) = ids_on(client, DOWN, 1, start=5_000)
        async with paused(nodes):
            response = await client.post(f"/indexes/{uid}/documents", json=[{"id": doc_id}])
            assert response.status == 503
            assert (await response.json())["code"] == "miroir_no_quorum"
            assert (await hints(client)) == {}
