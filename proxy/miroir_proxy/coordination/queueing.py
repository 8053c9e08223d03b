"""Mode C: heavy work cut into chunks that any pod's worker may claim.

A claim is a lease on one chunk: the worker heartbeats it while the handler runs and the
handler persists its progress with `ctx.checkpoint(cursor)`. A worker that dies stops
heartbeating, the claim expires, and the next claimer gets the chunk with the last cursor,
so a handler must resume from `ctx.cursor` and may see the sub-step that was in flight
again (at-least-once per sub-step, exactly-once per committed checkpoint and per chunk
completion).

A handler that raises leaves its claim to expire, so the chunk is retried after the claim
TTL; after `max_attempts` claims it is completed anyway with the error in its cursor and
logged, rather than blocking the queue forever (the store has no "failed" chunk state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn

from miroir_proxy.state.store import ClaimedChunk, JobProgress, Store, StoreUnavailable

log = logging.getLogger(__name__)


class ClaimLost(Exception):
    """Another worker took this chunk over; the handler must stop without completing it."""


class ChunkContext:
    """What a handler sees of the chunk it processes, and how it saves its progress."""

    def __init__(self, store: Store, claimed: ClaimedChunk, owner: str, ttl_ms: int) -> None:
        self._store = store
        self._owner = owner
        self._ttl_ms = ttl_ms
        self.job_id = claimed.job_id
        self.kind = claimed.kind
        self.index = claimed.index
        self.payload = claimed.payload
        self.chunk = claimed.chunk
        self.cursor = claimed.cursor
        self.attempt = claimed.attempt

    async def checkpoint(self, cursor: dict[str, Any]) -> None:
        """Persist `cursor` with the claim extended; raises `ClaimLost` if it was taken."""
        if not await self.extend(cursor):
            raise ClaimLost(f"chunk {self.job_id}/{self.index} was taken over")
        self.cursor = cursor

    async def extend(self, cursor: dict[str, Any] | None = None) -> bool:
        """Extend the claim (and save `cursor` if given); False once the claim is lost."""
        return await self._store.heartbeat_chunk(
            self.job_id, self.index, self._owner, self._ttl_ms, cursor
        )


Handler = Callable[[ChunkContext], Awaitable[None]]


class JobQueue:
    """Enqueues jobs and wakes this pod's idle workers at once (others poll)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._work = asyncio.Condition()
        self._generation = 0

    async def enqueue(
        self,
        job_id: str,
        kind: str,
        chunks: Sequence[dict[str, Any]],
        payload: dict[str, Any] | None = None,
    ) -> bool:
        """Queue `chunks` as job `job_id`; False (and nothing changes) if it was queued before."""
        if not chunks:
            raise ValueError(f"job {job_id} has no chunks")
        created = await self.store.enqueue_job(job_id, kind, payload or {}, list(chunks))
        if created:
            async with self._work:
                self._generation += 1
                self._work.notify_all()
        return created

    async def depth(self) -> int:
        return await self.store.queue_depth()

    async def progress(self, job_id: str) -> JobProgress | None:
        return await self.store.job_progress(job_id)

    async def wait_for_work(self, timeout_s: float) -> None:
        """Sleep until a job is enqueued on this pod or `timeout_s` passed."""
        async with self._work:
            seen = self._generation
            try:
                async with asyncio.timeout(timeout_s):
                    await self._work.wait_for(lambda: self._generation != seen)
            except TimeoutError:
                pass


class Worker:
    """Claims chunks of the registered kinds and runs their handlers, `concurrency` at once."""

    def __init__(
        self,
        queue: JobQueue,
        owner: str,
        *,
        claim_ttl_ms: int = 10_000,
        poll_ms: int = 500,
        concurrency: int = 1,
        max_attempts: int = 5,
    ) -> None:
        self.owner = owner
        self.in_progress = 0
        self._queue = queue
        self._store = queue.store
        self._handlers: dict[str, Handler] = {}
        self._claim_ttl_ms = claim_ttl_ms
        self._heartbeat_s = claim_ttl_ms / 3000
        self._poll_s = poll_ms / 1000
        self._concurrency = concurrency
        self._max_attempts = max_attempts

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return self._handlers

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = handler

    async def run_once(self) -> bool:
        """Claim one chunk and process it; False when nothing was claimable."""
        if not self._handlers:
            return False
        claimed = await self._store.claim_chunk(
            self.owner, self._claim_ttl_ms, tuple(self._handlers)
        )
        if claimed is None:
            return False
        await self.process(claimed)
        return True

    async def run(self) -> NoReturn:
        async with asyncio.TaskGroup() as slots:
            for slot in range(self._concurrency):
                slots.create_task(self._slot(), name=f"miroir-worker-{self.owner}-{slot}")
        raise AssertionError("worker slots never return")

    async def _slot(self) -> NoReturn:
        while True:
            try:
                worked = await self.run_once()
            except StoreUnavailable as e:
                log.warning("worker %s: store unavailable: %s", self.owner, e)
                worked = False
            if not worked:
                await self._queue.wait_for_work(self._poll_s)

    async def process(self, claimed: ClaimedChunk) -> bool:
        """Run the chunk's handler under a heartbeat; True if this worker completed it."""
        ctx = ChunkContext(self._store, claimed, self.owner, self._claim_ttl_ms)
        name = f"{claimed.job_id}/{claimed.index}"
        self.in_progress += 1
        work = asyncio.ensure_future(self._handlers[claimed.kind](ctx))
        try:
            if not await self._heartbeat_until_done(ctx, work):
                log.warning("worker %s lost its claim on chunk %s", self.owner, name)
                return False
            try:
                work.result()
            except ClaimLost:
                log.warning("worker %s lost its claim on chunk %s", self.owner, name)
                return False
            except Exception as e:
                if claimed.attempt < self._max_attempts:
                    log.exception("chunk %s failed (attempt %d); retried", name, claimed.attempt)
                    return False
                log.exception("chunk %s failed %d times; giving up", name, claimed.attempt)
                await ctx.checkpoint({**(ctx.cursor or {}), "error": repr(e)[:500]})
            return await self._complete(ctx, name)
        finally:
            if not work.done():
                work.cancel()
                await asyncio.wait({work})
            self.in_progress -= 1

    async def _heartbeat_until_done(self, ctx: ChunkContext, work: asyncio.Future[None]) -> bool:
        while True:
            done, _ = await asyncio.wait({work}, timeout=self._heartbeat_s)
            if done:
                return True
            try:
                if not await ctx.extend():
                    return False
            except StoreUnavailable as e:
                # The claim may survive a short outage; `complete_chunk` tells us if not.
                log.warning("chunk %s/%d: heartbeat failed: %s", ctx.job_id, ctx.index, e)

    async def _complete(self, ctx: ChunkContext, name: str) -> bool:
        # A finished chunk whose completion is lost to a cancellation would be redone whole.
        completed = await asyncio.shield(
            self._store.complete_chunk(ctx.job_id, ctx.index, self.owner)
        )
        if not completed:
            log.warning("worker %s finished chunk %s after losing its claim", self.owner, name)
        return completed
