"""Task and batch routes: list with filters and `from`/`next` pagination, get one,
cancel and delete by filter (both enqueue a task and answer 200, as Meilisearch does).

A key only sees tasks of the indexes it may access; index-less tasks need a key valid for
every index."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from ..auth import AUTH
from ..errors import MeiliError
from ..http import json_response
from ..node import NODE_KEY
from ..task_filters import TaskQuery, missing_filters, paginate, parse_task_query
from ..tasks import FINISHED, Task
from ..timeutil import iso_duration, rfc3339

routes = web.RouteTableDef()

TASK_DOCUMENTS_DISABLED = (
    "Getting the documents of an enqueued task requires enabling the `get task documents "
    "route` experimental feature. See https://github.com/orgs/meilisearch/discussions/808"
)


def _visible(request: web.Request, task: Task) -> bool:
    auth = request[AUTH]
    if task.index_uid is not None:
        return bool(auth.allows_index(task.index_uid))
    if task.type == "indexSwap" and task.details is not None:
        return all(
            auth.allows_index(uid) for swap in task.details["swaps"] for uid in swap["indexes"]
        )
    return "*" in auth.key_indexes


def _matching(request: web.Request, query: TaskQuery) -> list[Task]:
    tasks = request.app[NODE_KEY].queue.descending()
    return [t for t in tasks if query.matches(t) and _visible(request, t)]


@routes.get("/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    query = parse_task_query(request.query, listing=True)
    matching = _matching(request, query)
    if query.reverse:
        matching.reverse()
    page = paginate(matching, query, lambda task: task.uid)
    page["results"] = [task.to_json() for task in page["results"]]
    return json_response(page)


def _uid_param(request: web.Request, name: str, code: str, what: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or int(raw) >= 2**32:
        raise MeiliError(
            code, f"{what} uid `{raw}` is invalid. It should only contain numeric characters."
        )
    return int(raw)


@routes.get("/tasks/{task_uid}")
async def get_task(request: web.Request) -> web.Response:
    uid = _uid_param(request, "task_uid", "invalid_task_uids", "Task")
    task = request.app[NODE_KEY].queue.get(uid)
    if not _visible(request, task):
        raise MeiliError("task_not_found", f"Task `{uid}` not found.")
    return json_response(task.to_json())


@routes.get("/tasks/{task_uid}/documents")
async def get_task_documents(request: web.Request) -> web.Response:
    raise MeiliError("feature_not_enabled", TASK_DOCUMENTS_DISABLED)


def _enqueue_by_filter(
    request: web.Request, type_: str, action: str, count_key: str
) -> web.Response:
    query = parse_task_query(request.query, listing=False)
    if not query.has_filter:
        raise missing_filters(action)
    uids = sorted(task.uid for task in _matching(request, query))
    details = {
        "matchedTasks": len(uids),
        count_key: None,
        "originalFilter": "?" + request.rel_url.raw_query_string,
    }
    task = request.app[NODE_KEY].queue.enqueue(type_, None, details, {"uids": uids})
    return json_response(task.summary())


@routes.post("/tasks/cancel")
async def cancel_tasks(request: web.Request) -> web.Response:
    return _enqueue_by_filter(request, "taskCancelation", "cancel", "canceledTasks")


@routes.delete("/tasks")
async def delete_tasks(request: web.Request) -> web.Response:
    return _enqueue_by_filter(request, "taskDeletion", "delete", "deletedTasks")


def _batch_json(uid: int, tasks: list[Task]) -> dict[str, Any]:
    started = [t.started_at for t in tasks if t.started_at is not None]
    finished = [t.finished_at for t in tasks if t.finished_at is not None]
    done = all(t.status in FINISHED for t in tasks) and finished
    start = min(started or finished) if (started or finished) else None
    end = max(finished) if done else None
    details: dict[str, Any] = {}
    for task in tasks:
        if task.status != "canceled" and task.details:
            details.update(task.details)
    first = tasks[0]
    strategy = (
        f"created batch containing only task with id {first.uid} of type `{first.type}` that "
        "cannot be batched with any other task."
    )
    return {
        "uid": uid,
        "progress": None,
        "details": details,
        "stats": {
            "totalNbTasks": len(tasks),
            "status": dict(Counter(t.status for t in tasks)),
            "types": dict(Counter(t.type for t in tasks)),
            "indexUids": dict(Counter(t.index_uid for t in tasks if t.index_uid is not None)),
            "progressTrace": {},
        },
        "duration": None
        if start is None or end is None
        else iso_duration((end - start).total_seconds()),
        "startedAt": None if start is None else rfc3339(start),
        "finishedAt": None if end is None else rfc3339(end),
        "batchStrategy": strategy,
    }


def _batches(request: web.Request, query: TaskQuery) -> dict[int, list[Task]]:
    """Batch uid -> its tasks, for the batches with at least one matching visible task."""
    groups: dict[int, list[Task]] = {}
    matched: set[int] = set()
    for task in request.app[NODE_KEY].queue.tasks.values():
        if task.batch_uid is None:
            continue
        groups.setdefault(task.batch_uid, []).append(task)
        if query.matches(task, by_batch=True) and _visible(request, task):
            matched.add(task.batch_uid)
    return {uid: groups[uid] for uid in sorted(matched, reverse=not query.reverse)}


@routes.get("/batches")
async def list_batches(request: web.Request) -> web.Response:
    query = parse_task_query(request.query, listing=True)
    batches = _batches(request, query)
    page = paginate(batches.items(), query, lambda item: item[0])
    page["results"] = [_batch_json(uid, tasks) for uid, tasks in page["results"]]
    return json_response(page)


@routes.get("/batches/{batch_uid}")
async def get_batch(request: web.Request) -> web.Response:
    uid = _uid_param(request, "batch_uid", "invalid_batch_uids", "Batch")
    tasks = _batches(request, TaskQuery(batch_uids={uid})).get(uid)
    if tasks is None:
        raise MeiliError("batch_not_found", f"Batch `{uid}` not found.")
    return json_response(_batch_json(uid, tasks))
