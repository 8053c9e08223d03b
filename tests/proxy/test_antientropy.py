"""Anti-entropy through the HTTP API over real devnodes (g0: 3 nodes, g1: 2 nodes, RF=2, so
every shard has 4 replicas): documents deleted or altered directly on a node are put back,
deletes made through Miroir while a replica was down reach it when it returns and are
never undone, expired documents are never brought back, and the pass is observable
(operation progress, last pass, metrics)."""

from __future__ import annotations

import time
from typing import Any

from miroir_proxy.cli.processes import LocalNodes

from .devfleet import (
    DEADLINE_S,
    ProxyClient,
    StartProxy,
    devnodes,
    eventually,
    fresh_uid,
    node_call,
    start,
    wait_task,
)

__all__ = ["devnodes", "start"]

PASS = "/_miroir/maintenance/anti-entropy"
G1 = (3, 4)  # the two nodes of group g1: each holds every shard


async def load(client: ProxyClient, uid: str, documents: list[dict[str, Any]]) -> None:
    task = await wait_task(client, await client.post(f"/indexes/{uid}/documents", json=documents))
    assert task["status"] == "succeeded", task


async def node_document(url: str, uid: str, doc_id: Any) -> dict[str, Any] | None:
    status, body = await node_call(url, "GET", f"/indexes/{uid}/documents/{doc_id}")
    assert status in (200, 404), body
    return body if status == 200 else None


async def holders(nodes: LocalNodes, uid: str, doc_id: Any) -> list[int]:
    return [i for i, url in enumerate(nodes.urls) if await node_document(url, uid, doc_id)]


async def node_write(url: str, method: str, path: str, body: Any = None) -> None:
    """A change made directly on a node, behind Miroir's back, waited for."""
    status, answer = await node_call(url, method, path, body)
    assert status == 202, answer
    task: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal task
        _, task = await node_call(url, "GET", f"/tasks/{answer['taskUid']}")
        return task["status"] in ("succeeded", "failed")

    await eventually(done, f"node task {answer['taskUid']}")
    assert task["status"] == "succeeded", task


async def run_pass(client: ProxyClient) -> dict[str, Any]:
    """Start a pass, wait for its operation, return its progress (the pass's figures)."""
    response = await client.post(PASS)
    assert response.status == 202, await response.text()
    started = await response.json()
    assert started["kind"] == "anti-entropy" and started["state"] == "running"
    operation: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal operation
        operation = await (await client.get(f"/_miroir/operations/{started['operation']}")).json()
        return operation["state"] != "running"

    await eventually(finished, "the anti-entropy pass finished")
    assert operation["state"] == "succeeded", operation
    progress: dict[str, Any] = operation["progress"]
    assert progress["unit"] == "shards" and progress["done"] == progress["total"]
    assert progress["shardsScanned"] == progress["total"]
    return progress


async def test_one_pass_restores_a_deleted_copy_and_an_altered_one(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ae")
    urls = devnodes.urls
    async with start(anti_entropy={"enabled": False}) as client:
        await load(client, uid, [{"id": i, "title": f"book {i}"} for i in range(40)])
        clean = await run_pass(client)
        assert clean["mismatches"] == 0 and clean["repaired"] == 0
        assert clean["documentsScanned"] == 40 * 4
        assert clean["unreachableReplicas"] == [] and clean["errors"] == []

        # Behind Miroir's back: one replica loses document 3, another gets document 7
        # changed (a partial update keeps Miroir's fields), a third gets document 9
        # replaced by a version without them.
        gone_from = (await holders(devnodes, uid, 3))[0]
        await node_write(urls[gone_from], "DELETE", f"/indexes/{uid}/documents/3")
        altered_on = (await holders(devnodes, uid, 7))[-1]
        await node_write(
            urls[altered_on], "PUT", f"/indexes/{uid}/documents", [{"id": 7, "title": "changed"}]
        )
        replaced_on = (await holders(devnodes, uid, 9))[1]
        original_9 = await node_document(urls[replaced_on], uid, 9)
        assert original_9 is not None
        await node_write(
            urls[replaced_on],
            "POST",
            f"/indexes/{uid}/documents",
            [{"id": 9, "title": "replaced", "_miroir_shard": original_9["_miroir_shard"]}],
        )

        repaired = await run_pass(client)
        assert repaired["mismatches"] == 3 and repaired["missingOrStale"] == 3
        assert repaired["repaired"] == 3 and repaired["conflicts"] == 0

        for doc_id, title in ((3, "book 3"), (7, "book 7"), (9, "book 9")):
            found = await holders(devnodes, uid, doc_id)
            assert len(found) == 4, (doc_id, found)
            for i in found:
                copy = await node_document(urls[i], uid, doc_id)
                assert copy is not None and copy["title"] == title, (i, copy)
        repaired_9 = await node_document(urls[replaced_on], uid, 9)
        assert repaired_9 == original_9  # Miroir's stamp is back too
        # Through Miroir, nothing of the bookkeeping shows.
        document = await (await client.get(f"/indexes/{uid}/documents/7")).json()
        assert document == {"id": 7, "title": "book 7"}
        found = await client.post(f"/indexes/{uid}/search", json={"q": "book", "limit": 50})
        hits = (await found.json())["hits"]
        assert len(hits) == 40 and not any(k.startswith("_miroir_") for h in hits for k in h)
        # The stamp is Miroir's: a client may not set it.
        stamped = await client.post(
            f"/indexes/{uid}/documents", json=[{"id": 1, "_miroir_updated_at": 1}]
        )
        assert stamped.status == 400
        assert (await stamped.json())["code"] == "miroir_reserved_field"

        again = await run_pass(client)
        assert again["mismatches"] == 0 and again["repaired"] == 0


async def test_a_delete_made_while_a_replica_was_down_is_not_undone(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ae")
    down = devnodes.nodes[G1[0]]
    # Handoff off: its replay would give the returning replica the deletes; what is tested
    # here is the tombstones that stand behind it (a node past its hint bound).
    async with start(anti_entropy={"enabled": False}, handoff={"enabled": False}) as client:
        await load(client, uid, [{"id": i, "title": f"song {i}"} for i in range(20)])
        down.stop()
        try:
            deleted = await client.post(f"/indexes/{uid}/documents/delete-batch", json=[4, 5])
            task = await wait_task(client, deleted)
            assert task["status"] == "succeeded", task
            single = await wait_task(client, await client.delete(f"/indexes/{uid}/documents/6"))
            assert single["status"] == "succeeded", single
        finally:
            down.start()
            down.wait_healthy(DEADLINE_S)
        # The returning replica still holds them; every other replica lost them.
        for doc_id in (4, 5, 6):
            assert await holders(devnodes, uid, doc_id) == [G1[0]]

        progress = await run_pass(client)
        assert progress["deleted"] == 3 and progress["repaired"] == 3
        assert progress["mismatches"] == 3
        for doc_id in (4, 5, 6):
            assert await holders(devnodes, uid, doc_id) == []
            assert (await client.get(f"/indexes/{uid}/documents/{doc_id}")).status == 404
        listing = await (await client.get(f"/indexes/{uid}/documents?limit=100")).json()
        assert listing["total"] == 17
        # A document written again after its delete is not touched by the tombstone.
        await load(client, uid, [{"id": 5, "title": "song 5 again"}])
        assert (await run_pass(client))["mismatches"] == 0
        assert len(await holders(devnodes, uid, 5)) == 4
        for doc_id in range(7, 20):
            assert len(await holders(devnodes, uid, doc_id)) == 4


async def test_filter_and_clear_all_deletes_made_while_a_replica_was_down_stay(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    by_filter, cleared = fresh_uid("ae"), fresh_uid("ae")
    down = devnodes.nodes[G1[1]]
    # Handoff off: its replay would give the returning replica the deletes; what is tested
    # here is the tombstones that stand behind it (a node past its hint bound).
    async with start(anti_entropy={"enabled": False}, handoff={"enabled": False}) as client:
        settings = client.patch(
            f"/indexes/{by_filter}/settings", json={"filterableAttributes": ["genre"]}
        )
        assert (await wait_task(client, await settings))["status"] == "succeeded"
        genres = ["rock", "jazz"]
        await load(client, by_filter, [{"id": i, "genre": genres[i % 2]} for i in range(20)])
        await load(client, cleared, [{"id": i} for i in range(10)])
        down.stop()
        try:
            rock = client.post(
                f"/indexes/{by_filter}/documents/delete", json={"filter": "genre = rock"}
            )
            assert (await wait_task(client, await rock))["status"] == "succeeded"
            clear = await wait_task(client, await client.delete(f"/indexes/{cleared}/documents"))
            assert clear["status"] == "succeeded", clear
        finally:
            down.start()
            down.wait_healthy(DEADLINE_S)
        assert await holders(devnodes, by_filter, 0) == [G1[1]]
        assert await holders(devnodes, cleared, 0) == [G1[1]]
        # Written after the clear: kept.
        await load(client, cleared, [{"id": 100}])

        progress = await run_pass(client)
        assert progress["deleted"] == 10 + 10 and progress["missingOrStale"] == 0
        for doc_id in range(20):
            expected = 0 if doc_id % 2 == 0 else 4
            assert len(await holders(devnodes, by_filter, doc_id)) == expected, doc_id
        for doc_id in range(10):
            assert await holders(devnodes, cleared, doc_id) == []
        assert len(await holders(devnodes, cleared, 100)) == 4
        assert (await run_pass(client))["mismatches"] == 0


async def test_an_expired_document_is_never_brought_back(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ae")
    urls = devnodes.urls
    async with start(anti_entropy={"enabled": False}, ttl={"enabled": False}) as client:
        await load(
            client,
            uid,
            [{"id": 1, "title": "gone", "_miroir_expires_at": 1_000}, {"id": 2, "title": "kept"}],
        )
        # One replica already lost the expired document (swept there only).
        first = (await holders(devnodes, uid, 1))[0]
        await node_write(urls[first], "DELETE", f"/indexes/{uid}/documents/1")
        assert len(await holders(devnodes, uid, 1)) == 3

        progress = await run_pass(client)
        assert progress["expired"] == 1 and progress["repaired"] == 3
        assert progress["missingOrStale"] == 0
        assert await holders(devnodes, uid, 1) == []
        assert len(await holders(devnodes, uid, 2)) == 4
        assert (await run_pass(client))["mismatches"] == 0
        assert await holders(devnodes, uid, 1) == []


async def test_report_only_counts_without_repairing(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ae")
    urls = devnodes.urls
    async with start(anti_entropy={"enabled": False, "auto_repair": False}) as client:
        await load(client, uid, [{"id": i} for i in range(10)])
        victim = (await holders(devnodes, uid, 2))[0]
        await node_write(urls[victim], "DELETE", f"/indexes/{uid}/documents/2")
        progress = await run_pass(client)
        assert progress["mismatches"] == 1 and progress["repaired"] == 0
        assert progress["autoRepair"] is False
        assert len(await holders(devnodes, uid, 2)) == 3


async def test_the_scheduled_pass_repairs_and_is_observable(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ae")
    urls = devnodes.urls
    async with start(anti_entropy={"interval_ms": 100}) as client:
        await load(client, uid, [{"id": i, "n": i} for i in range(10)])
        victim = (await holders(devnodes, uid, 8))[-1]
        await node_write(urls[victim], "DELETE", f"/indexes/{uid}/documents/8")

        async def restored() -> bool:
            return len(await holders(devnodes, uid, 8)) == 4

        await eventually(restored, "the scheduled pass restored document 8")
        status: dict[str, Any] = {}

        async def reported() -> bool:
            nonlocal status
            status = await (await client.get(PASS)).json()
            return status["lastPass"] is not None

        await eventually(reported, "a finished scheduled pass")
        assert status["autoRepair"] is True and status["lastPass"]["shardsScanned"] >= 8
        metrics = await (await client.get("/_miroir/metrics")).text()
        values = {
            line.split()[0]: float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("miroir_antientropy_")
        }
        assert values["miroir_antientropy_documents_repaired_total"] >= 1
        assert values["miroir_antientropy_mismatches_total"] >= 1
        assert values["miroir_antientropy_shards_scanned_total"] >= 8
        assert 0 < values["miroir_antientropy_last_pass_timestamp_seconds"] <= time.time()


async def test_the_pass_needs_the_admin_key(start: StartProxy) -> None:
    async with start(anti_entropy={"enabled": False}, admin_key="admin-key-0123456789") as client:
        refused = await client.post(PASS, headers={"Authorization": "Bearer wrong"})
        assert refused.status in (401, 403)
        assert {"message", "code", "type", "link"} <= (await refused.json()).keys()


async def test_scheduled_passes_take_a_few_shards_each_and_cover_them_all(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ae")
    urls = devnodes.urls
    async with start(anti_entropy={"interval_ms": 50, "shards_per_pass": 3}) as client:
        await load(client, uid, [{"id": i} for i in range(40)])
        for doc_id in range(0, 40, 5):
            victim = (await holders(devnodes, uid, doc_id))[0]
            await node_write(urls[victim], "DELETE", f"/indexes/{uid}/documents/{doc_id}")

        async def all_restored() -> bool:
            for doc_id in range(0, 40, 5):
                if len(await holders(devnodes, uid, doc_id)) != 4:
                    return False
            return True

        await eventually(all_restored, "every damaged shard repaired by the rotating passes")
        status = await (await client.get(PASS)).json()
        assert status["shardsPerPass"] == 3 and status["lastPass"]["shardsScanned"] == 3


async def test_a_node_without_the_index_is_left_out_not_filled(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ae")
    urls = devnodes.urls
    async with start(anti_entropy={"enabled": False}) as client:
        await load(client, uid, [{"id": i} for i in range(10)])
        await node_write(urls[G1[0]], "DELETE", f"/indexes/{uid}")
        progress = await run_pass(client)
        assert progress["mismatches"] == 0 and progress["repaired"] == 0
        assert len(progress["unreachableReplicas"]) == 8  # n3, for each of the 8 shards
        assert all(r.startswith("n3 ") for r in progress["unreachableReplicas"])
        status, _ = await node_call(urls[G1[0]], "GET", f"/indexes/{uid}")
        assert status == 404


async def test_a_repaired_copy_keeps_its_user_provided_embeddings(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ae")
    async with start(anti_entropy={"enabled": False}) as client:
        embedders = {"embedders": {"manual": {"source": "userProvided", "dimensions": 3}}}
        settings = await client.patch(f"/indexes/{uid}/settings", json=embedders)
        assert (await wait_task(client, settings))["status"] == "succeeded"
        vector = [0.25, 0.5, 0.75]
        await load(client, uid, [{"id": i, "_vectors": {"manual": vector}} for i in range(10)])
        url = devnodes.urls[G1[0]]
        await node_write(url, "POST", f"/indexes/{uid}/documents/delete-batch", [7])

        progress = await run_pass(client)
        assert progress["repaired"] >= 1, progress
        status, body = await node_call(
            url, "POST", f"/indexes/{uid}/documents/fetch",
            {"ids": ["7"], "retrieveVectors": True},
        )  # fmt: skip
        assert status == 200, body
        (copy,) = body["results"]
        assert copy["_vectors"]["manual"]["embeddings"] == [vector], copy
