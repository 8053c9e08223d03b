"""Miroir tasks over fake nodes: status aggregation (quorum / all), failure breakdown, the
deadline for dead nodes, `/tasks` and `/batches` routes, and restart persistence."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from miroir_proxy.api.appkeys import TASKS
from miroir_proxy.state.store import NodeTaskRef

DEADLINE_S = 10.0
POLL_S = 0.01
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
DURATION = re.compile(r"^PT\d+(\.\d{6})?S$")
TASK_KEYS = [
    "uid",
    "batchUid",
    "indexUid",
    "status",
    "type",
    "canceledBy",
    "details",
    "error",
    "duration",
    "enqueuedAt",
    "startedAt",
    "finishedAt",
]
NODE_ERROR = {
    "message": "Index `books`: disk on fire.",
    "code": "io_error",
    "type": "system",
    "link": "https://docs.meilisearch.com/errors#io_error",
}


async def get_task(client: Any, uid: int) -> dict[str, Any]:
    response = await client.get(f"/tasks/{uid}")
    assert response.status == 200
    task: dict[str, Any] = await response.json()
    return task


async def wait_status(client: Any, uid: int, *statuses: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while True:
        task = await get_task(client, uid)
        if task["status"] in statuses or loop.time() > deadline:
            return task
        await asyncio.sleep(POLL_S)


async def add(client: Any, docs: list[dict[str, Any]], index: str = "books") -> int:
    response = await client.post(f"/indexes/{index}/documents", json=docs)
    assert response.status == 202, await response.text()
    uid: int = (await response.json())["taskUid"]
    return uid


async def polled_again(node: Any) -> None:
    """Until `node` is asked for its tasks once more (an aggregation round ran)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    before = sum(r.path == "/tasks" for r in node.received)
    while sum(r.path == "/tasks" for r in node.received) == before:
        assert loop.time() < deadline, "no aggregation round within the deadline"
        await asyncio.sleep(POLL_S)


async def add_held(client: Any, nodes: Any) -> tuple[int, dict[str, Any]]:
    """A write of 20 documents whose node tasks every node holds as processing."""
    for node in nodes.nodes:
        node.hold_tasks = True
    uid = await add(client, [{"id": i} for i in range(20)])
    return uid, await wait_status(client, uid, "processing")


async def test_processing_until_every_node_task_finishes(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    async with proxy(nodes.config(tmp_path)) as client:
        uid, task = await add_held(client, nodes)
        assert task["status"] == "processing"
        assert TIMESTAMP.match(task["startedAt"])
        assert task["finishedAt"] is None
        assert task["duration"] is None
        nodes.nodes[0].release()
        await polled_again(nodes.nodes[1])  # a round saw node 0 done: still waiting on the others
        assert (await get_task(client, uid))["status"] == "processing"
        for node in nodes.nodes:
            node.release()
        task = await wait_status(client, uid, "succeeded")
    assert list(task) == TASK_KEYS
    assert task["status"] == "succeeded"
    assert task["batchUid"] == uid
    assert task["error"] is None
    assert task["details"] == {"receivedDocuments": 20, "indexedDocuments": 20}
    for key in ("enqueuedAt", "startedAt", "finishedAt"):
        assert TIMESTAMP.match(task[key])
    assert task["enqueuedAt"] <= task["startedAt"] <= task["finishedAt"]
    assert DURATION.match(task["duration"])


async def test_quorum_policy_survives_one_failing_group(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    async with proxy(nodes.config(tmp_path)) as client:
        await wait_status(client, await add(client, []), "succeeded")
        for node in nodes.groups[1]:
            node.fail_tasks_with = NODE_ERROR
        task = await wait_status(client, await add(client, [{"id": 1}, {"id": 2}]), "succeeded")
        assert task["status"] == "succeeded"
        assert task["details"]["indexedDocuments"] == 2
        assert set(task["details"]["miroirUnconfirmedNodes"]) <= {"g1n0", "g1n1", "g1n2"}
        for node in nodes.groups[0]:
            node.fail_tasks_with = NODE_ERROR
        task = await wait_status(client, await add(client, [{"id": 3}]), "failed")
    assert task["status"] == "failed"
    assert task["details"] == {"receivedDocuments": 1, "indexedDocuments": 0}
    error = task["error"]
    assert {k: error[k] for k in ("message", "code", "type", "link")} == NODE_ERROR
    breakdown = error["nodeErrors"]
    assert len(breakdown) == 4  # the shard's two replicas in each group
    assert all(item["status"] == "failed" and item["error"] == NODE_ERROR for item in breakdown)
    assert {item["node"][:2] for item in breakdown} == {"g0", "g1"}


async def test_policy_all_fails_when_one_node_task_fails(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    ok, bad = nodes.nodes
    ok.tasks[500] = {"uid": 500, "status": "succeeded", "details": {}, "error": None}
    bad.tasks[700] = {"uid": 700, "status": "processing", "details": None, "error": None}
    async with proxy(nodes.config(tmp_path)) as client:
        registry = client.server.app[TASKS]
        refs = [
            NodeTaskRef(node="g0n0", group="g0", shards=[], uid=500, status="enqueued", error=None),
            NodeTaskRef(node="g0n1", group="g0", shards=[], uid=700, status="enqueued", error=None),
        ]
        record = await registry.enqueue(
            "books", "settingsUpdate", refs, details={"rankingRules": ["words"]}, policy="all"
        )
        assert (await wait_status(client, record.uid, "processing"))["status"] == "processing"
        bad.tasks[700].update(status="failed", error=NODE_ERROR)
        task = await wait_status(client, record.uid, "failed")
    assert task["status"] == "failed"
    assert task["details"] == {"rankingRules": ["words"]}
    assert task["error"]["code"] == "io_error"
    assert task["error"]["nodeErrors"] == [
        {"node": "g0n1", "group": "g0", "taskUid": 700, "status": "failed", "error": NODE_ERROR}
    ]


async def test_a_node_dying_mid_task_stops_blocking_after_the_deadline(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    config = nodes.config(tmp_path, timeouts={"task_node_deadline_ms": 400})
    async with proxy(config) as client:
        await wait_status(client, await add(client, []), "succeeded")
        dying = nodes.node("g0n0")
        dying.hold_tasks = True
        docs = [{"id": i} for i in range(40)]  # every node gets some of them
        uid = await add(client, docs)
        await dying.stop()
        assert (await get_task(client, uid))["status"] in ("enqueued", "processing")
        task = await wait_status(client, uid, "succeeded", "failed")
        assert task["status"] == "succeeded"
        assert task["details"]["indexedDocuments"] == 40
        assert task["details"]["miroirUnconfirmedNodes"] == ["g0n0"]

        for node in nodes.nodes:
            node.hold_tasks = True
        uid = await add(client, [{"id": 1}])
        for node in nodes.nodes:
            await node.stop()
        task = await wait_status(client, uid, "succeeded", "failed")
    assert task["status"] == "failed"
    assert task["error"]["code"] == "miroir_node_unavailable"
    # Node tasks that were enqueued and never heard of again are lost; the node that was
    # already dead (if the document's shard lives on it) never accepted the write: its batch
    # was kept as a hint, yet a hint never makes a write without a live success.
    statuses = {item["node"]: item["status"] for item in task["error"]["nodeErrors"]}
    assert statuses.pop("g0n0", "hinted") == "hinted"
    assert set(statuses.values()) == {"lost"}


async def test_listing_filters_and_pagination(tmp_path: Path, fleet: Any, proxy: Any) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        uids = [await add(client, [{"id": i}], index="a" if i % 2 else "b") for i in range(5)]
        for uid in uids:
            await wait_status(client, uid, "succeeded")
        failed = await add(client, [{"nope": 1}], index="a")
        assert (await get_task(client, failed))["status"] == "failed"
        everything = [*uids, failed]

        page = await (await client.get("/tasks?limit=2")).json()
        assert [t["uid"] for t in page["results"]] == everything[::-1][:2]
        assert (page["total"], page["limit"], page["from"]) == (6, 2, everything[-1])
        assert page["next"] == everything[-3]
        rest = await (await client.get(f"/tasks?limit=10&from={page['next']}")).json()
        assert [t["uid"] for t in rest["results"]] == everything[::-1][2:]
        assert rest["next"] is None

        by_index = await (await client.get("/tasks?indexUids=a")).json()
        assert {t["indexUid"] for t in by_index["results"]} == {"a"}
        assert by_index["total"] == 3
        by_status = await (await client.get("/tasks?statuses=failed")).json()
        assert [t["uid"] for t in by_status["results"]] == [failed]
        by_uid = await (await client.get(f"/tasks?uids={uids[0]},{uids[1]}&reverse=true")).json()
        assert [t["uid"] for t in by_uid["results"]] == uids[:2]
        none = await (await client.get("/tasks?types=indexSwap")).json()
        assert none == {"results": [], "total": 0, "limit": 20, "from": None, "next": None}

        missing = await client.get("/tasks/9999")
        assert missing.status == 404
        assert (await missing.json())["message"] == "Task `9999` not found."
        bad = await client.get("/tasks/abc")
        assert (bad.status, (await bad.json())["code"]) == (400, "invalid_task_uids")
        bad_filter = await client.get("/tasks?statuses=done")
        assert (await bad_filter.json())["code"] == "invalid_task_statuses"

        batch = await (await client.get(f"/batches/{uids[0]}")).json()
        assert batch["uid"] == uids[0]
        assert batch["stats"]["status"] == {"succeeded": 1}
        assert batch["stats"]["indexUids"] == {"b": 1}
        batches = await (await client.get("/batches?limit=3")).json()
        assert [b["uid"] for b in batches["results"]] == everything[::-1][:3]
        assert (await client.get("/batches/9999")).status == 404


async def test_cancel_reaches_the_nodes_and_marks_the_task(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        await wait_status(client, await add(client, []), "succeeded")
        for node in nodes.nodes:
            node.hold_tasks = True
        uid = await add(client, [{"id": 1}, {"id": 2}])
        no_filter = await client.post("/tasks/cancel")
        assert (await no_filter.json())["code"] == "missing_task_filters"

        response = await client.post(f"/tasks/cancel?uids={uid}")
        assert response.status == 200
        summary = await response.json()
        assert (summary["type"], summary["indexUid"], summary["status"]) == (
            "taskCancelation",
            None,
            "enqueued",
        )
        cancelation = await wait_status(client, summary["taskUid"], "succeeded")
        assert cancelation["details"] == {
            "matchedTasks": 1,
            "canceledTasks": 1,
            "originalFilter": f"?uids={uid}",
        }
        canceled = await get_task(client, uid)
        assert canceled["status"] == "canceled"
        assert canceled["canceledBy"] == summary["taskUid"]
        assert canceled["details"]["indexedDocuments"] == 0
        # The canceled task stays canceled even after its node tasks finish: a later write
        # finishing shows aggregation rounds ran meanwhile.
        canceled_on_nodes = [str(max(node.tasks)) for node in nodes.nodes]
        for node in nodes.nodes:
            node.hold_tasks = False
            node.release()
        later = await wait_status(client, await add(client, [{"id": 99}]), "succeeded")
        assert later["status"] == "succeeded"
        assert (await get_task(client, uid))["status"] == "canceled"
    for node, canceled_uid in zip(nodes.nodes, canceled_on_nodes, strict=True):
        cancels = [r for r in node.received if r.path == "/tasks/cancel"]
        assert len(cancels) == 1
        assert cancels[0].query["uids"] == canceled_uid


async def test_delete_removes_only_finished_tasks(tmp_path: Path, fleet: Any, proxy: Any) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        done = await wait_status(client, await add(client, [{"id": 1}]), "succeeded")
        for node in nodes.nodes:
            node.hold_tasks = True
        running = await add(client, [{"id": 2}])
        response = await client.delete("/tasks?statuses=processing,enqueued")
        assert response.status == 200
        summary = await response.json()
        assert summary["type"] == "taskDeletion"
        deletion = await wait_status(client, summary["taskUid"], "succeeded")
        assert deletion["details"] == {
            "matchedTasks": 1,
            "deletedTasks": 0,
            "originalFilter": "?statuses=processing,enqueued",
        }
        assert (await get_task(client, running))["status"] in ("enqueued", "processing")
        assert (await get_task(client, done["uid"]))["status"] == "succeeded"


async def test_a_deletion_waits_for_the_tasks_already_running(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    """As on a node, where a deletion runs after the task being processed: the running
    task is deleted once it finishes."""
    nodes = await fleet(groups=1, nodes_per_group=2)
    async with proxy(nodes.config(tmp_path)) as client:
        done = await wait_status(client, await add(client, [{"id": 1}]), "succeeded")
        running, _ = await add_held(client, nodes)
        deleting = asyncio.create_task(client.delete("/tasks?statuses=succeeded,processing"))
        await polled_again(nodes.nodes[0])
        assert not deleting.done()
        for node in nodes.nodes:
            node.release()
        response = await deleting
        assert response.status == 200
        summary = await response.json()
        deletion = await wait_status(client, summary["taskUid"], "succeeded")
        assert deletion["details"] == {
            "matchedTasks": 2,
            "deletedTasks": 2,
            "originalFilter": "?statuses=succeeded,processing",
        }
        for uid in (done["uid"], running):
            assert (await client.get(f"/tasks/{uid}")).status == 404


async def test_unfinished_tasks_resume_after_a_restart(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet(groups=1, nodes_per_group=2)
    config = nodes.config(tmp_path)
    async with proxy(config) as client:
        for node in nodes.nodes:
            node.hold_tasks = True
        uid = await add(client, [{"id": 1}, {"id": 2}])
        assert (await wait_status(client, uid, "processing"))["status"] == "processing"
    for node in nodes.nodes:
        node.release()
    async with proxy(config) as client:
        task = await wait_status(client, uid, "succeeded")
        assert task["status"] == "succeeded"
        assert task["details"] == {"receivedDocuments": 2, "indexedDocuments": 2}
        assert await add(client, [{"id": 3}]) > uid


async def test_polling_slows_down_while_node_tasks_do_not_change(
    tmp_path: Path, fleet: Any, proxy: Any
) -> None:
    nodes = await fleet()
    async with proxy(nodes.config(tmp_path)) as client:
        uid, _ = await add_held(client, nodes)
        node = nodes.nodes[0]

        def polls() -> int:
            return sum(r.path == "/tasks" for r in node.received)

        loop = asyncio.get_running_loop()
        first, started = polls(), loop.time()
        while polls() < first + 4 and loop.time() < started + DEADLINE_S:
            await asyncio.sleep(POLL_S)
        # Quiet rounds wait 0.05, 0.1, 0.2, 0.4 s...: four more polls take at least the
        # last three gaps, 0.7 s; at a fixed 50 ms they would take 0.2 s.
        assert loop.time() - started >= 0.5
        for held in nodes.nodes:
            held.release()
        task = await wait_status(client, uid, "succeeded")
    assert task["status"] == "succeeded"
