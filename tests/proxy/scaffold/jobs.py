"""`sleep-chunks`: a job kind that does nothing but wait, for driving the queue from outside.

Multi-process tests enqueue it through `POST /_miroir/scaffold/jobs`, kill pods mid-chunk and
then check the evidence each chunk leaves (`GET /_miroir/scaffold/jobs/{id}`): its cursor lists
which worker committed each step, and on completion that record is written once under
`sleep-chunks:<job>:<index>`; a second completion of the same chunk is flagged under
`sleep-chunks:<job>:duplicated`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from miroir_proxy.api.appkeys import COORDINATION, STORE
from miroir_proxy.api.responses import json_response, read_json
from miroir_proxy.api.routes.admin import require_admin
from miroir_proxy.coordination.queueing import ChunkContext, Handler
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.state.store import Store

from .body import bounded, non_empty

KIND = "sleep-chunks"
RECORD_TTL_S = 86_400

routes = web.RouteTableDef()


def record_key(job_id: str, index: int) -> str:
    return f"{KIND}:{job_id}:{index}"


def duplicated_key(job_id: str) -> str:
    return f"{KIND}:{job_id}:duplicated"


def chunks(count: int, steps: int, step_ms: int) -> list[dict[str, Any]]:
    return [{"steps": steps, "step_ms": step_ms} for _ in range(count)]


def make_handler(store: Store, owner: str) -> Handler:
    async def sleep_chunks(ctx: ChunkContext) -> None:
        cursor = ctx.cursor or {"next": 0, "done_by": []}
        for step in range(int(cursor["next"]), int(ctx.chunk["steps"])):
            await asyncio.sleep(int(ctx.chunk["step_ms"]) / 1000)
            cursor = {"next": step + 1, "done_by": [*cursor["done_by"], owner]}
            await ctx.checkpoint(cursor)
        record = orjson.dumps({**cursor, "attempt": ctx.attempt})
        if not await store.kv_set(
            record_key(ctx.job_id, ctx.index), record, RECORD_TTL_S, only_new=True
        ):
            await store.kv_set(duplicated_key(ctx.job_id), b"1", RECORD_TTL_S)

    return sleep_chunks


async def chunk_records(store: Store, job_id: str, total: int) -> list[dict[str, Any] | None]:
    """The completion record of every chunk (None while a chunk is not finished)."""
    records: list[dict[str, Any] | None] = []
    for index in range(total):
        raw = await store.kv_get(record_key(job_id, index))
        records.append(None if raw is None else orjson.loads(raw))
    return records


async def duplicated(store: Store, job_id: str) -> bool:
    return await store.kv_get(duplicated_key(job_id)) is not None


@routes.post("/_miroir/scaffold/jobs")
async def enqueue(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("kind") != KIND:
        raise MiroirError("bad_request", f"Only `kind: {KIND}` jobs can be queued here.")
    job_id = non_empty(body, "jobId")
    queued = chunks(
        bounded(body, "chunks", 1, 10_000),
        steps=bounded(body, "steps", 1, 1_000),
        step_ms=bounded(body, "stepMs", 0, 60_000),
    )
    created = await request.app[COORDINATION].queue.enqueue(job_id, KIND, queued)
    return json_response({"jobId": job_id, "created": created}, status=202)


@routes.get("/_miroir/scaffold/jobs/{job_id}")
async def evidence(request: web.Request) -> web.Response:
    """The job's progress, what each chunk recorded, and whether one completed twice."""
    require_admin(request)
    job_id = request.match_info["job_id"]
    store = request.app[STORE]
    progress = await store.job_progress(job_id)
    if progress is None:
        raise MiroirError("miroir_job_not_found", f"Job `{job_id}` not found.")
    return json_response(
        {
            "jobId": job_id,
            "total": progress.total,
            "done": progress.done,
            "claimed": progress.claimed,
            "finished": progress.finished,
            "chunks": await chunk_records(store, job_id, progress.total),
            "duplicated": await duplicated(store, job_id),
        }
    )


async def _register(app: web.Application) -> AsyncIterator[None]:
    pod = app[COORDINATION]
    pod.register(KIND, make_handler(app[STORE], pod.token))
    yield


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app.cleanup_ctx.append(_register)
