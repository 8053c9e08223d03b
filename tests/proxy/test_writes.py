"""The document write path against in-process fake nodes (2 groups x 3 nodes, RF=2, S=8):
routing, validation before any node call, quorum, logical task details, one-document reads."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import orjson

from miroir_proxy.api.appkeys import STORE
from miroir_proxy.core.assignment import plan
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.state.store import Hint

from .searchfleet import eventually

SHARDS = 8
DEADLINE_S = 10.0


async def wait_task(client: Any, uid: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while True:
        task: dict[str, Any] = await (await client.get(f"/tasks/{uid}")).json()
        if task["status"] in ("succeeded", "failed", "canceled") or loop.time() > deadline:
            return task
        await asyncio.sleep(0.01)


def replicas(fleet: Any, doc_id: str | int) -> set[str]:
    shard = shard_of(doc_id, SHARDS)
    out: set[str] = set()
    for group in fleet.groups:
        out |= set(plan(None, [n.node_id for n in group], 2, SHARDS)[shard])
    return out


async def create_index(client: Any, uid: str) -> None:
    """Create `uid` through a first (empty) document batch while every node accepts."""
    response = await client.post(f"/indexes/{uid}/documents", json=[])
    assert response.status == 202
    assert (await wait_task(client, (await response.json())["taskUid"]))["status"] == "succeeded"


def document_writes(node: Any) -> list[Any]:
    return [r for r in node.writes() if r.path.endswith("/documents") and r.method != "DELETE"]


async def test_each_document_lands_only_on_its_shards_replicas(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    docs = [{"id": i, "title": f"doc {i}"} for i in range(200)]
    async with proxy(nodes.config(tmp_path)) as client:
        response = await client.post("/indexes/books/documents", json=docs)
        assert response.status == 202
        summary = await response.json()
        assert set(summary) == {"taskUid", "indexUid", "status", "type", "enqueuedAt"}
        assert (summary["indexUid"], summary["status"], summary["type"]) == (
            "books",
            "enqueued",
            "documentAdditionOrUpdate",
        )
        assert "X-Miroir-Degraded" not in response.headers
        task = await wait_task(client, summary["taskUid"])
    assert task["status"] == "succeeded"
    assert task["details"] == {"receivedDocuments": 200, "indexedDocuments": 200}
    holders: dict[int, set[str]] = {}
    for node in nodes.nodes:
        batches = document_writes(node)
        assert len(batches) == 1
        assert batches[0].method == "POST"
        assert batches[0].query == {"primaryKey": "id"}
        for doc in batches[0].body:
            assert doc["_miroir_shard"] == shard_of(doc["id"], SHARDS)
            holders.setdefault(doc["id"], set()).add(node.node_id)
    assert set(holders) == set(range(200))
    for doc_id, where in holders.items():
        assert where == replicas(nodes, doc_id)
        assert len(where) == 4


async def test_put_updates_and_passes_skip_creation(tmp_path: Path, fleet: Any, proxy: Any) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        response = await client.put(
            "/indexes/books/documents?skipCreation=true&primaryKey=isbn",
            data=b'{"isbn": "x1", "title": "t"}\n{"isbn": "x2"}\n',
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert response.status == 202
    for node in nodes.nodes:
        (batch,) = document_writes(node)
        assert batch.method == "PUT"
        assert batch.query == {"primaryKey": "isbn", "skipCreation": "true"}
        assert sorted(d["isbn"] for d in batch.body) == ["x1", "x2"]


async def test_csv_payload_reaches_nodes_as_typed_json(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        before = time.time_ns() // 1_000_000
        response = await client.post(
            "/indexes/items/documents?csvDelimiter=;",
            data=b"id:number;price:number;ok:boolean;name\n1;2.5;true;a\n",
            headers={"Content-Type": "text/csv"},
        )
        after = time.time_ns() // 1_000_000
        assert response.status == 202
    (batch,) = document_writes(nodes.nodes[0])
    # Every stored version carries the moment the proxy accepted it (copies and repairs
    # never put an older version over a newer one).
    stamp = batch.body[0].pop("_miroir_updated_at")
    assert before <= stamp <= after
    assert batch.body == [
        {"id": 1, "price": 2.5, "ok": True, "name": "a", "_miroir_shard": shard_of(1, SHARDS)}
    ]


async def test_invalid_ids_fail_the_task_before_any_node_call(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        missing = await client.post(
            "/indexes/books/documents", json=[{"id": 1}, {"title": "no id"}]
        )
        assert missing.status == 202
        task = await wait_task(client, (await missing.json())["taskUid"])
        assert task["status"] == "failed"
        assert task["details"] == {"receivedDocuments": 2, "indexedDocuments": 0}
        assert task["error"] == {
            "message": 'Document doesn\'t have a `id` attribute: `{"title":"no id"}`.',
            "code": "missing_document_id",
            "type": "invalid_request",
            "link": "https://docs.meilisearch.com/errors#missing_document_id",
        }
        invalid = await client.post("/indexes/books/documents", json=[{"id": "a b"}])
        task = await wait_task(client, (await invalid.json())["taskUid"])
        assert task["error"]["code"] == "invalid_document_id"
        assert task["error"]["message"].startswith('Document identifier `"a b"` is invalid.')
        no_key = await client.post("/indexes/books/documents", json=[{"title": "t"}])
        task = await wait_task(client, (await no_key.json())["taskUid"])
        assert task["error"]["code"] == "index_primary_key_no_candidate_found"
    assert all(node.writes() == [] for node in nodes.nodes)


async def test_reserved_fields_are_refused(tmp_path: Path, fleet: Any, proxy: Any) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        response = await client.post(
            "/indexes/books/documents", json=[{"id": 1}, {"id": 2, "_miroir_shard": 3}]
        )
        assert response.status == 400
        body = await response.json()
        assert body["code"] == "miroir_reserved_field"
        escaped = await client.post(
            "/indexes/books/documents",
            data=b'[{"id": 1, "\\u005fmiroir_x": 1}]',
            headers={"Content-Type": "application/json"},
        )
        assert (await escaped.json())["code"] == "miroir_reserved_field"
        # A value that merely contains the prefix is fine.
        ok = await client.post("/indexes/books/documents", json=[{"id": 1, "t": "_miroir_x"}])
        assert ok.status == 202
    assert len(document_writes(nodes.nodes[0])) == 1


async def test_payload_errors_answer_synchronously(tmp_path: Path, fleet: Any, proxy: Any) -> None:
    nodes = await fleet(groups=1, nodes_per_group=1)
    async with proxy(nodes.config(tmp_path, replication_factor=1)) as client:
        no_type = await client.post(
            "/indexes/b/documents", data=b"[]", skip_auto_headers=["Content-Type"]
        )
        assert no_type.status == 415
        assert (await no_type.json())["code"] == "missing_content_type"
        empty = await client.post(
            "/indexes/b/documents", data=b"", headers={"Content-Type": "application/json"}
        )
        assert (await empty.json())["code"] == "missing_payload"
        unknown = await client.post("/indexes/b/documents?foo=1", json=[])
        assert (await unknown.json())["code"] == "bad_request"


async def test_a_refusing_replica_degrades_but_a_group_keeps_quorum(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    docs = [{"id": i} for i in range(50)]
    async with proxy(nodes.config(tmp_path)) as client:
        await create_index(client, "books")
        nodes.node("g0n0").refuse_writes = True
        response = await client.post("/indexes/books/documents", json=docs)
        assert response.status == 202
        degraded = response.headers["X-Miroir-Degraded"].split(",")
        assert degraded
        # The batch g0n0 failed is kept as a hint, replayed once it takes writes again.
        assert all(item.startswith("g0/") and item.endswith("/g0n0:hinted") for item in degraded)
        task = await wait_task(client, (await response.json())["taskUid"])
    assert task["status"] == "succeeded"
    assert task["details"]["indexedDocuments"] == 50
    assert task["details"]["miroirUnconfirmedNodes"] == ["g0n0"]


async def test_no_group_at_quorum_is_503_and_no_task(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    # Without hinted handoff, a shard with one of its two g0 replicas failing has no quorum.
    async with proxy(nodes.config(tmp_path, handoff={"enabled": False})) as client:
        await create_index(client, "books")
        for node in nodes.groups[1]:
            node.refuse_writes = True
        nodes.node("g0n0").refuse_writes = True
        response = await client.post(
            "/indexes/books/documents", json=[{"id": i} for i in range(50)]
        )
        assert response.status == 503
        assert response.headers["Retry-After"] == "10"
        body = await response.json()
        assert body["code"] == "miroir_no_quorum"
        assert body["type"] == "system"
        listing = await (await client.get("/tasks?types=documentAdditionOrUpdate")).json()
        assert listing["total"] == 1  # only the batch that created the index


async def test_node_client_errors_pass_through_unchanged(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        assert (await client.post("/indexes/books/documents", json=[{"id": 1}])).status == 202
        error = {
            "message": "bad filter",
            "code": "invalid_document_filter",
            "type": "x",
            "link": "y",
        }
        for node in nodes.nodes:
            node.reject_writes_with = error
        response = await client.post("/indexes/books/documents/delete", json={"filter": "a ="})
        assert response.status == 400
        assert await response.json() == error


async def test_deletions_route_by_shard_or_broadcast_with_logical_counts(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    docs = [{"id": i, "color": "red" if i < 4 else "blue"} for i in range(10)]
    async with proxy(nodes.config(tmp_path)) as client:
        added = await client.post("/indexes/books/documents", json=docs)
        assert (await wait_task(client, (await added.json())["taskUid"]))["status"] == "succeeded"

        one = await client.delete("/indexes/books/documents/7")
        task = await wait_task(client, (await one.json())["taskUid"])
        assert task["type"] == "documentDeletion"
        assert task["details"] == {"providedIds": 1, "deletedDocuments": 1, "originalFilter": None}
        targeted = {
            n.node_id
            for n in nodes.nodes
            if any(r.path.endswith("/delete-batch") for r in n.writes())
        }
        assert targeted == replicas(nodes, 7)

        batch = await client.post("/indexes/books/documents/delete-batch", json=[1, "2", 99])
        task = await wait_task(client, (await batch.json())["taskUid"])
        assert task["details"] == {"providedIds": 3, "deletedDocuments": 2, "originalFilter": None}

        by_filter = await client.post(
            "/indexes/books/documents/delete", json={"filter": "color = red"}
        )
        task = await wait_task(client, (await by_filter.json())["taskUid"])
        assert task["details"] == {
            "providedIds": 0,
            "deletedDocuments": 2,
            "originalFilter": '"color = red"',
        }
        assert all(
            any(r.path.endswith("/documents/delete") for r in n.writes()) for n in nodes.nodes
        )

        cleared = await client.delete("/indexes/books/documents")
        task = await wait_task(client, (await cleared.json())["taskUid"])
        assert task["details"] == {"deletedDocuments": 5}


async def test_deletion_validation_and_unknown_index(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        gone = await client.delete("/indexes/nowhere/documents/1")
        assert gone.status == 202
        task = await wait_task(client, (await gone.json())["taskUid"])
        assert task["status"] == "failed"
        assert task["error"]["message"] == "Index `nowhere` not found."
        await client.post("/indexes/books/documents", json=[{"id": 1}])
        missing = await client.post("/indexes/books/documents/delete", json={})
        assert (await missing.json())["code"] == "missing_document_filter"
        for empty in ("", "  ", [], [[]]):
            response = await client.post("/indexes/books/documents/delete", json={"filter": empty})
            body = await response.json()
            assert (response.status, body["code"], body["message"]) == (
                400,
                "invalid_document_filter",
                "Sending an empty filter is forbidden.",
            )
        not_array = await client.post("/indexes/books/documents/delete-batch", json={"id": 1})
        assert (await not_array.json())["code"] == "bad_request"
    assert not any(r.path.endswith("/delete") for n in nodes.nodes for r in n.writes())


async def test_get_one_document_strips_reserved_fields_and_falls_back(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    async with proxy(nodes.config(tmp_path)) as client:
        added = await client.post("/indexes/books/documents", json=[{"id": "d1", "t": "x"}])
        await wait_task(client, (await added.json())["taskUid"])
        response = await client.get("/indexes/books/documents/d1")
        assert response.status == 200
        assert await response.json() == {"id": "d1", "t": "x"}
        for node_id in replicas(nodes, "d1"):
            if node_id.startswith("g0"):
                await nodes.node(node_id).stop()
        for _ in range(4):
            again = await client.get("/indexes/books/documents/d1")
            assert again.status == 200
            assert orjson.loads(await again.read()) == {"id": "d1", "t": "x"}
        missing = await client.get("/indexes/books/documents/nope")
        assert missing.status == 404
        assert (await missing.json())["code"] == "document_not_found"
        no_index = await client.get("/indexes/other/documents/d1")
        assert (await no_index.json())["code"] == "index_not_found"


async def test_round_trip_over_real_devnodes(
    tmp_path: Path, fresh_node: Any, master_key: str
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from miroir_proxy.api.app import make_app
    from miroir_proxy.config import from_mapping

    started = [fresh_node() for _ in range(4)]
    config = {
        "shards": SHARDS,
        "replication_factor": 2,
        "replica_groups": [
            {
                "id": f"g{g}",
                "nodes": [{"id": f"n{2 * g + i}", "url": started[2 * g + i].url} for i in range(2)],
            }
            for g in range(2)
        ],
        "node_master_key": master_key,
        "state_path": str(tmp_path / "state.sqlite3"),
    }
    docs = [{"id": i, "color": ["red", "blue"][i % 2], "title": f"book {i}"} for i in range(100)]
    app = make_app(from_mapping(config, env={}))
    async with TestClient(TestServer(app)) as client:
        added = await client.post("/indexes/books/documents", json=docs)
        task = await wait_task(client, (await added.json())["taskUid"])
        assert task["status"] == "succeeded", task
        assert task["details"] == {"receivedDocuments": 100, "indexedDocuments": 100}
        for doc in docs[:20]:
            got = await client.get(f"/indexes/books/documents/{doc['id']}")
            assert await got.json() == doc
        by_filter = await client.post(
            "/indexes/books/documents/delete", json={"filter": "color = red"}
        )
        task = await wait_task(client, (await by_filter.json())["taskUid"])
        # `color` is not filterable: every node fails the task the same way.
        assert task["status"] == "failed"
        assert task["error"]["code"] == "invalid_document_filter"
        assert len(task["error"]["nodeErrors"]) == 4
        for node in started:
            async with client.session.patch(
                f"{node.url}/indexes/books/settings",
                json={"filterableAttributes": ["_miroir_shard", "color"]},
                headers={"Authorization": f"Bearer {master_key}"},
            ) as response:
                assert response.status == 202
        by_filter = await client.post(
            "/indexes/books/documents/delete", json={"filter": "color = red"}
        )
        task = await wait_task(client, (await by_filter.json())["taskUid"])
        assert (task["status"], task["details"]["deletedDocuments"]) == ("succeeded", 50)
        batch = await client.post("/indexes/books/documents/delete-batch", json=[1, 3, 4])
        task = await wait_task(client, (await batch.json())["taskUid"])
        assert task["details"]["deletedDocuments"] == 2
        cleared = await client.delete("/indexes/books/documents")
        task = await wait_task(client, (await cleared.json())["taskUid"])
        assert task["details"] == {"deletedDocuments": 48}


async def test_a_replay_skips_hints_the_node_should_no_longer_get(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    """Hints stored before a topology change: those for shards the node no longer holds,
    of an index that is gone, or of a node that left, are dropped; the others are replayed
    in order."""
    nodes = await fleet(groups=1, nodes_per_group=3)
    config = nodes.config(tmp_path, handoff={"replay_interval_ms": 50})
    async with proxy(config) as client:
        await create_index(client, "books")
        node = nodes.node("g0n0")
        table = plan(None, [n.node_id for n in nodes.groups[0]], 2, SHARDS)
        mine = [s for s in range(SHARDS) if "g0n0" in table[s]]
        other = [s for s in range(SHARDS) if s not in mine]
        assert mine and other

        def hint(index: str, shards: tuple[int, ...], doc_id: int) -> Hint:
            return Hint(
                node="g0n0",
                index_uid=index,
                method="POST",
                path=f"/indexes/{index}/documents",
                params={"primaryKey": "id"},
                body=orjson.dumps([{"id": doc_id, "_miroir_shard": shards[0]}]),
                group="g0",
                shards=shards,
                created_ms=1,
            )

        assert client.app is not None
        store = client.app[STORE]
        before = len(document_writes(node))
        for h in (
            hint("books", (mine[0],), 1),
            hint("books", (other[0],), 2),  # the shard moved off g0n0 since
            hint("gone", (mine[0],), 3),  # the index was deleted since
            hint("books", (other[0], mine[-1]), 4),  # still holds one of them: replayed whole
        ):
            assert await store.put_hint(h, 100) is not None
        # A node removed from the topology since: never called, its hints dropped.
        removed = dataclasses.replace(hint("books", (mine[0],), 5), node="g0n9")
        assert await store.put_hint(removed, 100) is not None

        async def drained() -> bool:
            return not (await (await client.get("/_miroir/hints")).json())["nodes"]

        await eventually(drained, timeout_s=DEADLINE_S)
        replayed = [r.body[0]["id"] for r in document_writes(node)[before:]]
        assert replayed == [1, 4]
