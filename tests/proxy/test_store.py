"""The state store contract, run against every backend (SQLite now; Redis joins later)."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from miroir_proxy.state.sqlite import SqliteStore
from miroir_proxy.state.store import IndexMeta, Store, TaskRecord
from miroir_proxy.state.taskquery import parse


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Callable[[], Store]:
    def make() -> Store:
        return SqliteStore(tmp_path / "state.sqlite3", clock=clock)

    return make


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    s = make_store()
    yield s
    await s.close()


def task(uid: int, **kw: object) -> TaskRecord:
    base: dict[str, object] = {
        "index_uid": "movies",
        "type": "documentAdditionOrUpdate",
        "enqueued_at": f"2026-01-01T00:00:{uid:02d}.000000Z",
    }
    base.update(kw)
    return TaskRecord(uid=uid, **base)  # type: ignore[arg-type]


async def test_task_uids_are_unique_and_increasing_under_concurrency(store: Store) -> None:
    uids = await asyncio.gather(*(store.next_task_uid() for _ in range(300)))
    assert sorted(uids) == list(range(300))


async def test_everything_survives_reopen(make_store: Callable[[], Store]) -> None:
    first = make_store()
    for _ in range(3):
        await first.next_task_uid()
    await first.create_task(
        task(
            2,
            node_tasks=[
                {
                    "node": "n1",
                    "group": "g1",
                    "shards": [1, 2],
                    "uid": 7,
                    "status": "enqueued",
                    "error": None,
                }
            ],
        )
    )
    assert await first.put_topology(0, {"groups": ["g1"]}) == 1
    await first.close()

    second = make_store()
    try:
        assert await second.next_task_uid() == 3
        restored = await second.get_task(2)
        assert restored is not None
        assert restored.node_tasks[0]["uid"] == 7
        assert await second.get_topology() == (1, {"groups": ["g1"]})
    finally:
        await second.close()


async def test_finished_tasks_never_change_back(store: Store) -> None:
    await store.create_task(task(0))
    done = task(0, status="succeeded", finished_at="2026-01-01T00:01:00.000000Z")
    await store.save_task(done)
    await store.save_task(task(0, status="processing"))
    got = await store.get_task(0)
    assert got is not None
    assert got.status == "succeeded"
    assert [t.uid for t in await store.unfinished_tasks()] == []


async def test_listing_filters_and_pagination(store: Store) -> None:
    for uid in range(10):
        await store.create_task(
            task(
                uid,
                index_uid="movies" if uid % 2 else "books",
                status="succeeded" if uid < 6 else "enqueued",
                type="settingsUpdate" if uid == 3 else "documentAdditionOrUpdate",
            )
        )
    page = await store.list_tasks(parse({"limit": "3"}, action="list"))
    assert [t.uid for t in page.results] == [9, 8, 7]
    assert (page.total, page.next) == (10, 6)

    page = await store.list_tasks(parse({"limit": "3", "from": "6"}, action="list"))
    assert [t.uid for t in page.results] == [6, 5, 4]

    page = await store.list_tasks(parse({"reverse": "true", "limit": "4"}, action="list"))
    assert [t.uid for t in page.results] == [0, 1, 2, 3]

    page = await store.list_tasks(
        parse({"indexUids": "movies", "statuses": "succeeded"}, action="list")
    )
    assert [t.uid for t in page.results] == [5, 3, 1]
    assert page.total == 3 and page.next is None

    page = await store.list_tasks(parse({"types": "settingsUpdate,indexCreation"}, action="list"))
    assert [t.uid for t in page.results] == [3]

    page = await store.list_tasks(
        parse({"afterEnqueuedAt": "2026-01-01T00:00:07Z", "uids": "1,8,9"}, action="list")
    )
    assert [t.uid for t in page.results] == [9, 8]


async def test_delete_removes_only_finished_tasks(store: Store) -> None:
    for uid in range(4):
        await store.create_task(task(uid, status="succeeded" if uid < 2 else "processing"))
    assert await store.delete_tasks(parse({"uids": "*"}, action="delete")) == [0, 1]
    assert [t.uid for t in (await store.list_tasks(parse({}, action="list"))).results] == [3, 2]
    assert await store.next_task_uid() == 0  # the uid counter is independent of deletions


async def test_topology_compare_and_set(store: Store) -> None:
    assert await store.get_topology() is None
    assert await store.put_topology(0, {"v": 1}) == 1
    assert await store.put_topology(0, {"v": "lost"}) is None
    assert await store.put_topology(1, {"v": 2}) == 2
    assert await store.put_topology(1, {"v": "stale"}) is None
    assert await store.get_topology() == (2, {"v": 2})


async def test_kv_ttl_and_set_if_new(store: Store, clock: FakeClock) -> None:
    assert await store.kv_set("k", b"one", 10, only_new=True)
    assert not await store.kv_set("k", b"two", 10, only_new=True)
    assert await store.kv_get("k") == b"one"
    clock.now += 11
    assert await store.kv_get("k") is None
    assert await store.kv_set("k", b"three", 10, only_new=True)
    assert await store.kv_get("k") == b"three"


async def test_index_metadata(make_store: Callable[[], Store]) -> None:
    first = make_store()
    meta = IndexMeta("movies", 16, None, "2026-01-01T00:00:00.000000Z")
    assert await first.put_index(meta, only_new=True)
    assert not await first.put_index(IndexMeta("movies", 4, "x", "later"), only_new=True)
    assert await first.put_index(IndexMeta("movies", 16, "id", meta.created_at))
    assert await first.put_index(IndexMeta("books", 8, None, meta.created_at))
    await first.close()

    second = make_store()
    try:
        assert [m.uid for m in await second.list_indexes()] == ["books", "movies"]
        assert await second.get_index("movies") == IndexMeta("movies", 16, "id", meta.created_at)
        assert await second.delete_index("movies")
        assert not await second.delete_index("movies")
        assert await second.get_index("movies") is None
    finally:
        await second.close()
