"""`/tasks` and `/batches` in Meilisearch's shapes, over Miroir's own task records.

Miroir runs each task as its own batch, so a batch uid equals its task's uid and a task
gets its batch when it starts. API keys limited to some indexes only see those indexes'
tasks (tasks of indexes that no longer exist are then hidden too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch.taskstatus import iso_duration, parse_timestamp, render
from miroir_proxy.state.store import TaskRecord
from miroir_proxy.state.taskquery import STATUSES, TaskQuery, parse

from ..appkeys import CATALOG, CLUSTER, STORE, TASKS
from ..auth import AUTH
from ..responses import json_response
from .aliases import resolve

routes = web.RouteTableDef()

_BATCHED = frozenset(STATUSES) - {"enqueued"}


def _uid(request: web.Request, name: str, code: str, what: str) -> int:
    """A task or batch uid from the path: a u32 written in decimal digits."""
    raw = request.match_info[name]
    if raw.isascii() and raw.isdigit() and int(raw) < 2**32:
        return int(raw)
    message = f"{what} uid `{raw}` is invalid. It should only contain numeric characters."
    raise MiroirError(code, message)


async def _visible_query(request: web.Request, query: TaskQuery) -> TaskQuery:
    topology = request.app[CLUSTER].topology
    if query.index_uids is not None and topology.aliases:
        names = frozenset(resolve(topology, uid) for uid in query.index_uids)
        query = dataclasses.replace(query, index_uids=names)
    auth = request.get(AUTH)
    if auth is None or auth.is_master or "*" in auth.key_indexes:
        return query
    allowed = {m.uid for m in await request.app[CATALOG].indexes() if auth.allows_index(m.uid)}
    if query.index_uids is not None:
        allowed &= query.index_uids
    return dataclasses.replace(query, index_uids=frozenset(allowed))


def _page(
    query: TaskQuery, results: list[dict[str, Any]], total: int, following: int | None
) -> dict[str, Any]:
    return {
        "results": results,
        "total": total,
        "limit": query.limit,
        "from": results[0]["uid"] if results else None,
        "next": following,
    }


@routes.get("/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    query = await _visible_query(request, parse(request.query, action="list"))
    page = await request.app[STORE].list_tasks(query)
    return json_response(_page(query, [render(r) for r in page.results], page.total, page.next))


@routes.get("/tasks/{task_uid}")
async def get_task(request: web.Request) -> web.Response:
    uid = _uid(request, "task_uid", "invalid_task_uids", "Task")
    record = await request.app[TASKS].get(uid)
    if record is None or not await _allowed(request, record):
        raise MiroirError("task_not_found", f"Task `{uid}` not found.")
    return json_response(render(record))


async def _allowed(request: web.Request, record: TaskRecord) -> bool:
    auth = request.get(AUTH)
    if auth is None or auth.is_master or "*" in auth.key_indexes:
        return True
    return record.index_uid is not None and auth.allows_index(record.index_uid)


def _original_filter(request: web.Request) -> str:
    return "?" + request.rel_url.raw_query_string


@routes.post("/tasks/cancel")
async def cancel_tasks(request: web.Request) -> web.Response:
    query = await _visible_query(request, parse(request.query, action="cancel"))
    registry = request.app[TASKS]
    record = await registry.cancel(query, _original_filter(request))
    return json_response(registry.summary(record))


@routes.delete("/tasks")
async def delete_tasks(request: web.Request) -> web.Response:
    query = await _visible_query(request, parse(request.query, action="delete"))
    registry = request.app[TASKS]
    record = await registry.delete(query, _original_filter(request))
    return json_response(registry.summary(record))


def batch_of(record: TaskRecord) -> dict[str, Any]:
    """The one-task batch a started task ran in."""
    duration = None
    if record.started_at is not None and record.finished_at is not None:
        elapsed = parse_timestamp(record.finished_at) - parse_timestamp(record.started_at)
        duration = iso_duration(elapsed.total_seconds())
    return {
        "uid": record.uid,
        "progress": None,
        "details": render(record).get("details") or {},
        "stats": {
            "totalNbTasks": 1,
            "status": {record.status: 1},
            "types": {record.type: 1},
            "indexUids": {} if record.index_uid is None else {record.index_uid: 1},
            "progressTrace": {},
        },
        "duration": duration,
        "startedAt": record.started_at,
        "finishedAt": record.finished_at,
        "batchStrategy": (
            f"created batch containing only task with id {record.uid} of type "
            f"`{record.type}` that cannot be batched with any other task."
        ),
    }


def _batch_query(params: Mapping[str, str]) -> TaskQuery:
    query = parse(params, action="list")
    # A batch uid is its task's uid; only started tasks have a batch.
    uids = query.uids
    if query.batch_uids is not None:
        uids = query.batch_uids if uids is None else uids & query.batch_uids
    statuses = _BATCHED if query.statuses is None else query.statuses & _BATCHED
    return dataclasses.replace(query, uids=uids, batch_uids=None, statuses=statuses)


@routes.get("/batches")
async def list_batches(request: web.Request) -> web.Response:
    query = await _visible_query(request, _batch_query(request.query))
    page = await request.app[STORE].list_tasks(query)
    return json_response(_page(query, [batch_of(r) for r in page.results], page.total, page.next))


@routes.get("/batches/{batch_uid}")
async def get_batch(request: web.Request) -> web.Response:
    uid = _uid(request, "batch_uid", "invalid_batch_uids", "Batch")
    record = await request.app[TASKS].get(uid)
    if record is None or record.batch_uid is None or not await _allowed(request, record):
        raise MiroirError("batch_not_found", f"Batch `{uid}` not found.")
    return json_response(batch_of(record))
