"""Coordination between in-process "pods" that share one store: Mode B leases and the phase
machine, Mode C job workers, the peer set, Mode A pruning and the runtime that runs them.

Each pod opens its own store client on the shared backend, as separate processes would.
TTLs are tens of milliseconds; every wait is a condition polled under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from miroir_proxy.config import CoordinationConfig
from miroir_proxy.coordination.leasing import LeaseKeeper, LeaseLost, PhaseMachine, Step
from miroir_proxy.coordination.ownership import Ownership, owner_of
from miroir_proxy.coordination.peers import PeerSet
from miroir_proxy.coordination.pruning import PAGE, TaskPruner, block_key
from miroir_proxy.coordination.queueing import ChunkContext, JobQueue, Worker
from miroir_proxy.coordination.runtime import Coordination
from miroir_proxy.state.redis import RedisStore
from miroir_proxy.state.sqlite import SqliteStore
from miroir_proxy.state.store import Store, TaskRecord
from miroir_proxy.state.taskquery import TaskQuery

from ..redis_server import RedisServer
from .scaffold import jobs as sleep_chunks

TTL_MS = 300
RENEW_MS = 30
DEADLINE_S = 5.0
# A successor wakes when the lease expires, at most a TTL after the holder's death; the
# slack absorbs a busy test machine.
TAKEOVER_SLACK_S = 0.25
TAKEOVER_MAX_S = TTL_MS / 1000 + TAKEOVER_SLACK_S


@pytest.fixture(params=["sqlite", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Four clients of one backend, one per pod, on the backend's real clock."""
    opened: list[Store]
    if request.param == "sqlite":
        opened = [SqliteStore(tmp_path / "shared.sqlite3") for _ in range(4)]
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        namespace = f"coordination-{uuid.uuid4().hex[:12]}:"
        opened = [RedisStore(server.url, namespace=namespace) for _ in range(4)]
    yield opened
    for store in opened:
        await store.close()


async def eventually(condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.002)


async def eventually_async(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not await condition():
            await asyncio.sleep(0.005)


async def kill(task: asyncio.Task[Any]) -> None:
    """Stop a pod's loop the way a crash would: nothing is released or completed."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=DEADLINE_S)
    assert done, f"{task} ignored its cancellation"


def keeper(store: Store, owner: str, scope: str = "rebalance:movies") -> LeaseKeeper:
    return LeaseKeeper(store, scope, owner, ttl_ms=TTL_MS, renew_ms=RENEW_MS)


# Mode B ---------------------------------------------------------------------------------


async def test_exactly_one_lease_holder_at_any_instant(stores: list[Store]) -> None:
    keepers = [keeper(store, f"pod-{n}") for n, store in enumerate(stores[:3])]
    runners = {k.owner: asyncio.create_task(k.run()) for k in keepers}
    loop = asyncio.get_running_loop()
    holders_seen: list[str] = []

    async def watch(seconds: float) -> None:
        end = loop.time() + seconds
        while loop.time() < end:
            before = [k for k in keepers if k.held]
            assert len(before) <= 1, [k.owner for k in before]
            holder = await stores[3].lease_holder("rebalance:movies")
            after = [k for k in keepers if k.held]
            assert len(after) <= 1, [k.owner for k in after]
            if before and before == after:
                assert holder == before[0].owner
                if not holders_seen or holders_seen[-1] != holder:
                    holders_seen.append(holder)
            await asyncio.sleep(0.003)

    try:
        await eventually(lambda: any(k.held for k in keepers))
        first = next(k for k in keepers if k.held)
        # Twenty renewal periods, several TTLs: the holder keeps the lease by renewing it.
        await watch(20 * RENEW_MS / 1000)
        assert holders_seen == [first.owner]
        assert first.held

        # A crash: the successor takes over once the TTL ran out, and never before.
        crashed_at = loop.time()
        await kill(runners.pop(first.owner))
        await eventually(lambda: any(k.held for k in keepers if k is not first))
        takeover_s = loop.time() - crashed_at
        assert (TTL_MS - 2 * RENEW_MS) / 1000 <= takeover_s <= TAKEOVER_MAX_S
        await watch(10 * RENEW_MS / 1000)

        # A graceful exit releases the lease, so the last pod needs no TTL wait.
        second = next(k for k in keepers if k.held)
        await kill(runners.pop(second.owner))
        await second.release()
        released_at = loop.time()
        await eventually(lambda: any(k.held for k in keepers if k not in (first, second)))
        assert loop.time() - released_at < TTL_MS / 1000
        await watch(10 * RENEW_MS / 1000)
        assert holders_seen == [first.owner, second.owner, *runners]
    finally:
        for task in runners.values():
            await kill(task)


async def test_a_contender_takes_over_when_the_lease_expires_not_at_its_next_attempt(
    stores: list[Store],
) -> None:
    # Renewals almost a TTL apart: a contender retrying only every renew interval would
    # come in nearly a whole interval after the expiry.
    ttl_ms, renew_ms = 800, 700
    a = LeaseKeeper(stores[0], "group-sync", "pod-a", ttl_ms=ttl_ms, renew_ms=renew_ms)
    b = LeaseKeeper(stores[1], "group-sync", "pod-b", ttl_ms=ttl_ms, renew_ms=renew_ms)
    loop = asyncio.get_running_loop()
    died_at = loop.time()
    assert await a.attempt()  # pod-a takes the lease and dies without ever renewing it
    b_runner = asyncio.create_task(b.run())
    try:
        await eventually(lambda: b.held)
        takeover_s = loop.time() - died_at
        assert not a.held
    finally:
        await kill(b_runner)
    assert await stores[2].lease_holder("group-sync") == "pod-b"
    # Never before the expiry (the store's clock ticks in whole milliseconds), and soon after.
    assert ttl_ms / 1000 - 0.002 <= takeover_s <= ttl_ms / 1000 + TAKEOVER_SLACK_S


async def test_lease_is_released_on_leaving_the_context(stores: list[Store]) -> None:
    async with keeper(stores[0], "pod-a") as lease:
        await asyncio.wait_for(lease.wait_held(), DEADLINE_S)
        assert await stores[1].lease_holder("rebalance:movies") == "pod-a"
    assert not lease.held
    assert await stores[1].lease_holder("rebalance:movies") is None


class Journal:
    """Phase steps that record who ran them; `copy` can be made to hang."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.hang_copy = True
        self.copy_started = asyncio.Event()
        self.release_copy = asyncio.Event()

    def steps(self, pod: str) -> list[tuple[str, Step]]:
        async def plan(data: dict[str, Any]) -> dict[str, Any]:
            self.runs.append((pod, "plan"))
            return {**data, "moves": 3}

        async def copy(data: dict[str, Any]) -> dict[str, Any]:
            self.runs.append((pod, "copy"))
            self.copy_started.set()
            if self.hang_copy:
                await self.release_copy.wait()
            return {**data, "copied": data["moves"]}

        async def cutover(data: dict[str, Any]) -> None:
            self.runs.append((pod, "cutover"))

        return [("plan", plan), ("copy", copy), ("cutover", cutover)]


async def test_a_killed_holder_is_replaced_within_the_ttl_and_the_phase_resumes(
    stores: list[Store],
) -> None:
    journal = Journal()
    a, b = keeper(stores[0], "pod-a"), keeper(stores[1], "pod-b")
    a_runner = asyncio.create_task(a.run())
    await asyncio.wait_for(a.wait_held(), DEADLINE_S)
    b_runner = asyncio.create_task(b.run())
    machine_a = PhaseMachine(stores[0], a, "op-1", journal.steps("pod-a"))
    a_work = asyncio.create_task(a.hold(lambda: machine_a.run({"index": "movies"})))
    try:
        await asyncio.wait_for(journal.copy_started.wait(), DEADLINE_S)
        assert await machine_a.state() is not None
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        await kill(a_runner)
        await kill(a_work)

        journal.hang_copy = False
        machine_b = PhaseMachine(stores[1], b, "op-1", journal.steps("pod-b"))
        result = await asyncio.wait_for(b.hold(lambda: machine_b.run({"ignored": 1})), DEADLINE_S)
        assert loop.time() - killed_at <= TAKEOVER_MAX_S
    finally:
        await kill(b_runner)
    assert journal.runs == [
        ("pod-a", "plan"),
        ("pod-a", "copy"),
        ("pod-b", "copy"),
        ("pod-b", "cutover"),
    ]
    assert result == {"index": "movies", "moves": 3, "copied": 3}
    state = await machine_b.state()
    assert state is not None and state.phase == "done"
    # Running a finished operation again runs nothing.
    assert await machine_b.run() == result
    assert len(journal.runs) == 4


async def test_a_stale_holder_cannot_commit_a_phase(stores: list[Store]) -> None:
    journal = Journal()
    a, b = keeper(stores[0], "pod-a"), keeper(stores[1], "pod-b")
    a_runner = asyncio.create_task(a.run())
    await asyncio.wait_for(a.wait_held(), DEADLINE_S)
    stale = asyncio.create_task(PhaseMachine(stores[0], a, "op-1", journal.steps("pod-a")).run())
    await asyncio.wait_for(journal.copy_started.wait(), DEADLINE_S)
    # pod-a keeps working but stops renewing (a long pause, a partition) ...
    await kill(a_runner)
    await eventually(lambda: not a.held)
    await eventually_async(b.attempt)
    # ... and when its step finishes, the store refuses its commit.
    journal.release_copy.set()
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(stale, DEADLINE_S)
    state = await PhaseMachine(stores[1], b, "op-1", journal.steps("pod-b")).state()
    assert state is not None
    assert (state.phase, state.data) == ("copy", {"moves": 3})


async def test_a_new_operation_on_the_scope_starts_from_the_first_phase(
    stores: list[Store],
) -> None:
    journal = Journal()
    journal.hang_copy = False
    lease = LeaseKeeper(stores[0], "rebalance:movies", "pod-a", ttl_ms=60_000, renew_ms=1_000)
    assert await lease.attempt()
    await PhaseMachine(stores[0], lease, "op-1", journal.steps("pod-a")).run()
    await PhaseMachine(stores[0], lease, "op-2", journal.steps("pod-a")).run()
    assert [step for _, step in journal.runs] == ["plan", "copy", "cutover"] * 2


async def test_hold_cancels_the_work_when_the_lease_is_lost(stores: list[Store]) -> None:
    a = keeper(stores[0], "pod-a")
    assert await a.attempt()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    # Nobody renews: the local view lapses before the store lets anyone else in.
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(a.hold(forever), DEADLINE_S)
    assert cancelled.is_set()


# Mode C ---------------------------------------------------------------------------------

CLAIM_TTL_MS = 300


def worker(store: Store, owner: str, **kw: Any) -> Worker:
    return Worker(JobQueue(store), owner, claim_ttl_ms=CLAIM_TTL_MS, poll_ms=10, **kw)


async def finished(store: Store, job_id: str) -> bool:
    progress = await store.job_progress(job_id)
    return progress is not None and progress.finished


async def test_three_workers_process_a_job_in_parallel_each_chunk_once(
    stores: list[Store],
) -> None:
    done: list[tuple[str, int]] = []
    all_three_busy = asyncio.Barrier(3)

    def handler(owner: str) -> Callable[[ChunkContext], Awaitable[None]]:
        async def handle(ctx: ChunkContext) -> None:
            if ctx.index < 3:
                # The first three chunks only finish once three workers hold one each.
                await all_three_busy.wait()
            done.append((owner, ctx.chunk["n"]))

        return handle

    workers = [worker(store, f"pod-{n}") for n, store in enumerate(stores[:3])]
    for w in workers:
        w.register("copy", handler(w.owner))
    assert await JobQueue(stores[3]).enqueue("job-1", "copy", [{"n": n} for n in range(30)])
    runners = [asyncio.create_task(w.run()) for w in workers]
    try:
        await eventually_async(lambda: finished(stores[3], "job-1"))
    finally:
        for task in runners:
            await kill(task)
    assert sorted(n for _, n in done) == list(range(30))
    assert {owner for owner, _ in done} == {"pod-0", "pod-1", "pod-2"}
    assert await stores[3].queue_depth() == 0


async def test_a_worker_dying_mid_chunk_is_resumed_from_its_cursor(stores: list[Store]) -> None:
    committed: list[tuple[str, int, int]] = []
    attempts: dict[int, list[tuple[int, dict[str, Any] | None]]] = {}
    stuck = asyncio.Event()

    def handler(owner: str) -> Callable[[ChunkContext], Awaitable[None]]:
        async def handle(ctx: ChunkContext) -> None:
            attempts.setdefault(ctx.index, []).append((ctx.attempt, ctx.cursor))
            start = 0 if ctx.cursor is None else ctx.cursor["next"]
            for step in range(start, 4):
                if owner == "pod-a" and ctx.index == 1 and step == 2:
                    stuck.set()
                    await asyncio.Event().wait()
                await ctx.checkpoint({"next": step + 1})
                committed.append((owner, ctx.index, step))

        return handle

    a, b = worker(stores[0], "pod-a"), worker(stores[1], "pod-b")
    a.register("copy", handler("pod-a"))
    b.register("copy", handler("pod-b"))
    assert await JobQueue(stores[2]).enqueue("job-1", "copy", [{}] * 4)
    a_runner = asyncio.create_task(a.run())
    await asyncio.wait_for(stuck.wait(), DEADLINE_S)
    assert a.in_progress == 1
    await kill(a_runner)
    assert a.in_progress == 0
    progress = await stores[2].job_progress("job-1")
    assert progress is not None and (progress.done, progress.claimed) == (1, 1)

    b_runner = asyncio.create_task(b.run())
    try:
        await eventually_async(lambda: finished(stores[2], "job-1"))
    finally:
        await kill(b_runner)
    steps = Counter((index, step) for _, index, step in committed)
    assert steps == Counter((index, step) for index in range(4) for step in range(4))
    assert [(o, s) for o, i, s in committed if i == 1] == [
        ("pod-a", 0), ("pod-a", 1), ("pod-b", 2), ("pod-b", 3)
    ]  # fmt: skip
    assert attempts[1] == [(1, None), (2, {"next": 2})]
    assert await stores[2].queue_depth() == 0


async def test_a_chunk_longer_than_its_claim_ttl_keeps_its_claim(stores: list[Store]) -> None:
    runs: list[str] = []

    def handler(owner: str) -> Callable[[ChunkContext], Awaitable[None]]:
        async def handle(ctx: ChunkContext) -> None:
            runs.append(owner)
            # The work itself outlasts the claim TTL several times over.
            await asyncio.sleep(3.5 * CLAIM_TTL_MS / 1000)

        return handle

    a, b = worker(stores[0], "pod-a"), worker(stores[1], "pod-b")
    a.register("copy", handler("pod-a"))
    b.register("copy", handler("pod-b"))
    assert await JobQueue(stores[2]).enqueue("job-1", "copy", [{}])
    a_runner = asyncio.create_task(a.run())
    await eventually(lambda: bool(runs))
    b_runner = asyncio.create_task(b.run())
    try:
        await eventually_async(lambda: finished(stores[2], "job-1"))
    finally:
        await kill(a_runner)
        await kill(b_runner)
    assert runs == ["pod-a"]


async def test_two_large_jobs_interleave(stores: list[Store]) -> None:
    order: list[str] = []

    async def handle(ctx: ChunkContext) -> None:
        order.append(ctx.job_id)

    w = worker(stores[0], "pod-a")
    w.register("copy", handle)
    queue = JobQueue(stores[1])
    assert await queue.enqueue("big-1", "copy", [{}] * 40)
    assert await queue.enqueue("big-2", "copy", [{}] * 40)
    while await w.run_once():
        pass
    assert Counter(order) == {"big-1": 40, "big-2": 40}
    # Neither job waits for the other: both finish near the end, with short runs of each.
    first_done = min(max(i for i, job in enumerate(order) if job == j) for j in ("big-1", "big-2"))
    assert first_done >= 75, order
    assert max(len(list(run)) for _, run in itertools.groupby(order[: first_done + 1])) <= 2


async def test_queue_depth_is_exact_at_every_step(stores: list[Store]) -> None:
    queue = JobQueue(stores[1])
    seen_while_running: list[tuple[int, int, int]] = []

    async def handle(ctx: ChunkContext) -> None:
        progress = await queue.progress(ctx.job_id)
        assert progress is not None
        seen_while_running.append((await queue.depth(), progress.done, progress.claimed))

    w = worker(stores[0], "pod-a")
    w.register("copy", handle)
    assert await queue.depth() == 0
    assert await queue.enqueue("job-1", "copy", [{}] * 3)
    assert await queue.depth() == 3
    assert await queue.enqueue("job-2", "copy", [{}] * 2)
    assert not await queue.enqueue("job-1", "copy", [{}] * 9)
    assert await queue.depth() == 5
    remaining = 5
    while await w.run_once():
        remaining -= 1
        assert await queue.depth() == remaining
    assert remaining == 0
    # While a chunk runs it still counts: claimed, not done.
    assert [depth for depth, _, _ in seen_while_running] == [5, 4, 3, 2, 1]
    assert all(claimed == 1 for _, _, claimed in seen_while_running)
    progress = await queue.progress("job-1")
    assert progress is not None and (progress.total, progress.done, progress.claimed) == (3, 3, 0)
    assert await queue.progress("nope") is None


async def test_a_failing_chunk_is_retried_then_given_up(stores: list[Store]) -> None:
    calls: list[int] = []

    async def handle(ctx: ChunkContext) -> None:
        calls.append(ctx.attempt)
        raise RuntimeError("boom")

    w = worker(stores[0], "pod-a", max_attempts=2)
    w.register("copy", handle)
    assert await JobQueue(stores[0]).enqueue("job-1", "copy", [{}])
    runner = asyncio.create_task(w.run())
    try:
        await eventually_async(lambda: finished(stores[1], "job-1"))
    finally:
        await kill(runner)
    assert calls == [1, 2]


async def test_a_worker_claims_only_kinds_it_handles(stores: list[Store]) -> None:
    w = worker(stores[0], "pod-a")
    assert not await w.run_once()
    w.register("copy", lambda ctx: asyncio.sleep(0))
    assert await JobQueue(stores[0]).enqueue("job-1", "reshard", [{}])
    assert not await w.run_once()
    assert await stores[0].queue_depth() == 1


# Peers, Mode A pruning and the runtime ----------------------------------------------------


def pod_config(pod_id: str, **overrides: Any) -> CoordinationConfig:
    settings: dict[str, Any] = {
        "pod_id": pod_id,
        "peer_heartbeat_ms": 20,
        "peer_ttl_ms": 1_000,
        "lease_ttl_ms": TTL_MS,
        "lease_renew_ms": RENEW_MS,
        "job_claim_ttl_ms": CLAIM_TTL_MS,
        **overrides,
    }
    return CoordinationConfig(**settings)


async def test_pods_split_ownership_and_take_over_when_one_leaves(stores: list[Store]) -> None:
    keys = [f"tasks:{n}" for n in range(200)]
    async with Coordination(stores[0], pod_config("pod-a")) as a:
        async with Coordination(stores[1], pod_config("pod-b")) as b:
            for pod in (a, b):
                await asyncio.wait_for(pod.peers.wait_for({"pod-a", "pod-b"}), DEADLINE_S)
            split = [(a.owns(key), b.owns(key)) for key in keys]
            assert all(mine != theirs for mine, theirs in split)
            assert 60 < sum(mine for mine, _ in split) < 140
            assert b.peers.peers["pod-a"]["token"] == a.token
        # pod-b withdrew on exit: no waiting for its heartbeat TTL (1 s) to expire.
        await asyncio.wait_for(a.peers.wait_for({"pod-a"}), 0.5)
        assert all(a.owns(key) for key in keys)


async def test_a_crashed_pod_drops_out_after_its_ttl(stores: list[Store]) -> None:
    async with Coordination(stores[0], pod_config("pod-a")) as a:
        crashed = PeerSet(stores[1], "pod-c", heartbeat_ms=20, ttl_ms=200)
        await crashed.beat()
        await asyncio.wait_for(a.peers.wait_for({"pod-a", "pod-c"}), DEADLINE_S)
        lost = {key for key in (f"tasks:{n}" for n in range(100)) if not a.owns(key)}
        assert lost
        await asyncio.wait_for(a.peers.wait_for({"pod-a"}), DEADLINE_S)
        assert all(a.owns(key) for key in lost)


def _finished_task(uid: int, finished_at: str | None) -> TaskRecord:
    return TaskRecord(
        uid=uid,
        index_uid=None if uid % 3 == 0 else f"index-{uid % 4}",
        type="documentAdditionOrUpdate",
        enqueued_at="2026-01-01T00:00:00.000000Z",
        status="processing" if finished_at is None else "succeeded",
        finished_at=finished_at,
    )


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_pruning_deletes_old_finished_tasks_once_by_their_owner(stores: list[Store]) -> None:
    now = time.time()
    old, recent = _rfc3339(now - 8 * 86_400), _rfc3339(now - 3_600)
    due: set[int] = set()
    for uid in range(0, 5_000, 4):
        finished_at = None if uid % 40 == 0 else recent if uid % 10 == 2 else old
        await stores[0].create_task(_finished_task(uid, finished_at))
        if finished_at == old:
            due.add(uid)
    peers = frozenset({"pod-a", "pod-b"})
    pruners = {
        pod: TaskPruner(
            stores[n], Ownership(pod, lambda: peers), retention_s=7 * 86_400, interval_ms=1_000
        )
        for n, pod in enumerate(sorted(peers))
    }
    deleted = dict(
        zip(pruners, await asyncio.gather(*(p.prune_once() for p in pruners.values())), strict=True)
    )
    assert not set(deleted["pod-a"]) & set(deleted["pod-b"])
    assert set(deleted["pod-a"]) | set(deleted["pod-b"]) == due
    for pod, uids in deleted.items():
        assert uids
        assert all(owner_of(block_key(uid), peers) == pod for uid in uids)
    page = await stores[2].list_tasks(TaskQuery(limit=10_000))
    assert len(due) > PAGE
    assert {t.uid for t in page.results} == set(range(0, 5_000, 4)) - due
    assert await pruners["pod-a"].prune_once() == []


async def test_pods_run_the_demo_job_together(stores: list[Store]) -> None:
    configs = [pod_config(f"pod-{n}", job_concurrency=2) for n in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        pods = [
            await stack.enter_async_context(Coordination(store, config))
            for store, config in zip(stores, configs, strict=False)
        ]
        for pod, store in zip(pods, stores, strict=False):
            pod.register(sleep_chunks.KIND, sleep_chunks.make_handler(store, pod.token))
        chunks = sleep_chunks.chunks(12, steps=3, step_ms=5)
        assert await pods[0].queue.enqueue("demo-1", sleep_chunks.KIND, chunks)
        busy: set[int] = set()

        async def done() -> bool:
            busy.update(n for n, pod in enumerate(pods) if pod.in_progress)
            return await finished(stores[3], "demo-1")

        await eventually_async(done)
        await eventually(lambda: all(pod.queue_depth == 0 for pod in pods))
    records = await sleep_chunks.chunk_records(stores[3], "demo-1", 12)
    tokens = {pod.token for pod in pods}
    assert all(r is not None and r["next"] == 3 and set(r["done_by"]) <= tokens for r in records)
    assert not await sleep_chunks.duplicated(stores[3], "demo-1")
    assert len(busy) >= 2
