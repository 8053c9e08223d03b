"""What only the Redis backend has: outages, deadlines, reconnection and key namespaces."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_client

from miroir_proxy.config import from_mapping
from miroir_proxy.state.factory import open_store, split_namespace
from miroir_proxy.state.keys import Keys
from miroir_proxy.state.redis import RedisStore
from miroir_proxy.state.sqlite import SqliteStore
from miroir_proxy.state.store import IndexMeta, TaskRecord
from miroir_proxy.state.taskquery import parse

from ..redis_server import RedisServer
from .storekit import PROMPT_S, outage_calls, unavailable_promptly


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test may stop, freeze and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Any]:
    client = redis_client.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_a_stopped_redis_is_unavailable_at_once_and_heals(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, namespace="outage:", timeout_s=1.0)
    try:
        assert (await store.next_task_stamp())[0] == 0
        own_redis.stop()
        for call in outage_calls(store):
            await unavailable_promptly(call)
        own_redis.start()  # same port, empty (no persistence)
        await store.ping()
        assert (await store.next_task_stamp())[0] == 0
        assert await store.lease_acquire("s", "pod-a", 1000)
        assert await store.enqueue_job("j", "k", {}, [{}])
        assert await store.claim_chunk("pod-a", 1000) is not None  # scripts reloaded
    finally:
        await store.close()


async def test_a_frozen_redis_hits_the_deadline(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, namespace="frozen:", timeout_s=0.3)
    try:
        await store.ping()
        own_redis.pause()
        try:
            for call in outage_calls(store)[:3]:
                await unavailable_promptly(call)
        finally:
            own_redis.resume()
        await store.ping()
        # Whether the INCR sent into the frozen server ran is unknown; the store answers.
        assert (await store.next_task_stamp())[0] in (0, 1)
        assert await store.lease_acquire("s", "pod-a", 1000)
    finally:
        await store.close()


async def test_a_task_stamp_never_goes_back_when_the_redis_clock_does(
    redis_server: RedisServer, raw: Any
) -> None:
    namespace = f"stamp-{uuid.uuid4().hex[:12]}:"
    store = RedisStore(redis_server.url, namespace=namespace)
    try:
        uid, now = await store.next_task_stamp()
        # As if the server's clock had stepped back an hour after the last stamp.
        ahead = now + timedelta(hours=1)
        micros = (ahead - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        await raw.set(Keys(namespace).task_stamp, micros)
        assert await store.next_task_stamp() == (uid + 1, ahead)
        assert await store.next_task_stamp() == (uid + 2, ahead)
    finally:
        await store.close()


async def test_namespaces_isolate_and_no_scratch_key_survives(
    redis_server: RedisServer, raw: Any
) -> None:
    one = RedisStore(redis_server.url, namespace="ns-one:")
    two = RedisStore(redis_server.url, namespace="ns-two:")
    try:
        for uid in range(5):
            await one.create_task(
                TaskRecord(uid, "movies", "indexCreation", "2026-01-01T00:00:00Z")
            )
        await one.put_index(IndexMeta("movies", 4, None, "2026-01-01T00:00:00Z"))
        await one.enqueue_job("j", "k", {}, [{}, {}])
        params = {"uids": "1,2", "statuses": "enqueued,failed", "afterEnqueuedAt": "2025-01-01"}
        assert [t.uid for t in (await one.list_tasks(parse(params, action="list"))).results] == [
            2,
            1,
        ]
        await one.delete_tasks(parse({"statuses": "enqueued"}, action="delete"))
        assert (await two.next_task_stamp())[0] == 0
        assert await two.list_indexes() == []
        assert await two.queue_depth() == 0
        assert await one.queue_depth() == 2
        names = [k.decode() async for k in raw.scan_iter(match="ns-one:*")]
        assert names and not [n for n in names if ":scratch:" in n]
        # `two` only handed out a task uid.
        two_keys = Keys("ns-two:")
        assert sorted([k.decode() async for k in raw.scan_iter(match="ns-two:*")]) == sorted(
            [two_keys.task_uid, two_keys.task_stamp]
        )
    finally:
        await one.close()
        await two.close()


async def test_open_store_picks_the_backend(
    tmp_path: Path, redis_server: RedisServer, raw: Any
) -> None:
    base = {"replica_groups": [{"id": "g", "nodes": [{"id": "n", "url": "http://127.0.0.1:1"}]}]}
    sqlite = open_store(from_mapping({**base, "state_path": str(tmp_path / "s.sqlite3")}, env={}))
    assert isinstance(sqlite, SqliteStore)
    await sqlite.close()
    url = f"{redis_server.url}?namespace=factory-test:"
    store = open_store(from_mapping({**base, "store": url}, env={}))
    try:
        assert isinstance(store, RedisStore)
        assert (await store.next_task_stamp())[0] == 0
        assert await raw.get("factory-test:task-uid") == b"1"
    finally:
        await store.close()
    with pytest.raises(ValueError, match="redis://"):
        open_store(from_mapping({**base, "store": "http://x"}, env={}))
    assert split_namespace("redis://h:1/2?a=b") == ("redis://h:1/2?a=b", "miroir:")


async def test_cancelling_a_caller_always_cancels_it(redis_server: RedisServer) -> None:
    # redis-py's socket timeout (asyncio.wait_for on Python 3.11) used to swallow most of
    # these cancellations, leaving background loops running after shutdown.
    store = RedisStore(redis_server.url, namespace="cancel:")

    async def poll() -> None:
        while True:
            await store.queue_depth()

    try:
        for attempt in range(30):
            task = asyncio.create_task(poll())
            await asyncio.sleep(0.002 + attempt * 0.0002)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=PROMPT_S)
            assert done and task.cancelled(), f"cancellation lost on attempt {attempt}"
    finally:
        await store.close()
