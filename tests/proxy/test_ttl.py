"""Expiring documents (`_miroir_expires_at`) through the HTTP API over real devnodes:
expired documents are hidden from searches before any sweep, the field never shows,
invalid values are refused, and the sweep (on demand and periodic) deletes them on every
replica."""

from __future__ import annotations

import time
from typing import Any

from miroir_proxy.cli.processes import LocalNodes

from .devfleet import (
    MASTER_HEADERS,
    ProxyClient,
    StartProxy,
    devnodes,
    eventually,
    fresh_uid,
    node_call,
    node_settings,
    start,
    wait_task,
)

__all__ = ["devnodes", "start"]

FIELD = "_miroir_expires_at"
PAST = 1_000  # 1970
SWEEP = "/_miroir/maintenance/ttl-sweep"


def future() -> int:
    return int(time.time() * 1000) + 86_400_000


def no_reserved(document: dict[str, Any]) -> bool:
    return not any(name.startswith("_miroir_") for name in document)


async def load(client: ProxyClient, uid: str, documents: list[dict[str, Any]]) -> None:
    task = await wait_task(client, await client.post(f"/indexes/{uid}/documents", json=documents))
    assert task["status"] == "succeeded", task


async def search_ids(client: ProxyClient, uid: str, body: dict[str, Any]) -> set[Any]:
    response = await client.post(f"/indexes/{uid}/search", json=body)
    assert response.status == 200, await response.text()
    hits = (await response.json())["hits"]
    assert all(no_reserved(hit) for hit in hits), hits
    return {hit["id"] for hit in hits}


async def test_expired_documents_are_hidden_before_any_sweep(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("ttl")
    async with start(ttl={"enabled": False}) as client:
        settings = client.patch(f"/indexes/{uid}/settings", json={"filterableAttributes": ["id"]})
        await wait_task(client, await settings)
        docs = [
            {"id": 1, "t": "gone", FIELD: PAST},
            {"id": 2, "t": "kept", FIELD: future()},
            {"id": 3, "t": "plain"},
        ]
        await load(client, uid, docs)
        assert await search_ids(client, uid, {"q": ""}) == {2, 3}
        assert await search_ids(client, uid, {"q": "gone"}) == set()
        assert await search_ids(client, uid, {"filter": "id >= 1"}) == {2, 3}
        assert await search_ids(client, uid, {"filter": ["id = 1 OR id = 2"]}) == {2}
        multi = await client.post("/multi-search", json={"queries": [{"indexUid": uid}]})
        assert {h["id"] for h in (await multi.json())["results"][0]["hits"]} == {2, 3}
        # The field is Miroir's: never in a document or in the client's settings ...
        for doc_id in (1, 2, 3):
            document = await client.get(f"/indexes/{uid}/documents/{doc_id}")
            assert document.status == 200 and no_reserved(await document.json())
        listing = await (await client.get(f"/indexes/{uid}/documents")).json()
        assert len(listing["results"]) == 3 and all(map(no_reserved, listing["results"]))
        visible = await (await client.get(f"/indexes/{uid}/settings")).json()
        assert visible["filterableAttributes"] == ["id"]
        one = await client.get(f"/indexes/{uid}/settings/filterable-attributes")
        assert await one.json() == ["id"]
        # ... but filterable on every node, even after the client resets the setting.
        reset = client.delete(f"/indexes/{uid}/settings/filterable-attributes")
        await wait_task(client, await reset)
        for url in devnodes.urls:
            held = (await node_settings(url, uid))["filterableAttributes"]
            assert FIELD in held and "_miroir_shard" in held
        assert await search_ids(client, uid, {"q": ""}) == {2, 3}
        # A node's error about the client's filter names neither of Miroir's fields.
        refused = await client.post(f"/indexes/{uid}/search", json={"filter": "t = gone"})
        assert refused.status == 400
        message = (await refused.json())["message"]
        assert "does not have configured filterable attributes" in message, message
        assert "_miroir_" not in message


async def test_invalid_expiry_values_are_refused(start: StartProxy) -> None:
    uid = fresh_uid("ttl")
    async with start(ttl={"enabled": False}) as client:
        for value in ("tomorrow", -1, 1.5, True, None, [1]):
            response = await client.post(
                f"/indexes/{uid}/documents", json=[{"id": 1}, {"id": 2, FIELD: value}]
            )
            assert response.status == 400, value
            body = await response.json()
            assert body["code"] == "miroir_invalid_expires_at"
            assert body["type"] == "invalid_request"
            assert body["link"].endswith("#miroir_invalid_expires_at")
            assert f"`{FIELD}` must be a non-negative integer" in body["message"]
        assert (await client.get(f"/indexes/{uid}")).status == 404
        # Other `_miroir_` fields stay refused.
        other = await client.post(f"/indexes/{uid}/documents", json=[{"id": 1, "_miroir_x": 1}])
        assert (await other.json())["code"] == "miroir_reserved_field"


async def test_sweep_deletes_expired_documents_on_every_replica(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid, other = fresh_uid("ttl"), fresh_uid("ttl")
    async with start(ttl={"enabled": False, "max_deletes_per_sweep": 3}) as client:
        docs = [{"id": i, FIELD: PAST} for i in range(5)]
        docs += [{"id": 10, FIELD: future()}, {"id": 11}]
        await load(client, uid, docs)
        await load(client, other, [{"id": 1}])
        refused = await client.post(SWEEP, headers={"Authorization": "Bearer wrong"})
        assert refused.status == 403
        # At most 3 per index and pass: two passes take the 5 expired documents.
        deleted = 0
        for expected in (3, 2):
            response = await client.post(SWEEP, headers=MASTER_HEADERS)
            assert response.status == 200, await response.text()
            by_index = {i["indexUid"]: i for i in (await response.json())["indexes"]}
            assert by_index[other] == {"indexUid": other, "expiredDocuments": 0, "taskUid": None}
            swept = by_index[uid]
            assert swept["expiredDocuments"] == expected
            task = await wait_task(client, swept)
            assert task["status"] == "succeeded" and task["type"] == "documentDeletion"
            deleted += task["details"]["deletedDocuments"]
        assert deleted == 5
        for doc_id in range(5):
            assert (await client.get(f"/indexes/{uid}/documents/{doc_id}")).status == 404
            for url in devnodes.urls:
                status, _ = await node_call(url, "GET", f"/indexes/{uid}/documents/{doc_id}")
                assert status == 404
        for doc_id in (10, 11):
            assert (await client.get(f"/indexes/{uid}/documents/{doc_id}")).status == 200
        again = await (await client.post(SWEEP, headers=MASTER_HEADERS)).json()
        assert {i["indexUid"]: i["taskUid"] for i in again["indexes"]}[uid] is None


async def test_the_periodic_sweep_deletes_expired_documents(start: StartProxy) -> None:
    uid = fresh_uid("ttl")
    async with start(ttl={"interval_ms": 100}) as client:
        await load(client, uid, [{"id": 1, FIELD: PAST}, {"id": 2, FIELD: future()}])

        async def gone() -> bool:
            return (await client.get(f"/indexes/{uid}/documents/1")).status == 404

        await eventually(gone, "the expired document was swept")
        assert (await client.get(f"/indexes/{uid}/documents/2")).status == 200
