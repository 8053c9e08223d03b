"""Tasks through the official SDK: the task object, filters (types, statuses, indexUids, uids,
dates), from/next pagination, cancelation and deletion."""

from __future__ import annotations

from collections.abc import Callable

import meilisearch
import pytest
from meilisearch.errors import MeilisearchApiError
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

Wait = Callable[[TaskInfo | int], Task]
MakeIndex = Callable[..., Index]


@pytest.fixture
def history(client: meilisearch.Client, wait_task: Wait) -> list[Task]:
    """Six finished tasks on two indexes: creations, an add, a settings update, a failure."""
    tasks = [
        wait_task(client.create_index("alpha")),
        wait_task(client.create_index("beta")),
        wait_task(client.index("alpha").add_documents([{"id": 1, "t": "x"}])),
        wait_task(client.index("beta").update_stop_words(["the"])),
        client.wait_for_task(client.create_index("alpha").task_uid),
        wait_task(client.index("alpha").add_documents([{"id": 2, "t": "y"}])),
    ]
    assert tasks[4].status == "failed"
    return tasks


def uids(tasks: list[Task]) -> list[int]:
    return [task.uid for task in tasks]


def test_task_object(client: meilisearch.Client, make_index: MakeIndex) -> None:
    index = make_index("books")
    info = index.add_documents([{"id": 1, "title": "Dune"}])
    task = client.wait_for_task(info.task_uid)
    assert task.uid == info.task_uid
    assert task.index_uid == "books"
    assert task.status == "succeeded"
    assert task.type == "documentAdditionOrUpdate"
    assert task.error is None
    assert task.canceled_by is None
    assert task.duration is not None
    assert task.duration.startswith("PT")
    assert task.started_at is not None
    assert task.finished_at is not None
    assert task.enqueued_at <= task.started_at <= task.finished_at

    raw = client.http.get(f"tasks/{info.task_uid}")
    assert set(raw) >= {
        "uid", "batchUid", "indexUid", "status", "type", "canceledBy", "details",
        "error", "duration", "enqueuedAt", "startedAt", "finishedAt",
    }  # fmt: skip
    assert raw["enqueuedAt"].endswith("Z")
    assert index.get_task(info.task_uid).uid == info.task_uid


def test_batches(client: meilisearch.Client, make_index: MakeIndex) -> None:
    index = make_index("books")
    info = index.add_documents([{"id": 1, "title": "Dune"}])
    client.wait_for_task(info.task_uid)
    batch_uid = client.http.get(f"tasks/{info.task_uid}")["batchUid"]
    assert isinstance(batch_uid, int)
    batch = client.get_batch(batch_uid)
    assert batch.uid == batch_uid
    assert batch.stats is not None
    total = batch.stats["totalNbTasks"]
    assert isinstance(total, int)
    assert total >= 1
    assert batch.stats["types"] == {"documentAdditionOrUpdate": total}
    assert batch_uid in {b.uid for b in client.get_batches().results}
    with pytest.raises(MeilisearchApiError) as err:
        client.get_batch(999_999)
    assert err.value.code == "batch_not_found"


def test_task_uids_increase(client: meilisearch.Client, history: list[Task]) -> None:
    assert uids(history) == sorted(uids(history))
    assert len(set(uids(history))) == len(history)


def test_filters(client: meilisearch.Client, history: list[Task]) -> None:
    ours = set(uids(history))

    def listed(**params: object) -> list[Task]:
        return [t for t in client.get_tasks(dict(params)).results if t.uid in ours]

    assert uids(listed(indexUids=["beta"])) == [history[3].uid, history[1].uid]
    assert {t.type for t in listed(types=["indexCreation"])} == {"indexCreation"}
    assert len(listed(types=["indexCreation"])) == 3
    assert uids(listed(statuses=["failed"])) == [history[4].uid]
    assert uids(listed(uids=[str(history[0].uid), str(history[2].uid)])) == [
        history[2].uid,
        history[0].uid,
    ]
    combined = listed(indexUids=["alpha"], types=["documentAdditionOrUpdate"])
    assert uids(combined) == [history[5].uid, history[2].uid]

    # The raw string: the SDK's datetime drops digits beyond microseconds.
    pivot = client.http.get(f"tasks/{history[2].uid}")["enqueuedAt"]
    after = uids(listed(afterEnqueuedAt=pivot))
    before = uids(listed(beforeEnqueuedAt=pivot))
    assert history[2].uid not in after + before
    assert set(after) == set(uids(history[3:]))
    assert set(before) == set(uids(history[:2]))

    assert client.index("beta").get_tasks().results[0].index_uid == "beta"


def test_from_next_pagination(client: meilisearch.Client, history: list[Task]) -> None:
    first = client.get_tasks({"limit": 2})
    assert first.limit == 2
    assert len(first.results) == 2
    assert first.from_ == first.results[0].uid
    assert first.next_ is not None
    assert first.total >= len(history)

    seen = uids(first.results)
    cursor: int | None = first.next_
    while cursor is not None:
        page = client.get_tasks({"limit": 2, "from": cursor})
        assert page.results[0].uid == cursor
        seen += uids(page.results)
        cursor = page.next_
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == first.total
    assert set(uids(history)) <= set(seen)


def test_cancel_and_delete(client: meilisearch.Client, history: list[Task]) -> None:
    finished = history[0].uid
    info = client.cancel_tasks({"uids": [str(finished)]})
    assert info.type == "taskCancelation"
    assert info.index_uid is None
    cancelation = client.wait_for_task(info.task_uid)
    assert cancelation.status == "succeeded"
    assert cancelation.details == {
        "matchedTasks": 1,
        "canceledTasks": 0,
        "originalFilter": f"?uids={finished}",
    }
    assert client.get_task(finished).status == "succeeded"

    deletion = client.wait_for_task(client.delete_tasks({"uids": [str(finished)]}).task_uid)
    assert deletion.type == "taskDeletion"
    assert deletion.details == {
        "matchedTasks": 1,
        "deletedTasks": 1,
        "originalFilter": f"?uids={finished}",
    }
    with pytest.raises(MeilisearchApiError) as err:
        client.get_task(finished)
    assert err.value.code == "task_not_found"


def test_cancel_enqueued_work(client: meilisearch.Client, make_index: MakeIndex) -> None:
    """A cancelation jumps the queue (Meilisearch processes it before other work), so tasks
    queued behind a long indexing task are canceled, not run."""
    index = make_index("bulk")
    slow = [{"id": i, "text": f"word{i % 977} filler {i}"} for i in range(40_000)]
    long_task = index.add_documents(slow)
    queued = [index.add_documents([{"id": -i, "text": "late"}]).task_uid for i in range(1, 6)]
    info = client.cancel_tasks({"uids": [str(uid) for uid in queued]})
    cancelation = client.wait_for_task(info.task_uid, timeout_in_ms=30_000)
    assert cancelation.status == "succeeded"
    # The raw query string, as the SDK percent-encoded it.
    assert cancelation.details == {
        "matchedTasks": 5,
        "canceledTasks": 5,
        "originalFilter": "?uids=" + "%2C".join(str(uid) for uid in queued),
    }
    for uid in queued:
        task = client.wait_for_task(uid)
        assert (task.status, task.canceled_by) == ("canceled", cancelation.uid)
        assert task.details == {"receivedDocuments": 1, "indexedDocuments": 0}
    assert client.wait_for_task(long_task.task_uid, timeout_in_ms=30_000).status == "succeeded"
    assert index.get_stats().number_of_documents == 40_000


def test_task_routes_need_a_filter(client: meilisearch.Client) -> None:
    for call in (client.cancel_tasks, client.delete_tasks):
        with pytest.raises(MeilisearchApiError) as err:
            call({})
        assert err.value.code == "missing_task_filters"
        assert err.value.status_code == 400
