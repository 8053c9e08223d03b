"""`/tasks` and `/batches` query strings: parsing with Meilisearch's error codes and
messages, matching tasks, and uid-descending `from`/`limit` pagination.

Dates accept RFC 3339 or `YYYY-MM-DD`; comparisons are strict, and a date-only `after*`
bound means "after that whole day", as in Meilisearch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .engine.validation import parameter_error
from .errors import MeiliError
from .node import check_index_uid
from .params import check_query, query_bool, query_uint
from .tasks import Task
from .timeutil import parse_rfc3339

STATUSES = ("enqueued", "processing", "succeeded", "failed", "canceled")
TYPES = (
    "documentAdditionOrUpdate", "documentEdition", "documentDeletion", "settingsUpdate",
    "indexCreation", "indexDeletion", "indexUpdate", "indexSwap", "taskCancelation",
    "taskDeletion", "dumpCreation", "snapshotCreation", "export", "upgradeDatabase",
    "indexCompaction", "networkTopologyChange",
)  # fmt: skip
_DATES = (
    ("afterEnqueuedAt", "enqueued_at", True),
    ("beforeEnqueuedAt", "enqueued_at", False),
    ("afterStartedAt", "started_at", True),
    ("beforeStartedAt", "started_at", False),
    ("afterFinishedAt", "finished_at", True),
    ("beforeFinishedAt", "finished_at", False),
)
FILTER_PARAMS = (
    "uids", "batchUids", "canceledBy", "types", "statuses", "indexUids",
    *(name for name, _, _ in _DATES),
)  # fmt: skip
LIST_PARAMS = ("limit", "from", "reverse", *FILTER_PARAMS)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _values(raw: str) -> list[str] | None:
    """The comma-separated values, or None for the wildcard `*`."""
    items = [item.strip() for item in raw.split(",")]
    return None if "*" in items else items


def _uint_set(raw: str, name: str, code: str) -> set[int] | None:
    items = _values(raw)
    if items is None:
        return None
    for item in items:
        if not (item.isascii() and item.isdigit()):
            raise parameter_error(code, name, f"could not parse `{item}` as a positive integer")
    return {int(item) for item in items}


def _choice_set(
    raw: str, name: str, code: str, accepted: tuple[str, ...], what: str
) -> set[str] | None:
    items = _values(raw)
    if items is None:
        return None
    for item in items:
        if item not in accepted:
            listed = ", ".join(f"`{a}`" for a in accepted)
            plural = "statuses" if what == "status" else f"{what}s"
            raise parameter_error(
                code, name, f"`{item}` is not a valid task {what}. Available {plural} are {listed}."
            )
    return set(items)


def _date(raw: str, name: str, after: bool) -> datetime:
    try:
        if len(raw) == 10 and raw[4] == "-" and raw[7] == "-":
            day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(days=1) if after else day
        return parse_rfc3339(raw)
    except ValueError:
        raise parameter_error(
            "invalid_task_" + _snake(name),
            name,
            f"`{raw}` is an invalid date-time. It should follow the YYYY-MM-DD or RFC 3339 "
            "date-time format.",
        ) from None


@dataclass(slots=True)
class TaskQuery:
    uids: set[int] | None = None
    batch_uids: set[int] | None = None
    canceled_by: set[int] | None = None
    types: set[str] | None = None
    statuses: set[str] | None = None
    index_uids: set[str] | None = None
    # (task attribute, strict bound, True for "after")
    dates: list[tuple[str, datetime, bool]] = field(default_factory=list)
    limit: int = 20
    from_uid: int | None = None
    reverse: bool = False
    has_filter: bool = False

    def matches(self, task: Task, *, by_batch: bool = False) -> bool:
        own_uid = task.batch_uid if by_batch else task.uid
        if self.uids is not None and own_uid not in self.uids:
            return False
        if self.batch_uids is not None and task.batch_uid not in self.batch_uids:
            return False
        if self.canceled_by is not None and task.canceled_by not in self.canceled_by:
            return False
        if self.types is not None and task.type not in self.types:
            return False
        if self.statuses is not None and task.status not in self.statuses:
            return False
        if self.index_uids is not None and task.index_uid not in self.index_uids:
            return False
        for attribute, bound, after in self.dates:
            moment = getattr(task, attribute)
            if moment is None or (moment <= bound if after else moment >= bound):
                return False
        return True


def parse_task_query(params: Mapping[str, str], *, listing: bool) -> TaskQuery:
    """Parse `/tasks` (listing) or `/tasks/cancel` / `DELETE /tasks` (filters only)."""
    check_query(params, LIST_PARAMS if listing else FILTER_PARAMS)
    query = TaskQuery(has_filter=any(name in params for name in FILTER_PARAMS))
    if listing:
        query.limit = query_uint(params, "limit", "invalid_task_limit", 20)
        if "from" in params:
            query.from_uid = query_uint(params, "from", "invalid_task_from", 0)
        query.reverse = query_bool(params, "reverse", "invalid_task_reverse", False)
    for name, code, attr in (
        ("uids", "invalid_task_uids", "uids"),
        ("batchUids", "invalid_batch_uids", "batch_uids"),
        ("canceledBy", "invalid_task_canceled_by", "canceled_by"),
    ):
        if name in params:
            setattr(query, attr, _uint_set(params[name], name, code))
    if "types" in params:
        query.types = _choice_set(params["types"], "types", "invalid_task_types", TYPES, "type")
    if "statuses" in params:
        query.statuses = _choice_set(
            params["statuses"], "statuses", "invalid_task_statuses", STATUSES, "status"
        )
    if "indexUids" in params:
        uids = _values(params["indexUids"])
        query.index_uids = None if uids is None else {check_index_uid(u, "indexUids") for u in uids}
    for name, attribute, after in _DATES:
        if name in params:
            query.dates.append((attribute, _date(params[name], name, after), after))
    return query


def missing_filters(action: str) -> MeiliError:
    return MeiliError(
        "missing_task_filters",
        f"Query parameters to filter the tasks to {action} are missing. Available query "
        "parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, "
        "`beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, "
        "`beforeFinishedAt`, `afterFinishedAt`.",
    )


def paginate(
    items: Iterable[Any], query: TaskQuery, uid_of: Callable[[Any], int]
) -> dict[str, Any]:
    """`items` in uid-descending order (ascending when `reverse`), already filtered."""
    total = 0
    page: list[Any] = []
    for item in items:
        total += 1
        if query.from_uid is not None:
            uid = uid_of(item)
            if (uid < query.from_uid) if query.reverse else (uid > query.from_uid):
                continue
        if len(page) <= query.limit:
            page.append(item)
    following = page[query.limit] if len(page) > query.limit else None
    return {
        "results": page[: query.limit],
        "total": total,
        "limit": query.limit,
        "from": uid_of(page[0]) if page else None,
        "next": None if following is None else uid_of(following),
    }
