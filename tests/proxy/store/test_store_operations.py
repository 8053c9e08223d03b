"""Operation records (`/_miroir/operations`), on both store backends."""

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from miroir_proxy.state.redis import RedisStore
from miroir_proxy.state.sqlite import SqliteStore
from miroir_proxy.state.store import OperationRecord, Store, StoreUnavailable

from ...redis_server import RedisServer

FINISHED = ("succeeded", "failed", "canceled")


def operation(op_id: str, scope: str = "topology", **kw: object) -> OperationRecord:
    base: dict[str, object] = {
        "kind": "group-add",
        "params": {"group": "g2", "nodes": [{"id": "n7", "url": "http://n7"}], "tags": []},
        "started_at": "2026-12-06T02:00:00.000000Z",
    }
    base.update(kw)
    return OperationRecord(id=op_id, scope=scope, **base)  # type: ignore[arg-type]


def finish(record: OperationRecord, state: str = "succeeded") -> OperationRecord:
    return replace(record, state=state, finished_at="2026-12-06T02:30:00.000000Z")


async def test_operations_are_stored_whole_and_listed_newest_first(store: Store) -> None:
    ops = [
        operation("op-a", "topology"),
        operation("op-b", "index:movies", kind="reshard", phase="copy", progress={"done": 0}),
        operation("op-c", "anti-entropy", kind="anti-entropy", params={}),
    ]
    for op in ops:
        assert await store.create_operation(op) is None
    for op in ops:
        assert await store.get_operation(op.id) == op
    assert [op.id for op in await store.list_operations()] == ["op-c", "op-b", "op-a"]
    assert await store.list_operations(limit=2) == [ops[2], ops[1]]
    assert await store.list_operations(limit=0) == []


async def test_one_running_operation_per_scope(store: Store) -> None:
    first = operation("op-1")
    assert await store.create_operation(first) is None
    assert await store.create_operation(operation("op-2")) == "op-1"
    assert await store.get_operation("op-2") is None
    assert await store.create_operation(operation("op-3", "index:movies")) is None
    # An existing id is never overwritten, whatever its scope.
    assert await store.create_operation(operation("op-1", "elsewhere", kind="x")) == "op-1"
    assert await store.get_operation("op-1") == first

    # Each way of finishing frees the scope for the next operation.
    holder = first
    for n, state in enumerate(FINISHED):
        assert await store.save_operation(finish(holder, state))
        holder = operation(f"op-next-{n}")
        assert await store.create_operation(holder) is None
        assert await store.create_operation(operation(f"op-late-{n}")) == holder.id
    listed = [op.id for op in await store.list_operations()]
    assert listed == ["op-next-2", "op-next-1", "op-next-0", "op-3", "op-1"]


async def test_concurrent_creators_on_one_scope_have_one_winner(
    make_store: Callable[[], Store],
) -> None:
    pods = [make_store() for _ in range(3)]
    try:
        ids = [f"op-{i}" for i in range(10)]
        answers = await asyncio.gather(
            *(pods[i % 3].create_operation(operation(op_id)) for i, op_id in enumerate(ids))
        )
        assert answers.count(None) == 1
        winner = ids[answers.index(None)]
        assert {a for a in answers if a is not None} == {winner}
        assert [op.id for op in await pods[1].list_operations()] == [winner]
    finally:
        await asyncio.gather(*(p.close() for p in pods))


async def test_a_finished_operation_never_changes(store: Store) -> None:
    created = operation("op-1")
    assert await store.create_operation(created) is None
    syncing = replace(created, phase="syncing", progress={"done": 3, "total": 16, "unit": "shard"})
    assert await store.save_operation(syncing)
    assert await store.get_operation("op-1") == syncing

    failed = replace(finish(syncing, "failed"), error={"message": "node n7 is down"})
    assert await store.save_operation(failed)
    assert not await store.save_operation(replace(syncing, phase="verifying"))
    assert not await store.save_operation(finish(syncing, "succeeded"))
    assert await store.get_operation("op-1") == failed


async def test_a_save_writes_only_what_an_operation_may_change(store: Store) -> None:
    created = operation("op-1")
    assert await store.create_operation(created) is None
    renamed = replace(
        created, kind="other", scope="other", started_at="2030-01-01T00:00:00.000000Z", phase="p"
    )
    assert await store.save_operation(renamed)
    assert await store.get_operation("op-1") == replace(created, phase="p")
    # The scope the operation was created with is the one it holds, and finishing frees.
    assert await store.create_operation(operation("op-2", "other")) is None
    assert await store.create_operation(operation("op-3")) == "op-1"
    assert await store.save_operation(finish(renamed))
    assert await store.create_operation(operation("op-3")) is None


async def test_a_cancel_request_survives_later_saves(store: Store) -> None:
    created = operation("op-1")
    assert await store.create_operation(created) is None
    requested = await store.request_cancel("op-1")
    assert requested == replace(created, cancel_requested=True)

    # The runner's copy predates the request: saving it keeps the request.
    stale = replace(created, phase="syncing", progress={"done": 1})
    assert await store.save_operation(stale)
    assert await store.get_operation("op-1") == replace(stale, cancel_requested=True)
    canceled = finish(stale, "canceled")
    assert await store.save_operation(canceled)
    assert await store.get_operation("op-1") == replace(canceled, cancel_requested=True)


async def test_a_cancel_request_leaves_a_finished_operation_alone(store: Store) -> None:
    done = finish(operation("op-1"))
    assert await store.create_operation(operation("op-1")) is None
    assert await store.save_operation(done)
    assert await store.request_cancel("op-1") == done
    assert await store.get_operation("op-1") == done


async def test_unknown_operations(store: Store) -> None:
    assert await store.get_operation("op-nope") is None
    assert not await store.save_operation(operation("op-nope"))
    assert await store.get_operation("op-nope") is None
    assert await store.request_cancel("op-nope") is None
    assert await store.list_operations() == []
    # Nothing was created on the way: the scope is free.
    assert await store.create_operation(operation("op-1")) is None


async def test_states_outside_the_four_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="running"):
        await store.create_operation(operation("op-1", state="succeeded"))
    assert await store.get_operation("op-1") is None
    assert await store.create_operation(operation("op-1")) is None
    with pytest.raises(ValueError, match="paused"):
        await store.save_operation(operation("op-1", state="paused"))
    assert await store.get_operation("op-1") == operation("op-1")


async def test_operations_survive_reopen(make_store: Callable[[], Store]) -> None:
    first = make_store()
    assert await first.create_operation(operation("op-1")) is None
    assert await first.create_operation(operation("op-2", "ttl")) is None
    assert await first.request_cancel("op-1") is not None
    await first.close()

    second = make_store()
    try:
        assert await second.get_operation("op-1") == replace(
            operation("op-1"), cancel_requested=True
        )
        assert await second.create_operation(operation("op-3")) == "op-1"
        assert [op.id for op in await second.list_operations()] == ["op-2", "op-1"]
    finally:
        await second.close()


async def test_a_state_file_from_before_operations_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    old = SqliteStore(path)
    await old.put_topology(0, {"groups": ["g1"]})
    await old.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE operations")
    conn.close()

    store = SqliteStore(path)
    try:
        assert await store.get_topology() == (1, {"groups": ["g1"]})
        assert await store.create_operation(operation("op-1")) is None
        assert await store.get_operation("op-1") == operation("op-1")
    finally:
        await store.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server this test may stop and restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_operations_on_a_stopped_redis_are_unavailable(own_redis: RedisServer) -> None:
    store = RedisStore(own_redis.url, namespace="ops-outage:", timeout_s=1.0)
    try:
        assert await store.create_operation(operation("op-1")) is None
        own_redis.stop()
        for call in (
            lambda: store.create_operation(operation("op-2")),
            lambda: store.get_operation("op-1"),
            lambda: store.list_operations(),
            lambda: store.save_operation(operation("op-1", phase="p")),
            lambda: store.request_cancel("op-1"),
        ):
            with pytest.raises(StoreUnavailable):
                await call()
        own_redis.start()  # same port, empty: the scripts are loaded again
        assert await store.create_operation(operation("op-2")) is None
        assert await store.save_operation(finish(operation("op-2")))
    finally:
        await store.close()
