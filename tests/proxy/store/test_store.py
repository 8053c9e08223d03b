"""The state store contract, run against every backend (SQLite, a real Redis, a Redis Cluster)."""

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from miroir_proxy.state.store import IndexFields, IndexMeta, Store, TaskRecord
from miroir_proxy.state.taskquery import parse

from ..storekit import SHORT_TTL_MS, FakeClock, Timeline, store_maker


def task(uid: int, **kw: object) -> TaskRecord:
    base: dict[str, object] = {
        "index_uid": "movies",
        "type": "documentAdditionOrUpdate",
        "enqueued_at": f"2026-01-01T00:00:{uid:02d}.000000Z",
    }
    base.update(kw)
    return TaskRecord(uid=uid, **base)  # type: ignore[arg-type]


async def test_task_uids_are_unique_and_increasing_under_concurrency(store: Store) -> None:
    stamps = await asyncio.gather(*(store.next_task_stamp() for _ in range(300)))
    assert sorted(uid for uid, _ in stamps) == list(range(300))


async def test_task_stamps_follow_uid_order_across_clients_and_clock_steps(
    make_store: Callable[[], Store], clock: FakeClock, backend: str
) -> None:
    pods = [make_store() for _ in range(3)]
    try:
        first = await pods[0].next_task_stamp()
        # The (SQLite) clock steps back between two rounds; Redis keeps its own clock.
        rounds = [await asyncio.gather(*(p.next_task_stamp() for p in pods for _ in range(50)))]
        clock.now -= 60
        rounds.append(await asyncio.gather(*(p.next_task_stamp() for p in pods for _ in range(50))))
    finally:
        for p in pods:
            await p.close()
    stamped = sorted([first, *rounds[0], *rounds[1]])
    assert [uid for uid, _ in stamped] == list(range(301))
    moments = [moment for _, moment in stamped]
    assert moments == sorted(moments)
    assert all(m.tzinfo is not None and m.utcoffset() == timedelta(0) for m in moments)
    if backend == "sqlite":
        assert first[1] == datetime.fromtimestamp(1_000.0, UTC)
        assert moments[-1] == first[1]  # held at the last stamp, not sent back 60 s
    else:
        assert abs(first[1] - datetime.now(UTC)) < timedelta(seconds=5)


async def test_everything_survives_reopen(make_store: Callable[[], Store]) -> None:
    first = make_store()
    for _ in range(3):
        await first.next_task_stamp()
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
        assert (await second.next_task_stamp())[0] == 3
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


async def test_concurrent_saves_leave_each_task_under_its_final_values_only(
    make_store: Callable[[], Store],
) -> None:
    pods = [make_store() for _ in range(3)]
    statuses, indexes = ("enqueued", "processing"), ("movies", "books", "films")
    try:
        for uid in range(4):
            await pods[0].create_task(task(uid))
        saves = [
            pod.save_task(task(uid, status=statuses[n % 2], index_uid=indexes[n % 3]))
            for n in range(12)
            for uid in range(4)
            for pod in pods
        ]
        random.Random(7).shuffle(saves)
        await asyncio.gather(*saves)
        for uid in range(4):
            final = await pods[1].get_task(uid)
            assert final is not None
            for field, values, value in (
                ("statuses", statuses, final.status),
                ("indexUids", indexes, final.index_uid),
            ):
                for v in values:
                    page = await pods[2].list_tasks(parse({field: v}, action="list"))
                    assert (uid in [t.uid for t in page.results]) == (v == value), (uid, v)
    finally:
        for pod in pods:
            await pod.close()


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
    # The uid counter is independent of deletions.
    assert (await store.next_task_stamp())[0] == 0


async def test_topology_compare_and_set(store: Store) -> None:
    assert await store.get_topology() is None
    assert await store.put_topology(0, {"v": 1}) == 1
    assert await store.put_topology(0, {"v": "lost"}) is None
    assert await store.put_topology(1, {"v": 2}) == 2
    assert await store.put_topology(1, {"v": "stale"}) is None
    assert await store.get_topology() == (2, {"v": 2})


async def test_kv_ttl_and_set_if_new(store: Store, timeline: Timeline) -> None:
    ttl_s = SHORT_TTL_MS / 1000
    assert await store.kv_set("k", b"one", ttl_s, only_new=True)
    assert not await store.kv_set("k", b"two", ttl_s, only_new=True)
    assert await store.kv_get("k") == b"one"

    async def gone() -> bool:
        return await store.kv_get("k") is None

    await timeline.until(gone, after_ms=SHORT_TTL_MS)
    assert await store.kv_set("k", b"three", 10, only_new=True)
    assert await store.kv_get("k") == b"three"
    assert await store.kv_set("k", b"four", 10)
    assert await store.kv_get("k") == b"four"
    assert await store.kv_get("other") is None


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


async def test_index_fields_keep_first_seen_order_under_concurrent_appends(
    make_store: Callable[[], Store],
) -> None:
    pods = [make_store() for _ in range(3)]
    try:
        assert await pods[0].add_fields("movies", []) == IndexFields()
        assert await pods[0].add_fields("movies", ["id", "title", "id"]) == IndexFields(
            ("id", "title")
        )
        batches = [[f"f{pod}-{n}", "shared", "title"] for pod in range(3) for n in range(10)]
        answers = await asyncio.gather(
            *(pods[i % 3].add_fields("movies", batch) for i, batch in enumerate(batches))
        )
        final = await pods[1].add_fields("movies", [])
        assert final.fields[:2] == ("id", "title")
        assert sorted(final.fields) == sorted({"id", "title", "shared"} | {b[0] for b in batches})
        for answer in answers:  # every answer is a prefix of the final list
            assert final.fields[: len(answer.fields)] == answer.fields

        chosen = await pods[2].set_searchable("movies", ["title"])
        assert chosen == IndexFields(final.fields, ("title",))
        assert (await pods[0].add_fields("movies", ["year"])).searchable == ("title",)
        assert (await pods[1].set_searchable("movies", None)).searchable is None
        assert (await pods[1].add_fields("movies", [])).fields[-1] == "year"

        moved = IndexFields(("a", "b"), ("b",))
        await pods[0].put_fields("books", moved)
        assert await pods[2].add_fields("books", []) == moved
        await pods[0].put_fields("books", None)
        assert await pods[2].add_fields("books", []) == IndexFields()
    finally:
        for pod in pods:
            await pod.close()


async def test_saving_moves_a_task_between_filters(store: Store) -> None:
    await store.create_task(task(0, index_uid=None, type="dumpCreation"))
    await store.create_task(task(1, batch_uid=4))
    await store.save_task(
        task(1, status="canceled", batch_uid=5, canceled_by=9, finished_at="2026-01-02T00:00:00Z")
    )

    async def uids(**params: str) -> list[int]:
        return [t.uid for t in (await store.list_tasks(parse(params, action="list"))).results]

    assert await uids(statuses="enqueued") == [0]
    assert await uids(statuses="canceled", batchUids="5", canceledBy="9") == [1]
    assert await uids(batchUids="4") == []
    assert await uids(indexUids="movies") == [1]
    assert await uids(types="dumpCreation") == [0]
    assert await uids(beforeFinishedAt="2026-01-03") == [1]
    assert await uids(afterFinishedAt="2026-01-02") == []
    assert await uids(limit="0") == []
    assert (await store.list_tasks(parse({"limit": "0"}, action="list"))).next == 1
    assert await uids(uids="") == []


def _random_task(rng: random.Random, uid: int) -> TaskRecord:
    # Dates in the one format tasks are written with (SQLite compares them as text).
    second = uid * 7
    started = rng.random() < 0.7
    finished = started and rng.random() < 0.6
    return TaskRecord(
        uid=uid,
        index_uid=rng.choice(["movies", "books", "songs", None]),
        type=rng.choice(["documentAdditionOrUpdate", "settingsUpdate", "indexCreation"]),
        enqueued_at=f"2026-01-01T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        ".000000Z",
        status=rng.choice(["enqueued", "processing", "succeeded", "failed", "canceled"]),
        started_at=f"2026-01-02T00:{uid // 60 % 60:02d}:{uid % 60:02d}.500000Z"
        if started
        else None,
        finished_at=f"2026-01-03T00:00:{uid % 60:02d}.250000Z" if finished else None,
        batch_uid=rng.choice([None, 1, 2, 3]),
        canceled_by=rng.choice([None, None, 7, 8]),
    )


def _random_query(rng: random.Random) -> dict[str, str]:
    choices: dict[str, Callable[[], str]] = {
        "uids": lambda: ",".join(str(rng.randrange(400)) for _ in range(rng.randrange(1, 60))),
        "statuses": lambda: ",".join(rng.sample(["enqueued", "succeeded", "failed"], 2)),
        "types": lambda: "settingsUpdate,indexCreation",
        "indexUids": lambda: rng.choice(["movies", "books,songs", "*", "absent"]),
        "batchUids": lambda: rng.choice(["1", "2,3"]),
        "canceledBy": lambda: "7",
        "afterEnqueuedAt": lambda: f"2026-01-01T00:{rng.randrange(40):02d}:00Z",
        "beforeStartedAt": lambda: f"2026-01-02T00:{rng.randrange(7):02d}:{rng.randrange(60):02d}Z",
        "afterFinishedAt": lambda: "2026-01-03T00:00:30.25Z",
        "from": lambda: str(rng.randrange(420)),
        "limit": lambda: str(rng.randrange(0, 50)),
        "reverse": lambda: rng.choice(["true", "false"]),
    }
    names = rng.sample(sorted(choices), rng.randrange(0, 4))
    return {name: choices[name]() for name in names}


async def test_redis_answers_every_listing_like_sqlite(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    clock = FakeClock()
    sqlite = store_maker("sqlite", tmp_path, clock, request)()
    redis = store_maker("redis", tmp_path, clock, request)()
    rng = random.Random(4)
    try:
        for uid in range(400):
            record = _random_task(rng, uid)
            await asyncio.gather(sqlite.create_task(record), redis.create_task(record))
        for _ in range(300):
            query = parse(_random_query(rng), action="list")
            want, got = await asyncio.gather(sqlite.list_tasks(query), redis.list_tasks(query))
            assert [t.uid for t in got.results] == [t.uid for t in want.results], query
            assert (got.total, got.next) == (want.total, want.next), query
            assert got.results == want.results
        for _ in range(5):
            params = _random_query(rng)
            params.pop("from", None), params.pop("limit", None), params.pop("reverse", None)
            query = parse(params or {"uids": "*"}, action="delete")
            deleted = await asyncio.gather(sqlite.delete_tasks(query), redis.delete_tasks(query))
            assert deleted[0] == deleted[1], query
        everything = parse({"limit": "1000"}, action="list")
        want, got = await asyncio.gather(
            sqlite.list_tasks(everything), redis.list_tasks(everything)
        )
        assert got == want
        assert await redis.unfinished_tasks() == await sqlite.unfinished_tasks()
    finally:
        await asyncio.gather(sqlite.close(), redis.close())
