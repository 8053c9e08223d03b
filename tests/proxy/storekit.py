"""What the store suites share: one `Store` per backend, and a way to let a TTL run out.

SQLite takes an injectable clock, so its TTLs run out by moving the clock. Redis expires by
its own clock, so the Redis runs use short real TTLs and poll for the outcome with a
deadline; the test code is the same for both.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from miroir_proxy.state.redis import RedisStore
from miroir_proxy.state.sqlite import SqliteStore
from miroir_proxy.state.store import Store, StoreUnavailable
from miroir_proxy.state.taskquery import parse

from ..redis_cluster import RedisCluster
from ..redis_server import RedisServer

BACKENDS = ["sqlite", "redis"]
# The store contract suites also run on a 3-master Redis Cluster: every script's keys must
# be declared and share one hash slot there.
STORE_BACKENDS = [*BACKENDS, "redis-cluster"]
# Short enough to wait out on a real clock, long enough that a few calls never outlive it.
SHORT_TTL_MS = 300
DEADLINE_S = 5.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def store_maker(
    backend: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> Callable[[], Store]:
    """A factory of stores that all see the same state (a reopen is a new store)."""
    if backend == "sqlite":
        return lambda: SqliteStore(tmp_path / "state.sqlite3", clock=clock)
    namespace = f"test-{uuid.uuid4().hex[:12]}:"
    if backend == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return lambda: RedisStore(
            cluster.client_url, namespace=namespace, timeout_s=5.0, cluster=True
        )
    server: RedisServer = request.getfixturevalue("redis_server")
    # A generous deadline: this suite checks semantics, on a machine that may be busy.
    return lambda: RedisStore(server.url, namespace=namespace, timeout_s=5.0)


class Timeline:
    def __init__(self, backend: str, clock: FakeClock) -> None:
        self.backend = backend
        self.clock = clock

    async def until(self, check: Callable[[], Awaitable[bool]], *, after_ms: int) -> None:
        """Let `after_ms` pass (SQLite: at once) and require `check` to hold then (Redis:
        within a deadline)."""
        if self.backend == "sqlite":
            self.clock.now += after_ms / 1000 + 0.001
            assert await check(), "not true once the time has passed"
            return
        deadline = time.monotonic() + DEADLINE_S
        while not await check():
            assert time.monotonic() < deadline, f"not true within {DEADLINE_S} s"
            await asyncio.sleep(0.01)


# An outage must be reported within this, whatever the store's own deadline.
PROMPT_S = 2.0


def outage_calls(store: RedisStore) -> list[Callable[[], Awaitable[object]]]:
    """A store call of each kind (scripts, plain commands, reads) an outage must fail."""
    return [
        store.ping,
        store.next_task_stamp,
        lambda: store.list_tasks(parse({}, action="list")),
        lambda: store.lease_acquire("s", "pod-a", 1000),
        lambda: store.claim_chunk("pod-a", 1000),
        store.queue_depth,
        store.list_indexes,
    ]


async def unavailable_promptly(call: Callable[[], Awaitable[object]]) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await call()
    assert time.monotonic() - started < PROMPT_S
