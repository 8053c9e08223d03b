"""Paging through documents when replicas hold a shard's documents in different orders (a
replica that got them late: a hint replay, a repair, a copy onto a new node), over real
devnodes: every page of a listing reads the same replicas, so pages never overlap or skip."""

from __future__ import annotations

from typing import Any

from miroir_proxy.cli.processes import LocalNodes

from .devfleet import StartProxy, devnodes, eventually, fresh_uid, node_call, start, wait_task

__all__ = ["devnodes", "start"]

COUNT = 40
GROUP_1 = (3, 4)  # devfleet's g1: two nodes, each holding every shard at RF=2


async def reorder(devnodes: LocalNodes, node: int, uid: str) -> None:
    """Delete every document on one node and add them back in reverse order, with Miroir's
    own fields as they were: same contents, another internal order."""
    url = devnodes.urls[node]
    status, page = await node_call(url, "POST", f"/indexes/{uid}/documents/fetch", {"limit": 1_000})
    assert status == 200, page
    documents = page["results"]
    assert documents, f"node {node} holds nothing of {uid}"
    ids = [d["id"] for d in documents]
    for method, path, body in (
        ("POST", f"/indexes/{uid}/documents/delete-batch", ids),
        ("POST", f"/indexes/{uid}/documents", documents[::-1]),
    ):
        status, task = await node_call(url, method, path, body)
        assert status == 202, task
        task_path = f"/tasks/{task['taskUid']}"

        async def succeeded(task_path: str = task_path) -> bool:
            return (await node_call(url, "GET", task_path))[1]["status"] == "succeeded"

        await eventually(succeeded, f"{task_path} on node {node}")


async def test_pages_never_overlap_when_replicas_order_documents_differently(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    uid = fresh_uid("listing")
    async with start() as client:
        created = await client.post("/indexes", json={"uid": uid, "primaryKey": "id"})
        assert (await wait_task(client, created))["status"] == "succeeded"
        documents = [{"id": i, "title": f"book {i}"} for i in range(COUNT)]
        added = await client.post(f"/indexes/{uid}/documents", json=documents)
        assert (await wait_task(client, added))["status"] == "succeeded"
        for node in GROUP_1:
            await reorder(devnodes, node, uid)

        seen: list[Any] = []
        for offset in range(0, COUNT, 5):  # searches' rotation would alternate the groups
            response = await client.get(f"/indexes/{uid}/documents?offset={offset}&limit=5")
            assert response.status == 200, await response.text()
            seen.extend(d["id"] for d in (await response.json())["results"])
    assert len(seen) == COUNT and sorted(seen) == list(range(COUNT)), seen
