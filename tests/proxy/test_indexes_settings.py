"""Index and settings broadcasts through the proxy over five real devnodes."""

from __future__ import annotations

from typing import Any

from miroir_proxy.api.appkeys import CATALOG
from miroir_proxy.cli.processes import LocalNodes
from miroir_proxy.dispatch.stats import merge_index_stats

from .devfleet import (
    ProxyClient,
    StartProxy,
    devnodes,
    eventually,
    fresh_uid,
    node_call,
    node_settings,
    set_faults,
    start,
    wait_task,
)

__all__ = ["devnodes", "start"]

SHARD = "_miroir_shard"
EXPIRES = "_miroir_expires_at"


async def create(proxy: ProxyClient, uid: str, **body: Any) -> dict[str, Any]:
    return await wait_task(proxy, await proxy.post("/indexes", json={"uid": uid, **body}))


async def test_create_reaches_every_node_with_the_shard_field_hidden(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        uid = fresh_uid("movies")
        task = await create(proxy, uid, primaryKey="id")
        assert task["status"] == "succeeded", task
        assert task["type"] == "indexCreation" and task["details"] == {"primaryKey": "id"}
        for url in devnodes.urls:
            assert (await node_settings(url, uid))["filterableAttributes"] == [EXPIRES, SHARD]
        index = await (await proxy.get(f"/indexes/{uid}")).json()
        assert index["uid"] == uid and index["primaryKey"] == "id"
        listed = await (await proxy.get("/indexes", params={"limit": "1000"})).json()
        assert uid in [i["uid"] for i in listed["results"]]
        assert (await (await proxy.get(f"/indexes/{uid}/settings")).json())[
            "filterableAttributes"
        ] == []
        again = await create(proxy, uid)
        assert again["status"] == "failed"
        assert again["error"]["code"] == "index_already_exists"
        assert again["error"]["message"] == f"Index `{uid}` already exists."


async def test_create_is_rolled_back_when_a_node_refuses(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        uid = fresh_uid("refused")
        broken = devnodes.urls[4]
        await set_faults(broken, errorRate=1.0)
        try:
            response = await proxy.post("/indexes", json={"uid": uid})
        finally:
            await set_faults(broken, errorRate=0.0)
        assert response.status == 503
        assert (await response.json())["code"] == "miroir_node_unavailable"

        async def gone_everywhere() -> bool:
            statuses = [(await node_call(u, "GET", f"/indexes/{uid}"))[0] for u in devnodes.urls]
            return statuses == [404] * len(statuses)

        await eventually(gone_everywhere, "the half-created index is deleted again")
        assert (await proxy.get(f"/indexes/{uid}")).status == 404
        assert (await create(proxy, uid))["status"] == "succeeded"


async def test_invalid_uid_is_the_nodes_synchronous_error(start: StartProxy) -> None:
    async with start() as proxy:
        response = await proxy.post("/indexes", json={"uid": "bad uid!"})
        assert response.status == 400
        assert (await response.json())["code"] == "invalid_index_uid"
        response = await proxy.post("/indexes", json={"primaryKey": "id"})
        assert response.status == 400
        assert (await response.json())["code"] == "missing_index_uid"


async def test_delete_broadcasts_and_a_missing_index_fails_the_task(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        uid = fresh_uid("doomed")
        await create(proxy, uid)
        task = await wait_task(proxy, await proxy.delete(f"/indexes/{uid}"))
        assert task["status"] == "succeeded" and task["type"] == "indexDeletion"
        for url in devnodes.urls:
            assert (await node_call(url, "GET", f"/indexes/{uid}"))[0] == 404
        task = await wait_task(proxy, await proxy.delete(f"/indexes/{uid}"))
        assert task["status"] == "failed" and task["error"]["code"] == "index_not_found"


async def test_settings_round_trip_keeps_the_shard_field_on_nodes_only(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        uid = fresh_uid("tuned")
        update = {"filterableAttributes": ["genre"], "stopWords": ["the"]}
        task = await wait_task(proxy, await proxy.patch(f"/indexes/{uid}/settings", json=update))
        assert task["status"] == "succeeded" and task["details"] == update
        for url in devnodes.urls:
            settings = await node_settings(url, uid)
            assert settings["filterableAttributes"] == ["genre", EXPIRES, SHARD]
            assert settings["stopWords"] == ["the"]
        visible = await (await proxy.get(f"/indexes/{uid}/settings")).json()
        assert visible["filterableAttributes"] == ["genre"] and visible["stopWords"] == ["the"]
        sub = f"/indexes/{uid}/settings/filterable-attributes"
        task = await wait_task(proxy, await proxy.put(sub, json=["year"]))
        assert task["details"] == {"filterableAttributes": ["year"]}
        assert await (await proxy.get(sub)).json() == ["year"]
        task = await wait_task(proxy, await proxy.delete(sub))
        assert task["status"] == "succeeded"
        assert await (await proxy.get(sub)).json() == []
        task = await wait_task(
            proxy,
            await proxy.patch(f"/indexes/{uid}/settings/faceting", json={"maxValuesPerFacet": 7}),
        )
        assert task["status"] == "succeeded"
        assert (await (await proxy.get(f"/indexes/{uid}/settings/faceting")).json())[
            "maxValuesPerFacet"
        ] == 7
        task = await wait_task(proxy, await proxy.delete(f"/indexes/{uid}/settings"))
        assert task["status"] == "succeeded"
        for url in devnodes.urls:
            settings = await node_settings(url, uid)
            assert settings["filterableAttributes"] == [EXPIRES, SHARD]
            assert settings["stopWords"] == []
        assert (await proxy.put(f"/indexes/{uid}/settings/faceting", json={})).status == 405


async def test_displayed_attributes_keep_the_shard_field_on_nodes_only(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    # Search hits must carry `_miroir_shard`: the merge breaks ties by it.
    async with start() as proxy:
        uid = fresh_uid("shown")
        update = {"displayedAttributes": ["title"]}
        task = await wait_task(proxy, await proxy.patch(f"/indexes/{uid}/settings", json=update))
        assert task["status"] == "succeeded" and task["details"] == update
        for url in devnodes.urls:
            assert (await node_settings(url, uid))["displayedAttributes"] == ["title", SHARD]
        visible = await (await proxy.get(f"/indexes/{uid}/settings")).json()
        assert visible["displayedAttributes"] == ["title"]
        sub = f"/indexes/{uid}/settings/displayed-attributes"
        task = await wait_task(proxy, await proxy.put(sub, json=["id", "year"]))
        assert task["details"] == {"displayedAttributes": ["id", "year"]}
        assert await (await proxy.get(sub)).json() == ["id", "year"]
        for url in devnodes.urls:
            assert (await node_settings(url, uid))["displayedAttributes"] == ["id", "year", SHARD]
        task = await wait_task(proxy, await proxy.delete(sub))
        assert task["status"] == "succeeded"
        assert await (await proxy.get(sub)).json() == ["*"]
        for url in devnodes.urls:
            assert (await node_settings(url, uid))["displayedAttributes"] == ["*"]


async def test_settings_rollback_restores_the_nodes_already_updated(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        uid = fresh_uid("rollback")
        path = f"/indexes/{uid}/settings/stop-words"
        assert (await wait_task(proxy, await proxy.put(path, json=["a"])))["status"] == "succeeded"
        broken = devnodes.urls[-1]
        await set_faults(broken, errorRate=1.0)
        try:
            response = await proxy.put(path, json=["b"])
        finally:
            await set_faults(broken, errorRate=0.0)
        assert response.status == 503

        async def restored() -> bool:
            words = [(await node_settings(u, uid))["stopWords"] for u in devnodes.urls]
            return words == [["a"]] * len(words)

        await eventually(restored, "every node is back to the previous stop words")
        assert await (await proxy.get(path)).json() == ["a"]


async def test_invalid_settings_are_refused_without_creating_the_index(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        uid = fresh_uid("never")
        response = await proxy.patch(f"/indexes/{uid}/settings", json={"rankingRules": 3})
        assert response.status == 400
        assert (await response.json())["code"] == "invalid_settings_ranking_rules"

        async def absent() -> bool:
            return all(
                [(await node_call(u, "GET", f"/indexes/{uid}"))[0] == 404 for u in devnodes.urls]
            )

        await eventually(absent, "the index created for the refused update is gone")
        assert (await proxy.get(f"/indexes/{uid}/settings")).status == 404


def test_stats_merge_counts_each_document_once() -> None:
    node = {
        "numberOfDocuments": 6,
        "rawDocumentDbSize": 600,
        "isIndexing": False,
        "fieldDistribution": {"id": 6, "title": 4, SHARD: 6},
    }
    # Three nodes at two copies per shard hold 9 logical documents; one node is missing,
    # so the summed figures are scaled up to the exact count.
    merged = merge_index_stats([node, node], copies=2, exact=9)
    assert merged["numberOfDocuments"] == 9
    assert merged["fieldDistribution"] == {"id": 9, "title": 6}
    assert merged["rawDocumentDbSize"] == 600 and merged["avgDocumentSize"] == 66
    steady = merge_index_stats([node, node, node], copies=2, exact=9)
    assert steady["fieldDistribution"] == {"id": 9, "title": 6}


async def test_stats_count_logical_documents_even_with_a_replica_down(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        uid = fresh_uid("counted")
        await create(proxy, uid, primaryKey="id")
        docs = [{"id": i, "title": f"t{i}", **({"extra": 1} if i < 10 else {})} for i in range(40)]
        task = await wait_task(proxy, await proxy.post(f"/indexes/{uid}/documents", json=docs))
        assert task["status"] == "succeeded", task
        expected = {"extra": 10, "id": 40, "title": 40}
        stats = await (await proxy.get(f"/indexes/{uid}/stats")).json()
        assert stats["numberOfDocuments"] == 40 and stats["fieldDistribution"] == expected
        everything = await (await proxy.get("/stats")).json()
        assert everything["indexes"][uid]["numberOfDocuments"] == 40
        assert everything["indexes"][uid]["fieldDistribution"] == expected
        devnodes.nodes[0].pause()
        try:

            async def marked_down() -> bool:
                topology = await (await proxy.get("/_miroir/topology")).json()
                return bool(topology["groups"][0]["nodes"][0]["health"] == "unhealthy")

            await eventually(marked_down, "the paused node is marked unhealthy")
            response = await proxy.get(f"/indexes/{uid}/stats")
            assert "X-Miroir-Degraded" not in response.headers
            stats = await response.json()
            assert stats["numberOfDocuments"] == 40 and stats["fieldDistribution"] == expected
        finally:
            devnodes.nodes[0].resume()


async def test_swap_follows_in_the_catalog(start: StartProxy) -> None:
    async with start() as proxy:
        first, second = fresh_uid("left"), fresh_uid("right")
        await create(proxy, first, primaryKey="left_id")
        await create(proxy, second, primaryKey="right_id")
        swap = [{"indexes": [first, second]}]
        task = await wait_task(proxy, await proxy.post("/swap-indexes", json=swap))
        assert task["status"] == "succeeded", task
        assert task["details"] == {"swaps": [{"indexes": [first, second], "rename": False}]}
        assert proxy.app is not None
        catalog = proxy.app[CATALOG]
        assert (await catalog.require(first)).primary_key == "right_id"
        assert (await (await proxy.get(f"/indexes/{first}")).json())["primaryKey"] == "right_id"
        bad = await proxy.post("/swap-indexes", json=[{"indexes": [first]}])
        assert bad.status == 400
        assert (await bad.json())["code"] == "invalid_swap_indexes"


async def test_webhooks_live_in_the_store(start: StartProxy) -> None:
    async with start() as proxy:
        created = await proxy.post(
            "/webhooks", json={"url": "https://example.com/hook", "headers": {"a": "1"}}
        )
        assert created.status == 201
        hook = await created.json()
        assert hook["isEditable"] is True and hook["headers"] == {"a": "1"}
        path = f"/webhooks/{hook['uuid']}"
        patched = await proxy.patch(path, json={"headers": {"a": None, "b": "2"}})
        assert (await patched.json())["headers"] == {"b": "2"}
        bad = await proxy.post("/webhooks", json={"url": "not a url"})
        assert (await bad.json())["code"] == "invalid_webhook_url"
    async with start() as proxy:
        listed = await (await proxy.get("/webhooks")).json()
        assert [h["uuid"] for h in listed["results"]] == [hook["uuid"]]
        assert (await proxy.delete(path)).status == 204
        missing = await proxy.get(path)
        assert missing.status == 404 and (await missing.json())["code"] == "webhook_not_found"
