"""`/tasks` query strings: parsing errors, matching, dates and from/next pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from miroir_devnode.errors import MeiliError
from miroir_devnode.task_filters import paginate, parse_task_query
from miroir_devnode.tasks import Task

DAY = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _tasks() -> list[Task]:
    kinds = ["indexCreation", "documentAdditionOrUpdate", "settingsUpdate", "documentDeletion"]
    statuses = ["succeeded", "failed", "enqueued", "canceled"]
    tasks = []
    for uid in range(8):
        task = Task(
            uid, "movies" if uid % 2 else "books", kinds[uid % 4], DAY + timedelta(hours=uid)
        )
        task.status = statuses[uid % 4]
        if task.status != "enqueued":
            task.batch_uid = uid
            task.started_at = task.enqueued_at + timedelta(minutes=1)
            task.finished_at = task.enqueued_at + timedelta(minutes=2)
        if task.status == "canceled":
            task.canceled_by = 99
        tasks.append(task)
    return tasks


def _select(**params: str) -> list[int]:
    parsed = parse_task_query(dict(params), listing=True)
    return [t.uid for t in _tasks() if parsed.matches(t)]


def test_list_filters() -> None:
    assert _select(statuses="failed,canceled") == [1, 3, 5, 7]
    assert _select(types="settingsUpdate", indexUids="books") == [2, 6]
    assert _select(uids="0,5,9") == [0, 5]
    assert _select(canceledBy="99") == [3, 7]
    assert _select(batchUids="1,2") == [1]
    assert _select(indexUids="*", statuses="*") == list(range(8))


def test_date_filters_are_strict_and_skip_missing_dates() -> None:
    after = (DAY + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert _select(afterEnqueuedAt=after) == [3, 4, 5, 6, 7]
    assert _select(beforeEnqueuedAt=after) == [0, 1]
    assert 2 not in _select(afterStartedAt="2024-01-01")
    assert _select(afterEnqueuedAt="2024-05-01") == []
    assert _select(beforeFinishedAt="2024-05-02") == [0, 1, 3, 4, 5, 7]


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (
            {"uids": "1,x"},
            "invalid_task_uids",
            "Invalid value in parameter `uids`: could not parse `x` as a positive integer",
        ),
        (
            {"statuses": "done"},
            "invalid_task_statuses",
            "Invalid value in parameter `statuses`: `done` is not a valid task status. Available "
            "statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`.",
        ),
        ({"types": "indexMove"}, "invalid_task_types", None),
        ({"indexUids": "bad uid"}, "invalid_index_uid", None),
        (
            {"afterEnqueuedAt": "yesterday"},
            "invalid_task_after_enqueued_at",
            "Invalid value in parameter `afterEnqueuedAt`: `yesterday` is an invalid date-time. "
            "It should follow the YYYY-MM-DD or RFC 3339 date-time format.",
        ),
        ({"limit": "-1"}, "invalid_task_limit", None),
        ({"from": "a"}, "invalid_task_from", None),
        ({"reverse": "yes"}, "invalid_task_reverse", None),
        ({"batchUids": "z"}, "invalid_batch_uids", None),
        ({"offset": "1"}, "bad_request", None),
    ],
)
def test_parse_errors(params: dict[str, str], code: str, message: str | None) -> None:
    with pytest.raises(MeiliError) as caught:
        parse_task_query(params, listing=True)
    assert caught.value.code == code
    if message is not None:
        assert caught.value.message == message


def test_cancel_and_delete_reject_pagination_and_report_filters() -> None:
    with pytest.raises(MeiliError) as caught:
        parse_task_query({"limit": "1"}, listing=False)
    assert caught.value.code == "bad_request"
    assert not parse_task_query({}, listing=False).has_filter
    assert parse_task_query({"statuses": "enqueued"}, listing=False).has_filter


def _page(uids: list[int], **params: str) -> dict[str, object]:
    query = parse_task_query(params, listing=True)
    return paginate(uids, query, lambda uid: uid)


def test_pagination_from_next_and_total() -> None:
    descending = list(range(9, -1, -1))
    assert _page(descending, limit="3") == {
        "results": [9, 8, 7],
        "total": 10,
        "limit": 3,
        "from": 9,
        "next": 6,
    }
    assert _page(descending, limit="3", **{"from": "6"})["results"] == [6, 5, 4]
    last = _page(descending, limit="3", **{"from": "2"})
    assert (last["results"], last["next"], last["total"]) == ([2, 1, 0], None, 10)
    ascending = list(range(10))
    page = _page(ascending, limit="4", reverse="true", **{"from": "3"})
    assert (page["results"], page["next"]) == ([3, 4, 5, 6], 7)
    assert _page([], limit="5") == {
        "results": [],
        "total": 0,
        "limit": 5,
        "from": None,
        "next": None,
    }
