"""`POST /dumps` through Miroir over five real devnodes (two groups, RF=2, 8 shards): one
logical V6 dump of the cluster, checked against MEILI_DUMP.md's rules (`dumpcheck`) and
against what the cluster holds, downloaded from `GET /_miroir/dumps/{uid}`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from miroir_proxy.api.app import make_app
from miroir_proxy.cli.processes import LocalNodes
from miroir_proxy.config import from_mapping

from .devfleet import (
    MASTER_HEADERS,
    ProxyClient,
    StartProxy,
    devnodes,
    eventually,
    fleet_config,
    node_call,
    set_faults,
    start,
    wait_task,
)
from .dumpcheck import (
    DUMP_FILE_NAME,
    assert_same_contents,
    by_primary_key,
    cluster_contents,
    read_v6_dump,
)

__all__ = ["devnodes", "start"]

DUMP_UID = re.compile(r"^[0-9]{8}-[0-9]{9}$")
GENRES = ("drama", "comedy", "horror", "noir")
MANUAL = {"manual": {"source": "userProvided", "dimensions": 3}}


async def wipe(nodes: LocalNodes) -> None:
    """Delete every index on every node: each test starts from an empty fleet (the
    nodes serve the whole module, each test has its own proxy state)."""
    for url in nodes.urls:
        status, listed = await node_call(url, "GET", "/indexes?limit=1000")
        assert status == 200, listed
        for index in listed["results"]:
            await node_call(url, "DELETE", f"/indexes/{index['uid']}")

        async def empty(url: str = url) -> bool:
            return (await node_call(url, "GET", "/indexes"))[1]["total"] == 0

        await eventually(empty, f"{url} has no index")


async def ok(client: ProxyClient, method: str, path: str, body: Any = None) -> dict[str, Any]:
    task = await wait_task(client, await client.request(method, path, json=body))
    assert task["status"] == "succeeded", task
    return task


async def load_cluster(proxy: ProxyClient) -> dict[str, Any]:
    """Three indexes: integer keys with rich settings, string keys with others, and
    vectors with a userProvided embedder; plus an empty index and an API key."""
    books = [
        {
            "id": i,
            "title": f"book {i}",
            "genre": GENRES[i % 4],
            "year": 1900 + i % 120,
            "meta": {"pages": 100 + i, "tags": [f"t{i % 3}"]},
        }
        for i in range(400)
    ]
    shops = [{"sku": f"sku-{i:04d}", "chain": f"c{i % 7}", "city": "Paris"} for i in range(150)]
    vectors = [
        {"id": i, "label": f"v{i}", "_vectors": {"manual": [i / 10, 1.0, 0.5]}} for i in range(30)
    ]
    await ok(proxy, "POST", "/indexes", {"uid": "books", "primaryKey": "id"})
    await ok(
        proxy,
        "PATCH",
        "/indexes/books/settings",
        {
            "filterableAttributes": ["genre", "year"],
            "sortableAttributes": ["year"],
            "searchableAttributes": ["title", "genre"],
            "synonyms": {"novel": ["book"]},
            "rankingRules": ["words", "sort", "typo", "proximity", "attribute", "exactness"],
        },
    )
    await ok(proxy, "POST", "/indexes/books/documents", books)
    await ok(proxy, "POST", "/indexes", {"uid": "shops", "primaryKey": "sku"})
    await ok(
        proxy,
        "PATCH",
        "/indexes/shops/settings",
        {"distinctAttribute": "chain", "stopWords": ["the"], "displayedAttributes": ["sku"]},
    )
    await ok(proxy, "POST", "/indexes/shops/documents", shops)
    await ok(proxy, "POST", "/indexes", {"uid": "empty"})
    await ok(proxy, "PATCH", "/indexes/vectors/settings", {"embedders": MANUAL})
    await ok(proxy, "POST", "/indexes/vectors/documents?primaryKey=id", vectors)
    key = await proxy.post(
        "/keys",
        json={
            "name": "reader",
            "description": "searches the books",
            "actions": ["search", "documents.get"],
            "indexes": ["books"],
            "expiresAt": None,
        },
    )
    assert key.status == 201, await key.text()
    return {"books": books, "shops": shops, "vectors": vectors}


async def dump(proxy: ProxyClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the 202 answer, the finished task) of one `POST /dumps`."""
    response = await proxy.post("/dumps")
    assert response.status == 202, await response.text()
    enqueued = await response.json()
    return enqueued, await wait_task(proxy, enqueued)


async def download(proxy: ProxyClient, uid: str) -> bytes:
    response = await proxy.get(f"/_miroir/dumps/{uid}")
    assert response.status == 200, await response.text()
    assert response.content_type == "application/gzip"
    disposition = response.headers["Content-Disposition"]
    name = disposition.split("filename=")[1].strip('"')
    assert DUMP_FILE_NAME.match(name) and name == f"{uid}.dump", disposition
    return await response.read()


async def test_a_dump_holds_every_index_document_setting_and_key_once(
    start: StartProxy, devnodes: LocalNodes, tmp_path: Path
) -> None:
    await wipe(devnodes)
    async with start(dumps={"page_size": 37}) as proxy:
        written = await load_cluster(proxy)
        enqueued, task = await dump(proxy)
        assert set(enqueued) == {"taskUid", "indexUid", "status", "type", "enqueuedAt"}
        assert (enqueued["indexUid"], enqueued["status"], enqueued["type"]) == (
            None,
            "enqueued",
            "dumpCreation",
        )
        assert task["status"] == "succeeded", task
        uid = task["details"]["dumpUid"]
        assert DUMP_UID.match(uid) and set(task["details"]) == {"dumpUid"}, task
        assert task["startedAt"] <= task["finishedAt"] and task["error"] is None
        listed = await (await proxy.get("/tasks?types=dumpCreation")).json()
        assert [t["uid"] for t in listed["results"]] == [enqueued["taskUid"]]

        archive = await download(proxy, uid)
        contents = await cluster_contents(proxy)
        assert (tmp_path / "dumps" / f"{uid}.dump").read_bytes() == archive

    parsed = read_v6_dump(archive)
    assert set(parsed.indexes) == {"books", "shops", "empty", "vectors"}
    assert parsed.tasks == []
    assert_same_contents(parsed, contents)
    # What the clients wrote, field for field: no `_miroir_*` field, every stored field
    # (shops display only `sku`), vectors with their embeddings.
    for uid_, documents in written.items():
        index = parsed.indexes[uid_]
        pk = index.metadata["primaryKey"]
        assert index.documents is not None
        dumped = by_primary_key(index.documents, pk)
        if uid_ == "vectors":
            for document in documents:
                vectors = dumped[document["id"]].pop("_vectors")
                assert vectors["manual"]["embeddings"] == [document["_vectors"]["manual"]]
                assert vectors["manual"]["regenerate"] is False
            documents = [{k: v for k, v in d.items() if k != "_vectors"} for d in documents]
        assert dumped == by_primary_key(documents, pk), uid_
    assert parsed.indexes["empty"].documents == []
    assert parsed.indexes["empty"].metadata["primaryKey"] is None
    settings = parsed.indexes["books"].settings
    assert settings is not None
    assert settings["filterableAttributes"] == ["genre", "year"]
    assert settings["embedders"] == {}
    assert not any("_miroir" in str(index.settings) for index in parsed.indexes.values())
    reader = [k for k in parsed.keys if k.get("name") == "reader"]
    assert len(reader) == 1 and reader[0]["indexes"] == ["books"], parsed.keys


async def test_a_shard_whose_replica_fails_is_read_from_another(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    await wipe(devnodes)
    async with start() as proxy:
        await load_cluster(proxy)
        failing = devnodes.urls[:2]  # two of g0's three nodes: g0 cannot serve alone
        try:
            for url in failing:
                await set_faults(url, errorRate=1.0)
            _, task = await dump(proxy)
        finally:
            for url in failing:
                await set_faults(url, errorRate=0.0)
        assert task["status"] == "succeeded", task
        archive = await download(proxy, task["details"]["dumpUid"])
        # The keys came from a node that answered: its own default keys, not n0's.
        contents = await cluster_contents(proxy)
        assert_same_contents(read_v6_dump(archive), contents, all_keys=False)


async def test_a_dump_no_node_can_serve_fails_and_leaves_no_file(
    start: StartProxy, devnodes: LocalNodes, tmp_path: Path
) -> None:
    await wipe(devnodes)
    async with start() as proxy:
        await load_cluster(proxy)
        try:
            for url in devnodes.urls:
                await set_faults(url, errorRate=1.0)
            _, task = await dump(proxy)
        finally:
            for url in devnodes.urls:
                await set_faults(url, errorRate=0.0)
        assert task["status"] == "failed", task
        assert task["error"]["code"] == "dump_process_failed", task
        assert task["error"]["type"] == "internal"
        assert task["details"] == {"dumpUid": None}
        assert list((tmp_path / "dumps").iterdir()) == []
        operations = await (await proxy.get("/_miroir/operations")).json()
        [operation] = [o for o in operations["results"] if o["kind"] == "dump-export"]
        assert operation["state"] == "failed" and operation["error"], operation


async def test_unknown_uids_and_keys_without_the_right_are_refused(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        for uid in ("20260101-000000000", "nope", "import", "2026010-0000000000"):
            response = await proxy.get(f"/_miroir/dumps/{uid}")
            body = await response.json()
            assert response.status == 404, body
            assert body["code"] == "dump_not_found" and body["type"] == "invalid_request"
            assert set(body) == {"message", "code", "type", "link"}
        anonymous = await proxy.get(
            "/_miroir/dumps/20260101-000000000", headers={"Authorization": ""}
        )
        assert (await anonymous.json())["code"] == "missing_authorization_header"
        unauthenticated = await proxy.get(
            "/_miroir/dumps/20260101-000000000", headers={"Authorization": "Bearer wrong"}
        )
        assert (await unauthenticated.json())["code"] == "invalid_api_key"
        # A key without `dumps.create` may not start one (and no task is registered).
        created = await proxy.post(
            "/keys", json={"actions": ["search"], "indexes": ["*"], "expiresAt": None}
        )
        assert created.status == 201, await created.text()
        searcher = {"Authorization": f"Bearer {(await created.json())['key']}"}
        refused = await proxy.post("/dumps", headers=searcher)
        assert refused.status == 403 and (await refused.json())["code"] == "invalid_api_key"
        listed = await (await proxy.get("/tasks?types=dumpCreation")).json()
        assert listed["results"] == []


@asynccontextmanager
async def pod(nodes: LocalNodes, state_dir: Path, pod_id: str) -> AsyncIterator[ProxyClient]:
    """A proxy pod sharing `state_dir`'s store, writing dumps to a directory of its own."""
    config = fleet_config(
        nodes,
        state_dir,
        coordination={"pod_id": pod_id, "peer_heartbeat_ms": 100},
        dumps={"dir": str(state_dir / pod_id)},
    )
    app = make_app(from_mapping(config, env={}))
    async with TestClient(TestServer(app), headers=MASTER_HEADERS) as client:
        yield client


async def test_a_pod_without_the_file_names_the_pod_that_holds_it(
    devnodes: LocalNodes, tmp_path: Path
) -> None:
    await wipe(devnodes)
    async with pod(devnodes, tmp_path, "pod-a") as a, pod(devnodes, tmp_path, "pod-b") as b:
        await ok(a, "POST", "/indexes/solo/documents", [{"id": 1}, {"id": 2}])
        enqueued, task = await dump(a)
        # The task is the same on both pods; the file is on the pod that wrote it.
        assert (await (await b.get(f"/tasks/{enqueued['taskUid']}")).json()) == task
        uid = task["details"]["dumpUid"]
        held = [name for name in ("pod-a", "pod-b") if (tmp_path / name / f"{uid}.dump").exists()]
        assert len(held) == 1, held
        holder, other = (a, b) if held == ["pod-a"] else (b, a)
        # Both pods run on this machine: like pods sharing a volume, either serves it.
        archive = await download(holder, uid)
        assert await download(other, uid) == archive
        read_v6_dump(archive)
        # Pods with disks of their own: the other pod cannot see the file.
        path = tmp_path / held[0] / f"{uid}.dump"
        path.rename(tmp_path / "elsewhere.dump")
        response = await other.get(f"/_miroir/dumps/{uid}")
        body = await response.json()
        assert response.status == 421, body
        assert body["code"] == "miroir_dump_on_other_pod"
        assert f"`{held[0]}`" in body["message"], body
        gone = await holder.get(f"/_miroir/dumps/{uid}")
        assert gone.status == 404 and (await gone.json())["code"] == "dump_not_found"


async def test_two_dumps_at_once_get_two_uids(start: StartProxy, devnodes: LocalNodes) -> None:
    await wipe(devnodes)
    async with start() as proxy:
        await ok(proxy, "POST", "/indexes/solo/documents", [{"id": 1}])
        answers = await asyncio.gather(proxy.post("/dumps"), proxy.post("/dumps"))
        tasks = [await wait_task(proxy, answer) for answer in answers]
        uids = {task["details"]["dumpUid"] for task in tasks}
        assert len(uids) == 2 and all(t["status"] == "succeeded" for t in tasks), tasks
        for uid in uids:
            parsed = read_v6_dump(await download(proxy, uid))
            assert parsed.indexes["solo"].documents == [{"id": 1}]


async def test_a_canceled_dump_task_stops_the_dump_and_leaves_no_file(
    start: StartProxy, devnodes: LocalNodes, tmp_path: Path
) -> None:
    await wipe(devnodes)
    # Probes wait longer than the nodes stay paused, so no node is marked down meanwhile.
    health = {"interval_ms": 50, "timeout_ms": 5_000, "unhealthy_after": 1}
    async with start(health=health) as proxy:
        await ok(proxy, "POST", "/indexes/solo/documents", [{"id": 1}, {"id": 2}])
        try:
            # Paused nodes hold every call: the dump cannot pass its first node call
            # before the cancel is recorded.
            for url in devnodes.urls:
                await set_faults(url, paused=True)
            enqueued = await (await proxy.post("/dumps")).json()
            canceled = await proxy.post(f"/tasks/cancel?uids={enqueued['taskUid']}")
            assert canceled.status == 200, await canceled.text()
        finally:
            for url in devnodes.urls:
                await set_faults(url, paused=False)
        task = await wait_task(proxy, enqueued)
        assert task["status"] == "canceled", task
        assert task["details"] == {"dumpUid": None}

        async def operation_finished() -> bool:
            listed = await (await proxy.get("/_miroir/operations")).json()
            return all(o["finishedAt"] is not None for o in listed["results"])

        await eventually(operation_finished, "the dump operation finished")
        listed = await (await proxy.get("/_miroir/operations")).json()
        assert [o["state"] for o in listed["results"]] == ["canceled"], listed
        assert list((tmp_path / "dumps").iterdir()) == []


async def test_an_index_the_nodes_no_longer_have_is_left_out(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    await wipe(devnodes)
    async with start() as proxy:
        await ok(proxy, "POST", "/indexes/kept/documents", [{"id": 1}])
        await ok(proxy, "POST", "/indexes/gone/documents", [{"id": 2}])
        # Deleted behind Miroir's back: the catalog still names it, clients do not see it.
        for url in devnodes.urls:
            status, _ = await node_call(url, "DELETE", "/indexes/gone")
            assert status == 202

        async def gone() -> bool:
            listed = await (await proxy.get("/indexes")).json()
            return [index["uid"] for index in listed["results"]] == ["kept"]

        await eventually(gone, "no node has `gone`")
        _, task = await dump(proxy)
        assert task["status"] == "succeeded", task
        parsed = read_v6_dump(await download(proxy, task["details"]["dumpUid"]))
        assert set(parsed.indexes) == {"kept"}
        assert parsed.indexes["kept"].documents == [{"id": 1}]
