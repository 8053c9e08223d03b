"""What only Redis Cluster adds: the `redis+cluster://` store URL, state spread over the
masters, and the scripts' answer when the data their caller read to name keys went stale.
(The whole store contract runs on the cluster too: tests/proxy/store.)"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as redis_client

from miroir_proxy.config import from_mapping
from miroir_proxy.state import scripts
from miroir_proxy.state.factory import open_store
from miroir_proxy.state.keys import TASK_DATES, TASK_INDEXED, Keys
from miroir_proxy.state.redis import RedisStore
from miroir_proxy.state.store import IndexMeta, StoreUnavailable, TaskRecord
from miroir_proxy.state.taskquery import parse

from ..redis_cluster import RedisCluster
from ..redis_server import RedisServer
from .storekit import outage_calls, unavailable_promptly

HEAL_DEADLINE_S = 15.0
BASE = {"replica_groups": [{"id": "g", "nodes": [{"id": "n", "url": "http://127.0.0.1:1"}]}]}


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Any]:
    client = redis_client.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_a_cluster_url_opens_a_store_whose_state_spreads_over_the_masters(
    redis_cluster: RedisCluster,
) -> None:
    namespace = f"spread-{uuid.uuid4().hex[:8]}:"
    config = from_mapping({**BASE, "store": f"{redis_cluster.url}?namespace={namespace}"}, env={})
    store = open_store(config)
    assert isinstance(store, RedisStore)
    try:
        assert (await store.next_task_stamp())[0] == 0
        await store.create_task(TaskRecord(0, "movies", "indexCreation", "2026-01-01T00:00:00Z"))
        await store.put_index(IndexMeta("movies", 4, "id", "2026-01-01T00:00:00Z"))
        assert await store.lease_acquire("rebalance", "pod-a", 10_000)
        assert await store.enqueue_job("j", "k", {}, [{}])
        assert await store.claim_chunk("pod-a", 10_000) is not None
        page = await store.list_tasks(parse({}, action="list"))
        assert [t.uid for t in page.results] == [0]
    finally:
        await store.close()
    holding = 0
    for node in redis_cluster.nodes:
        plain = redis_client.Redis.from_url(node.url)
        try:
            holding += bool([k async for k in plain.scan_iter(match=f"{namespace}*")])
        finally:
            await plain.aclose()
    assert holding >= 2


async def test_calls_beyond_the_connection_limit_wait_for_a_connection(
    redis_cluster: RedisCluster,
) -> None:
    # redis-py's cluster client raises at once when a node has no free connection.
    namespace = f"busy-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(
        redis_cluster.client_url,
        namespace=namespace,
        timeout_s=5.0,
        max_connections=2,
        cluster=True,
    )
    try:
        stamps = await asyncio.gather(*(store.next_task_stamp() for _ in range(50)))
        assert sorted(uid for uid, _ in stamps) == list(range(50))
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:1/2", "only database 0"),
        ("redis+cluster://127.0.0.1:1?namespace=a{b}:", "reserved for hash tags"),
        ("redis://127.0.0.1:1?namespace=a}:", "reserved for hash tags"),
        ("cluster://127.0.0.1:1", "redis\\+cluster://"),
    ],
)
def test_a_bad_store_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(from_mapping({**BASE, "store": url}, env={}))


async def test_put_task_refuses_old_values_that_changed_since_the_read(raw: Any) -> None:
    k = Keys(f"stale-{uuid.uuid4().hex[:8]}:")
    keys = [k.task(7), k.tasks, k.task_bodies]
    keys += [k.task_by(f, "") for f in TASK_INDEXED] * 2
    keys += [k.task_dates(f) for f in TASK_DATES]
    new = ["enqueued", "indexCreation", "movies", "", ""]
    create = ["create", 7, "{}", *[""] * 5, *new, 1, "", ""]
    assert await raw.eval(scripts.PUT_TASK, len(keys), *keys, *create) == 1
    # A caller that read the task before it was created names the wrong sets.
    assert await raw.eval(scripts.PUT_TASK, len(keys), *keys, *create) == -1
    assert await raw.hget(k.task(7), "status") == "enqueued"


async def test_claim_asks_again_when_a_job_it_was_not_given_is_active(raw: Any) -> None:
    k = Keys(f"stale-{uuid.uuid4().hex[:8]}:")
    job = [k.job("j"), k.job_slots("j"), k.active_jobs, k.job_turn, k.queue_depth]
    assert await raw.eval(scripts.ENQUEUE_JOB, len(job), *job, "j", "kind", "{}", "{}") == 1
    # Read before `j` was enqueued: no job named, so nothing claimable among them.
    claim = [k.active_jobs, k.job_turn]
    assert await raw.eval(scripts.CLAIM_CHUNK, 2, *claim, "pod-a", 1000, "") == -1
    named = [*claim, k.job("j"), k.job_slots("j")]
    got = await raw.eval(scripts.CLAIM_CHUNK, 4, *named, "pod-a", 1000, "", "j")
    assert got[0] == "j"


async def test_save_operation_refuses_a_scope_that_is_not_the_stored_one(raw: Any) -> None:
    k = Keys(f"stale-{uuid.uuid4().hex[:8]}:")
    created = [k.operation("op"), k.running("topology"), k.operations, k.operation_seq]
    fields = ["id", "op", "scope", "topology", "state", "running"]
    assert await raw.eval(scripts.CREATE_OPERATION, 4, *created, "op", *fields) is None
    wrong = [k.operation("op"), k.running("other")]
    done = ["op", "other", "succeeded", "phase", orjson.dumps("x")]
    assert await raw.eval(scripts.SAVE_OPERATION, 2, *wrong, *done) == -1
    assert await raw.get(k.running("topology")) == "op"
    right = [k.operation("op"), k.running("topology")]
    done[1] = "topology"
    assert await raw.eval(scripts.SAVE_OPERATION, 2, *right, *done) == 1
    assert await raw.get(k.running("topology")) is None


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A Redis Cluster this test may stop, freeze and restart."""
    cluster = RedisCluster(tmp_path / "cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def _heals(store: RedisStore) -> None:
    deadline = time.monotonic() + HEAL_DEADLINE_S
    while True:
        try:
            await store.next_task_stamp()
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store did not come back"
            await asyncio.sleep(0.05)


async def test_a_frozen_or_stopped_cluster_is_unavailable_promptly_and_heals(
    own_cluster: RedisCluster,
) -> None:
    store = RedisStore(own_cluster.client_url, namespace="outage:", timeout_s=0.3, cluster=True)
    try:
        # A fresh cluster's first call may miss the short deadline on a busy machine.
        await _heals(store)
        # Frozen masters: connections stay open, nothing answers; the deadline ends each call.
        for node in own_cluster.nodes:
            node.pause()
        try:
            for call in outage_calls(store):
                await unavailable_promptly(call)
        finally:
            for node in own_cluster.nodes:
                node.resume()
        await _heals(store)
        # Stopped masters: refused at once.
        own_cluster.stop()
        for call in outage_calls(store):
            await unavailable_promptly(call)
        own_cluster.restart()  # same ports and cluster configuration, empty
        await _heals(store)
        # A call that missed its deadline while healing may still have run: the stamps go
        # on from wherever that left them, one at a time.
        stamp = (await store.next_task_stamp())[0]
        assert (await store.next_task_stamp())[0] == stamp + 1
        assert await store.lease_acquire("s", "pod-a", 1000)
        assert await store.enqueue_job("j", "k", {}, [{}])
        assert await store.claim_chunk("pod-a", 1000) is not None  # scripts reloaded
    finally:
        await store.close()
