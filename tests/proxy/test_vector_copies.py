"""Documents copied from node to node (a reshard's backfill here; group sync and node moves
read shards the same way) keep their user-provided embeddings, over real devnodes."""

from __future__ import annotations

from typing import Any

from miroir_proxy.cli.processes import LocalNodes

from .devfleet import StartProxy, devnodes, eventually, fresh_uid, start, wait_task

__all__ = ["devnodes", "start"]

VECTOR = [0.25, 0.5, 0.75]


async def test_a_resharded_index_keeps_user_provided_embeddings(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("vectors")
    async with start() as client:
        embedders = {"embedders": {"manual": {"source": "userProvided", "dimensions": 3}}}
        settings = await client.patch(f"/indexes/{uid}/settings", json=embedders)
        assert (await wait_task(client, settings))["status"] == "succeeded"
        documents = [{"id": i, "_vectors": {"manual": VECTOR}} for i in range(20)]
        added = await client.post(f"/indexes/{uid}/documents", json=documents)
        assert (await wait_task(client, added))["status"] == "succeeded"

        started = await client.post(
            f"/_miroir/indexes/{uid}/reshard", json={"shards": 4, "retainS": 0}
        )
        assert started.status == 202, await started.text()
        path = f"/_miroir/operations/{(await started.json())['operation']}"
        operation: dict[str, Any] = {}

        async def finished() -> bool:
            operation.update(await (await client.get(path)).json())
            return operation["state"] != "running"

        await eventually(finished, "the reshard finishes")
        assert operation["state"] == "succeeded", operation
        listed = await client.post(
            f"/indexes/{uid}/documents/fetch", json={"limit": 100, "retrieveVectors": True}
        )
        assert listed.status == 200, await listed.text()
        results = (await listed.json())["results"]
    assert sorted(d["id"] for d in results) == list(range(20))
    assert all(d["_vectors"]["manual"]["embeddings"] == [VECTOR] for d in results), results
