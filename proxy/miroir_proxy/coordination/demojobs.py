"""`sleep-chunks`: a job kind that does nothing but wait, for driving the queue from outside.

Multi-process tests enqueue it through the admin API, kill pods mid-chunk and then check
the evidence each chunk leaves: its cursor lists which worker committed each step, and on
completion that record is written once under `sleep-chunks:<job>:<index>`; a second
completion of the same chunk is flagged under `sleep-chunks:<job>:duplicated`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from miroir_proxy.state.store import Store

from .queueing import ChunkContext, Handler

KIND = "sleep-chunks"
RECORD_TTL_S = 86_400


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
