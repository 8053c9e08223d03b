"""`GET /tasks` (and cancel/delete) query strings parsed into one backend-neutral value.

Parsing follows Meilisearch: comma lists where `*` means "any", strict date comparisons, a
date-only `after*` bound moves to the next day, unknown parameters are `bad_request`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from miroir_proxy.core.errors import MiroirError

STATUSES = ("enqueued", "processing", "succeeded", "failed", "canceled")
# Every task type, in Meilisearch's order (its "expected one of" messages list them so).
_TYPE_NAMES = (
    "documentAdditionOrUpdate documentEdition documentDeletion settingsUpdate "
    "indexCreation indexDeletion indexUpdate indexSwap taskCancelation taskDeletion "
    "dumpCreation snapshotCreation export upgradeDatabase indexCompaction "
    "networkTopologyChange"
)
TYPES = tuple(_TYPE_NAMES.split())
DATE_FIELDS = (
    "afterEnqueuedAt",
    "beforeEnqueuedAt",
    "afterStartedAt",
    "beforeStartedAt",
    "afterFinishedAt",
    "beforeFinishedAt",
)
FILTER_PARAMS = ("uids", "batchUids", "canceledBy", "types", "statuses", "indexUids", *DATE_FIELDS)
LIST_PARAMS = ("limit", "from", "reverse", *FILTER_PARAMS)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A parsed task filter with its page; a None set means "any"."""

    # The page: at most `limit` tasks from `from_uid` on, newest first unless `reverse`.
    limit: int = 20
    from_uid: int | None = None
    reverse: bool = False
    # A filter parameter was given, even `*`: cancel/delete require one (Meilisearch).
    has_filters: bool = False
    # What kind of task, when, which uids.
    statuses: frozenset[str] | None = None
    types: frozenset[str] | None = None
    index_uids: frozenset[str] | None = None
    # (field, operator, RFC 3339 text) with field in enqueuedAt/startedAt/finishedAt.
    dates: tuple[tuple[str, str, str], ...] = ()
    uids: frozenset[int] | None = None
    batch_uids: frozenset[int] | None = None
    canceled_by: frozenset[int] | None = None


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _split(raw: str) -> list[str] | None:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    return None if "*" in items else items


def _ints(name: str, raw: str) -> frozenset[int] | None:
    items = _split(raw)
    if items is None:
        return None
    try:
        return frozenset(int(item) for item in items if int(item) >= 0)
    except ValueError as e:
        bad = next(i for i in items if not i.lstrip("-").isdigit())
        raise MiroirError(
            f"invalid_task_{_snake(name)}",
            f"Invalid value in parameter `{name}`: could not parse `{bad}` as a positive integer",
        ) from e


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> frozenset[str] | None:
    items = _split(raw)
    if items is None:
        return None
    for item in items:
        if item not in allowed:
            noun = "status" if name == "statuses" else "type"
            listing = ", ".join(f"`{a}`" for a in allowed)
            raise MiroirError(
                f"invalid_task_{name}",
                f"Invalid value in parameter `{name}`: `{item}` is not a valid task {noun}. "
                f"Available {name} are {listing}.",
            )
    return frozenset(items)


def _date(name: str, raw: str) -> str:
    bump = name.startswith("after")
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw) + (timedelta(days=1) if bump else timedelta())
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError(raw)
    except ValueError as e:
        raise MiroirError(
            f"invalid_task_{_snake(name)}",
            f"Invalid value in parameter `{name}`: `{raw}` is an invalid date-time. It should "
            "follow the YYYY-MM-DD or RFC 3339 date-time format.",
        ) from e
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unsigned(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise MiroirError(
            f"invalid_task_{name}",
            f"Invalid value in parameter `{name}`: could not parse `{raw}` as a positive integer",
        )
    return int(raw)


def parse(params: Mapping[str, str], *, action: Literal["list", "cancel", "delete"]) -> TaskQuery:
    """Parse the parameters of `GET /tasks`, `POST /tasks/cancel` or `DELETE /tasks`."""
    allowed = LIST_PARAMS if action == "list" else FILTER_PARAMS
    for name in params:
        if name not in allowed:
            expected = ", ".join(f"`{a}`" for a in allowed)
            raise MiroirError(
                "bad_request", f"Unknown parameter `{name}`: expected one of {expected}"
            )
    values: dict[str, object] = {}
    dates: list[tuple[str, str, str]] = []
    for name, raw in params.items():
        if name in ("uids", "batchUids", "canceledBy"):
            values[_snake(name)] = _ints(name, raw)
        elif name in ("types", "statuses"):
            values[name] = _choice(name, raw, TYPES if name == "types" else STATUSES)
        elif name == "indexUids":
            items = _split(raw)
            values["index_uids"] = None if items is None else frozenset(items)
        elif name in DATE_FIELDS:
            op = ">" if name.startswith("after") else "<"
            field = name.removeprefix("after").removeprefix("before")
            dates.append((field[0].lower() + field[1:], op, _date(name, raw)))
        elif name == "limit":
            values["limit"] = _unsigned(name, raw)
        elif name == "from":
            values["from_uid"] = _unsigned(name, raw)
        elif name == "reverse":
            if raw not in ("true", "false"):
                raise MiroirError(
                    "invalid_task_reverse",
                    f"Invalid value in parameter `reverse`: could not parse `{raw}` as a boolean",
                )
            values["reverse"] = raw == "true"
    has_filters = any(name in FILTER_PARAMS for name in params)
    query = TaskQuery(dates=tuple(dates), has_filters=has_filters, **values)  # type: ignore[arg-type]
    if action != "list" and not query.has_filters:
        raise MiroirError(
            "missing_task_filters",
            f"Query parameters to filter the tasks to {action} are missing. Available query "
            "parameters are: `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, "
            "`beforeEnqueuedAt`, `afterEnqueuedAt`, `beforeStartedAt`, `afterStartedAt`, "
            "`beforeFinishedAt`, `afterFinishedAt`.",
        )
    return query
