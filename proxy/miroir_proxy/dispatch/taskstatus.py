"""How a Miroir task's status, error and details follow from its node tasks (no I/O).

Node task statuses are Meilisearch's, plus `lost`: the node stayed unreachable past the
task deadline, so its outcome no longer blocks the Miroir task (anti-entropy repairs the
replica later). A task is terminal once no node task is enqueued or processing:

- policy `quorum` (document writes): succeeded when, for every shard it touched, some
  active group has `floor(n/2)+1` succeeded node tasks among the n that got the shard, or
  at least one succeeded and each other one is `hinted` (its batch was stored as a hint
  for hinted handoff, to be replayed when the node returns: `core.quorum`);
- policy `all` (broadcasts): succeeded only when every node task succeeded.

A failed task carries the first node's Meilisearch error (real node errors before
Miroir's own) with an extra `nodeErrors` list naming every node task that did not
succeed; SDKs parse `error` as a mapping, so the extra key is harmless to them.

Logical counts (`indexedDocuments`, `deletedDocuments`, ...) are summed over one group's
succeeded node tasks and divided by the copies each shard has in that group: every
document sent or deleted in a group lives on exactly that many of its nodes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.sizes import parse_size, unit_size
from miroir_proxy.state.store import NodeTaskRef, TaskRecord

Policy = Literal["quorum", "all"]
PENDING = frozenset({"enqueued", "processing"})
LOST = "lost"
HINTED = "hinted"
COUNT_FIELDS = ("indexedDocuments", "deletedDocuments", "editedDocuments")
COMPACTION_FIELDS = ("preCompactionSize", "postCompactionSize")
# Internal bookkeeping kept in `TaskRecord.extra`; never rendered.
POLICY_KEY = "_miroir_policy"
# A task no node runs: the operation doing the work moves it along
# (`start_operation_task`, `finish_operation_task`).
OPERATION_TASK_KEY = "_miroir_operation_task"
# A held task (settings two-phase commit) stays `processing` once its node tasks finished,
# until its owner releases it or the hold passes (an owner that died never blocks it): the
# hold is a duration in ms until the node tasks finished, then the moment it ends.
HOLD_KEY = "_miroir_hold"
INTERNAL_PREFIX = "_miroir_"
UNCONFIRMED_KEY = "miroirUnconfirmedNodes"

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def timestamp(moment: datetime) -> str:
    """RFC 3339 with microseconds and `Z`: what clients parse and the store compares."""
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """The inverse of `timestamp` (`fromisoformat` reads the `Z`; 30x cheaper than strptime)."""
    return datetime.fromisoformat(text)


def iso_duration(seconds: float) -> str:
    """`PT0.009330S`; whole seconds as `PT1S`; a day or more as `P1DT...`."""
    micros = max(0, round(seconds * 1_000_000))
    days, micros = divmod(micros, 86_400_000_000)
    whole, frac = divmod(micros, 1_000_000)
    secs = f"{whole}.{frac:06d}" if frac else str(whole)
    return f"P{days}DT{secs}S" if days else f"PT{secs}S"


def _node_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def node_times(
    refs: Iterable[NodeTaskRef], field: Literal["startedAt", "finishedAt"]
) -> list[datetime]:
    """The `field` times the node tasks reported (Meilisearch's nanoseconds are cut)."""
    return [t for t in (_node_time(ref.get(field)) for ref in refs) if t is not None]


def _within(moment: datetime, low: datetime, high: datetime) -> datetime:
    """`moment` moved into `[low, high]`: node clocks may disagree with the proxy's."""
    return max(low, min(moment, high))


def node_error(code: str, message: str) -> dict[str, Any]:
    return MiroirError(code, message).to_dict()


def policy_of(record: TaskRecord) -> Policy:
    return "all" if record.extra.get(POLICY_KEY) == "all" else "quorum"


def _quorum_reached(refs: list[NodeTaskRef], active_groups: Collection[str]) -> bool:
    # (group, shard) -> [node tasks that got the shard, of which succeeded, of which hinted]
    tally: dict[tuple[str, int], list[int]] = {}
    for ref in refs:
        ok = ref["status"] == "succeeded"
        hinted = ref["status"] == HINTED
        for shard in ref["shards"]:
            counts = tally.setdefault((ref["group"], shard), [0, 0, 0])
            counts[0] += 1
            counts[1] += ok
            counts[2] += hinted
    if not tally:
        # Node tasks without shard information (a caller's broadcast): one success will do.
        return not refs or any(ref["status"] == "succeeded" for ref in refs)
    shards = {shard for _, shard in tally}
    for shard in shards:
        if not any(_written(tally.get((group, shard))) for group in active_groups):
            return False
    return True


def _written(counts: list[int] | None) -> bool:
    if counts is None:
        return False
    total, ok, hinted = counts
    return ok >= total // 2 + 1 or (ok >= 1 and ok + hinted == total)


def _first_error(refs: Iterable[NodeTaskRef]) -> dict[str, Any]:
    errors = [ref["error"] for ref in refs if ref["error"] is not None]
    for error in errors:
        if not str(error.get("code", "")).startswith("miroir_"):
            return dict(error)
    if errors:
        return dict(errors[0])
    return node_error("internal", "Every node task was canceled or lost.")


def breakdown(refs: Iterable[NodeTaskRef]) -> list[dict[str, Any]]:
    return [
        {
            "node": ref["node"],
            "group": ref["group"],
            "taskUid": ref["uid"],
            "status": ref["status"],
            "error": ref["error"],
        }
        for ref in refs
        if ref["status"] != "succeeded"
    ]


def logical_count(refs: list[NodeTaskRef], field: str, active_groups: Collection[str]) -> int:
    """`field` summed over one group's succeeded node tasks, counted once per document."""
    best: tuple[bool, bool, int] | None = None
    for group in dict.fromkeys(ref["group"] for ref in refs):
        members = [ref for ref in refs if ref["group"] == group]
        copies: dict[int, int] = {}
        total = 0
        for ref in members:
            # A hinted replica gets the documents later: they are not counted on it now.
            if ref["status"] != HINTED:
                for shard in ref["shards"]:
                    copies[shard] = copies.get(shard, 0) + 1
            if ref["status"] == "succeeded":
                total += int((ref.get("details") or {}).get(field) or 0)
        complete = all(ref["status"] in ("succeeded", HINTED) for ref in members)
        value = total // max(copies.values(), default=1)
        candidate = (complete, group in active_groups, value)
        if best is None or candidate > best:
            best = candidate
    return 0 if best is None else best[2]


def settle(record: TaskRecord, active_groups: Collection[str], now: datetime) -> bool:
    """Advance `record` from its node tasks; True if anything changed."""
    if record.finished:
        return False
    refs = record.node_tasks
    pending = [ref for ref in refs if ref["status"] in PENDING]
    if pending:
        started = len(pending) < len(refs) or any(r["status"] == "processing" for r in pending)
        if started and record.status == "enqueued":
            record.status = "processing"
            record.started_at = timestamp(_started(record, now))
            record.batch_uid = record.uid
            return True
        return False
    hold = record.extra.get(HOLD_KEY)
    changed = False
    if isinstance(hold, int) and not isinstance(hold, bool):
        hold = record.extra[HOLD_KEY] = timestamp(now + timedelta(milliseconds=hold))
        changed = True
    if isinstance(hold, str) and now < parse_timestamp(hold):
        if record.status == "enqueued":
            record.status = "processing"
            record.started_at = timestamp(_started(record, now))
            record.batch_uid = record.uid
            changed = True
        return changed
    _finish(record, active_groups, now)
    return True


def release(
    record: TaskRecord, active_groups: Collection[str], now: datetime, error: dict[str, Any] | None
) -> None:
    """Finish a held task as its owner decided: succeeded, or failed with `error`."""
    record.extra.pop(HOLD_KEY, None)
    _finish(record, active_groups, now)
    if error is None:
        record.status, record.error = "succeeded", None
    else:
        failing = [ref for ref in record.node_tasks if ref["status"] != "succeeded"]
        record.status, record.error = "failed", {**error, "nodeErrors": breakdown(failing)}


def _started(record: TaskRecord, now: datetime) -> datetime:
    """When the first node task started (never before `enqueuedAt` nor after `now`)."""
    enqueued = parse_timestamp(record.enqueued_at)
    reported = node_times(record.node_tasks, "startedAt")
    if reported:
        return _within(min(reported), enqueued, max(enqueued, now))
    if record.started_at is not None:
        return parse_timestamp(record.started_at)
    return max(enqueued, now)


def _finished(record: TaskRecord, started: datetime, now: datetime) -> datetime:
    """When the last node task finished, keeping the nodes' span from `started` (a task is
    registered after its node tasks were sent, so fast nodes may have started before
    `enqueuedAt`, where `_started` moves the start); `now` if no node said, or one was
    lost (the task waited for it until now)."""
    refs = record.node_tasks
    reported = node_times(refs, "finishedAt")
    if not reported or any(ref["status"] == LOST for ref in refs):
        return max(started, now)
    end = max(reported)
    starts = node_times(refs, "startedAt")
    if starts:
        end = max(end, started + (end - min(starts)))
    return _within(end, started, max(started, now))


def _finish(record: TaskRecord, active_groups: Collection[str], now: datetime) -> None:
    refs = record.node_tasks
    if policy_of(record) == "all":
        ok = all(ref["status"] == "succeeded" for ref in refs)
    else:
        ok = _quorum_reached(refs, active_groups)
    if ok:
        status = "succeeded"
    elif refs and all(ref["status"] in ("canceled", "succeeded") for ref in refs):
        status = "canceled"
    else:
        status = "failed"
    record.status = status
    started = _started(record, now)
    record.started_at = timestamp(started)
    record.finished_at = timestamp(_finished(record, started, now))
    record.batch_uid = record.uid
    if status == "failed":
        failing = [ref for ref in refs if ref["status"] != "succeeded"]
        record.error = {**_first_error(failing), "nodeErrors": breakdown(failing)}
    if record.details is not None:
        details = dict(record.details)
        for field in COUNT_FIELDS:
            if field in details and details[field] is None:
                details[field] = (
                    logical_count(refs, field, active_groups) if status == "succeeded" else 0
                )
        if status == "succeeded":
            _fill_from_nodes(details, refs)
        unconfirmed = sorted({ref["node"] for ref in refs if ref["status"] != "succeeded"})
        if status == "succeeded" and unconfirmed:
            details[UNCONFIRMED_KEY] = unconfirmed
        record.details = details


def _fill_from_nodes(details: dict[str, Any], refs: list[NodeTaskRef]) -> None:
    """Details a node only knows once its task ran.

    - `dumpUid`: every node writes a dump of its own, named from the moment it started
      (`YYYYMMDD-HHMMSSmmm`); the task names the first one, as the cluster's dump started
      then (the others are in the node tasks).
    - `preCompactionSize`/`postCompactionSize`: an index's size on disk summed over the
      nodes that compacted it, rendered as Meilisearch renders them (`12 KiB`).
    """
    done = [ref.get("details") or {} for ref in refs if ref["status"] == "succeeded"]
    if "dumpUid" in details and details["dumpUid"] is None:
        named = sorted(str(d["dumpUid"]) for d in done if d.get("dumpUid"))
        details["dumpUid"] = named[0] if named else None
    for field in COMPACTION_FIELDS:
        sizes = [parse_size(d[field]) for d in done if field in d]
        if sizes and all(size is not None for size in sizes):
            details[field] = unit_size(sum(size for size in sizes if size is not None))


def finish_canceled(record: TaskRecord, canceled_by: int | None, now: datetime) -> None:
    record.status = "canceled"
    record.canceled_by = canceled_by
    record.finished_at = timestamp(now)
    record.started_at = record.started_at or record.finished_at
    record.batch_uid = record.uid
    if record.details is not None:
        record.details = {
            k: (0 if k in COUNT_FIELDS and v is None else v) for k, v in record.details.items()
        }


def is_operation_task(record: TaskRecord) -> bool:
    return bool(record.extra.get(OPERATION_TASK_KEY))


def start_operation_task(record: TaskRecord, now: datetime) -> bool:
    """An operation task starts processing; False if it already started or finished."""
    if record.status != "enqueued":
        return False
    record.status = "processing"
    record.started_at = timestamp(max(now, parse_timestamp(record.enqueued_at)))
    record.batch_uid = record.uid
    return True


def finish_operation_task(
    record: TaskRecord,
    now: datetime,
    *,
    details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """An operation task succeeds (with `details`) or fails (with `error`); False if it had
    already finished (a client canceled it)."""
    if record.finished:
        return False
    start_operation_task(record, now)
    started = parse_timestamp(record.started_at or record.enqueued_at)
    record.status = "failed" if error is not None else "succeeded"
    record.finished_at = timestamp(max(now, started))
    record.error = error
    if details is not None:
        record.details = details
    return True


def summary(record: TaskRecord) -> dict[str, Any]:
    """The enqueue answer (202 body); Meilisearch always reports `enqueued` here."""
    out: dict[str, Any] = {
        "taskUid": record.uid,
        "indexUid": record.index_uid,
        "status": "enqueued",
        "type": record.type,
        "enqueuedAt": record.enqueued_at,
    }
    _add_extra(out, record)
    return out


_TASK_HEAD = ("uid", "batchUid", "indexUid", "status", "type", "canceledBy")


def render(record: TaskRecord) -> dict[str, Any]:
    """The full task object of `GET /tasks/{uid}`, in Meilisearch's field order."""
    duration = None
    if record.started_at is not None and record.finished_at is not None:
        elapsed = parse_timestamp(record.finished_at) - parse_timestamp(record.started_at)
        duration = iso_duration(elapsed.total_seconds())
    values = (
        record.uid,
        record.batch_uid,
        record.index_uid,
        record.status,
        record.type,
        record.canceled_by,
    )
    out: dict[str, Any] = dict(zip(_TASK_HEAD, values, strict=True))
    if record.details is not None:
        out["details"] = record.details
    out.update(
        error=record.error,
        duration=duration,
        enqueuedAt=record.enqueued_at,
        startedAt=record.started_at,
        finishedAt=record.finished_at,
    )
    _add_extra(out, record)
    return out


def _add_extra(out: dict[str, Any], record: TaskRecord) -> None:
    for key, value in record.extra.items():
        if not key.startswith(INTERNAL_PREFIX):
            out[key] = value
