"""The task queue: every write becomes a Task, applied one at a time, in uid order, by a
single background worker.

A task is persisted with its payload when it is enqueued, so an accepted write survives a
crash and runs after a restart (only final statuses are ever stored, so a task that was
processing at the crash is still `enqueued` on disk and runs again). Applying a task and
recording its outcome commit in one SQLite transaction; the in-memory engine catches up
afterwards in steps. Cancelation and deletion tasks jump the queue, as in Meilisearch.
Every processed task is its own batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .errors import MeiliError
from .storage import Storage
from .timeutil import iso_duration, now, parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

PRIORITY_TYPES = frozenset({"taskCancelation", "taskDeletion"})
FINISHED = frozenset({"succeeded", "failed", "canceled"})
# Counts that stay null until processed; a task that fails or is canceled reports 0.
_COUNTS = (
    "indexedDocuments",
    "deletedDocuments",
    "editedDocuments",
    "canceledTasks",
    "deletedTasks",
)


def _zero_counts(details: dict[str, Any] | None) -> None:
    for key in _COUNTS:
        if details is not None and key in details and details[key] is None:
            details[key] = 0


@dataclass(slots=True)
class Task:
    uid: int
    index_uid: str | None
    type: str
    enqueued_at: datetime
    details: dict[str, Any] | None = None
    status: str = "enqueued"
    batch_uid: int | None = None
    canceled_by: int | None = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    custom_metadata: str | None = None
    # What the worker needs to apply the task; dropped once the task is finished.
    payload: Any = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskUid": self.uid,
            "indexUid": self.index_uid,
            "status": self.status,
            "type": self.type,
            "enqueuedAt": rfc3339(self.enqueued_at),
        }
        if self.custom_metadata is not None:
            out["customMetadata"] = self.custom_metadata
        return out

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        duration = self.duration_s
        out: dict[str, Any] = {
            "uid": self.uid,
            "batchUid": self.batch_uid,
            "indexUid": self.index_uid,
            "status": self.status,
            "type": self.type,
            "canceledBy": self.canceled_by,
        }
        if self.details is not None:
            out["details"] = self.details
        out["error"] = self.error
        out["duration"] = None if duration is None else iso_duration(duration)
        out["enqueuedAt"] = rfc3339(self.enqueued_at)
        out["startedAt"] = None if self.started_at is None else rfc3339(self.started_at)
        out["finishedAt"] = None if self.finished_at is None else rfc3339(self.finished_at)
        if self.custom_metadata is not None:
            out["customMetadata"] = self.custom_metadata
        return out

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Task:
        def moment(key: str) -> datetime | None:
            value = body.get(key)
            return None if value is None else parse_rfc3339(value)

        enqueued = moment("enqueuedAt")
        assert enqueued is not None
        return cls(
            uid=body["uid"],
            index_uid=body["indexUid"],
            type=body["type"],
            enqueued_at=enqueued,
            details=body.get("details"),
            status=body["status"],
            batch_uid=body["batchUid"],
            canceled_by=body["canceledBy"],
            error=body["error"],
            started_at=moment("startedAt"),
            finished_at=moment("finishedAt"),
            custom_metadata=body.get("customMetadata"),
        )


# Applies a task's stored effects; may return the engine updates still to run, one step
# per item, so a large indexing job yields to the event loop between steps.
Applier = Callable[[Task], Iterator[None] | None]


class TaskQueue:
    """All tasks in memory (uid order) plus the worker that drains the enqueued ones."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.tasks: dict[int, Task] = {}
        self._pending: dict[int, Task] = {}
        self._priority: dict[int, Task] = {}
        self._wakeup = asyncio.Event()
        self.next_uid = 0
        self.next_batch_uid = 0
        self.processing: Task | None = None
        self.last_finished_at: datetime | None = None

    def load(self) -> None:
        for body, payload in self.storage.load_tasks():
            task = Task.from_json(body)
            if task.status == "enqueued":
                task.payload = None if payload is None else orjson.loads(payload)
                self._queue(task)
            self.tasks[task.uid] = task
            self.next_uid = task.uid + 1
            if task.batch_uid is not None:
                self.next_batch_uid = max(self.next_batch_uid, task.batch_uid + 1)
            if task.finished_at is not None:
                self.last_finished_at = max(
                    self.last_finished_at or task.finished_at, task.finished_at
                )

    def _queue(self, task: Task) -> None:
        (self._priority if task.type in PRIORITY_TYPES else self._pending)[task.uid] = task
        self._wakeup.set()

    def enqueue(
        self,
        type_: str,
        index_uid: str | None,
        details: dict[str, Any] | None,
        payload: Any = None,
        *,
        custom_metadata: str | None = None,
    ) -> Task:
        task = Task(
            uid=self.next_uid,
            index_uid=index_uid,
            type=type_,
            enqueued_at=now(),
            details=details,
            custom_metadata=custom_metadata,
            payload=payload,
        )
        stored = None if payload is None else orjson.dumps(payload)
        self.storage.insert_task(task.uid, task.to_json(), stored)
        self.next_uid += 1
        self.tasks[task.uid] = task
        self._queue(task)
        return task

    def get(self, uid: int) -> Task:
        task = self.tasks.get(uid)
        if task is None:
            raise MeiliError("task_not_found", f"Task `{uid}` not found.")
        return task

    def is_indexing(self, index_uid: str) -> bool:
        return self.processing is not None and self.processing.index_uid == index_uid

    def descending(self) -> Iterator[Task]:
        return reversed(self.tasks.values())

    def cancel(self, uids: list[int], by: Task) -> int:
        """Cancel the still-enqueued tasks among `uids`; the caller commits."""
        canceled = []
        for uid in uids:
            task = self._pending.pop(uid, None) or self._priority.pop(uid, None)
            if task is None:
                continue
            task.status, task.canceled_by, task.payload = "canceled", by.uid, None
            _zero_counts(task.details)
            task.batch_uid, task.finished_at = by.batch_uid, now()
            canceled.append(task)
        self.storage.finish_tasks((t.uid, t.to_json()) for t in canceled)
        return len(canceled)

    def delete(self, uids: list[int]) -> int:
        """Forget the finished tasks among `uids`; the caller commits."""
        doomed = [uid for uid in uids if uid in self.tasks and self.tasks[uid].status in FINISHED]
        for uid in doomed:
            del self.tasks[uid]
        self.storage.delete_tasks(doomed)
        return len(doomed)

    async def run(self, apply: Applier) -> None:
        """The worker: apply enqueued tasks until cancelled, yielding to the loop between
        tasks so readers (clients polling `/tasks/{uid}`) are never starved."""
        while True:
            task = self._next()
            if task is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self.process(task, apply)
            await asyncio.sleep(0)

    def _next(self) -> Task | None:
        for queue in (self._priority, self._pending):
            if queue:
                return queue.pop(next(iter(queue)))
        return None

    async def process(self, task: Task, apply: Applier) -> None:
        """Commit the task's effects and outcome in one transaction, then run its pending
        engine steps. Storage is the source of truth: if the process dies during the
        steps, the restart rebuilds the engine from what was committed."""
        task.status, task.started_at = "processing", now()
        task.batch_uid = self.next_batch_uid
        self.next_batch_uid += 1
        self.processing = task
        try:
            with self.storage.transaction():
                steps = self._apply_in_savepoint(task, apply)
                task.finished_at = now()
                self.storage.finish_tasks([(task.uid, task.to_json())])
            if steps is not None:
                outcome, task.status = task.status, "processing"
                for _ in steps:
                    await asyncio.sleep(0)
                task.status, task.finished_at = outcome, now()
                self.storage.finish_tasks([(task.uid, task.to_json())])
        finally:
            self.processing = None
            task.payload = None
        self.last_finished_at = task.finished_at

    def _apply_in_savepoint(self, task: Task, apply: Applier) -> Iterator[None] | None:
        # A savepoint lets a failed task roll back its partial writes while its failure
        # status still commits.
        conn = self.storage.conn
        conn.execute("SAVEPOINT apply")
        steps = None
        try:
            steps = apply(task)
            task.status = "succeeded"
        except MeiliError as e:
            conn.execute("ROLLBACK TO apply")
            task.status, task.error = "failed", e.to_dict()
        except Exception as e:
            log.exception("task %d (%s) failed unexpectedly", task.uid, task.type)
            conn.execute("ROLLBACK TO apply")
            task.status = "failed"
            task.error = MeiliError("internal", f"{type(e).__name__}: {e}").to_dict()
        conn.execute("RELEASE apply")
        if task.status == "failed":
            _zero_counts(task.details)
        return steps
