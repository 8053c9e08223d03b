"""The task registry: Miroir's integer task uids over the node tasks behind them.

Every write that reaches the nodes is registered here with the node tasks it created; a
background aggregator polls the nodes (one `GET /tasks?uids=...` per node and round) and
persists each status change, so `GET /tasks/{uid}` is a store read. Unfinished tasks are
reloaded from the store at start, so polling resumes after a restart. A node that cannot
be polled stops blocking a task once `timeouts.task_node_deadline_ms` has passed since
the task was enqueued: every Miroir task reaches a terminal status (`wait_for_task` must
never hang). The status rules live in `taskstatus`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import NodeTaskRef, Store, TaskRecord
from miroir_proxy.state.taskquery import STATUSES, TaskQuery

from . import taskstatus
from .cluster import Cluster
from .taskstatus import LOST, OPERATION_TASK_KEY, PENDING, POLICY_KEY, Policy

log = logging.getLogger(__name__)

_UIDS_PER_POLL = 500
_EVERYTHING = 1 << 62
# The longest wait between aggregation rounds while node tasks do not change (see `_run`):
# how late, at most, a long task is seen finished.
_QUIET_MAX_S = 0.4


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TaskRegistry:
    """Use as `async with TaskRegistry(store, cluster):` (the aggregator runs inside)."""

    def __init__(
        self,
        store: Store,
        cluster: Cluster,
        *,
        poll_interval_ms: int = 50,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._store = store
        self._cluster = cluster
        self._interval_s = poll_interval_ms / 1000
        self._clock = clock
        self._deadline = timedelta(milliseconds=cluster.config.timeouts.task_node_deadline_ms)
        self._pending: dict[int, TaskRecord] = {}
        self._wake = asyncio.Event()
        self._background = BackgroundTasks(log)

    summary = staticmethod(taskstatus.summary)
    render = staticmethod(taskstatus.render)

    async def __aenter__(self) -> Self:
        for record in await self._store.unfinished_tasks():
            if not taskstatus.is_operation_task(record):
                self._pending[record.uid] = record
        self._background.start("task aggregator", self._run)
        self._wake.set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()

    async def enqueue(
        self,
        index_uid: str | None,
        type: str,
        node_tasks: list[NodeTaskRef],
        *,
        details: dict[str, Any] | None,
        policy: Policy = "quorum",
        extra: Mapping[str, Any] | None = None,
        hold_ms: int | None = None,
    ) -> TaskRecord:
        """Register a task over `node_tasks` (node tasks that never started are given with
        `uid=None` and status `failed`); it is settled at once if nothing is pending. With
        `hold_ms`, it stays processing after its node tasks until `release` (or until
        `hold_ms` has passed since they finished)."""
        record = await self._new(index_uid, type, details, extra)
        record.node_tasks = node_tasks
        record.extra[POLICY_KEY] = policy
        if hold_ms is not None:
            record.extra[taskstatus.HOLD_KEY] = hold_ms
        taskstatus.settle(record, self._active_groups(), self._not_before(record))
        await self._store.create_task(record)
        if not record.finished:
            self._pending[record.uid] = record
            self._wake.set()
        return record

    async def enqueue_for_operation(
        self, index_uid: str | None, type: str, *, details: dict[str, Any] | None
    ) -> TaskRecord:
        """Register a task no node runs: the operation doing the work (on any pod) moves it
        along with `taskstatus.start_operation_task`/`finish_operation_task` and
        `Store.save_task`; the aggregator never settles it."""
        record = await self._new(index_uid, type, details, {OPERATION_TASK_KEY: True})
        await self._store.create_task(record)
        return record

    async def enqueue_failed(
        self,
        index_uid: str | None,
        type: str,
        error: MiroirError,
        *,
        details: dict[str, Any] | None,
        extra: Mapping[str, Any] | None = None,
    ) -> TaskRecord:
        """A task that fails without reaching a node (what a node would fail it with)."""
        record = await self._new(index_uid, type, details, extra)
        now = taskstatus.timestamp(self._not_before(record))
        record.status, record.started_at, record.finished_at = "failed", now, now
        record.batch_uid = record.uid
        record.error = error.to_dict()
        if details is not None:
            record.details = {
                k: (0 if k in taskstatus.COUNT_FIELDS and v is None else v)
                for k, v in details.items()
            }
        await self._store.create_task(record)
        return record

    async def release(self, uid: int, error: dict[str, Any] | None = None) -> TaskRecord | None:
        """Finish a held task: succeeded, or failed with `error` (Meilisearch's shape)."""
        record = await self.get(uid)
        if record is None or record.finished:
            return record
        taskstatus.release(record, self._active_groups(), self._not_before(record), error)
        await self._store.save_task(record)
        self._pending.pop(uid, None)
        return record

    async def get(self, uid: int) -> TaskRecord | None:
        record = self._pending.get(uid)
        return record if record is not None else await self._store.get_task(uid)

    async def cancel(self, query: TaskQuery, original_filter: str) -> TaskRecord:
        """Cancel the unfinished tasks matching `query`; returns the `taskCancelation` task."""
        record = await self._new(None, "taskCancelation", None, None)
        matched = (await self._store.list_tasks(_count_only(query))).total
        statuses = (query.statuses or frozenset(STATUSES)) & PENDING
        victims: list[TaskRecord] = []
        if statuses:
            page = await self._store.list_tasks(
                dataclasses.replace(query, statuses=statuses, limit=_EVERYTHING, from_uid=None)
            )
            victims = [r for r in page.results if not (self._pending.get(r.uid) or r).finished]
        await self._cancel_on_nodes([self._pending.get(r.uid) or r for r in victims])
        now = self._clock()
        for victim in victims:
            live = self._pending.pop(victim.uid, victim)
            taskstatus.finish_canceled(live, record.uid, now)
            await self._store.save_task(live)
        details = {
            "matchedTasks": matched,
            "canceledTasks": len(victims),
            "originalFilter": original_filter,
        }
        return await self._finish_admin_task(record, details)

    async def delete(self, query: TaskQuery, original_filter: str) -> TaskRecord:
        """Delete the finished tasks matching `query`; returns the `taskDeletion` task.

        A node runs a deletion after the tasks it is already processing, so those are
        deleted too once they finish. Miroir's tasks run on nodes from the moment they are
        registered: the deletion waits (at most half the request budget) for the matching
        unfinished ones, then deletes every matching task that has finished by then.
        """
        record = await self._new(None, "taskDeletion", None, None)
        matched = (await self._store.list_tasks(_count_only(query))).total
        await self._wait_finished(query)
        deleted = await self._store.delete_tasks(query)
        details = {
            "matchedTasks": matched,
            "deletedTasks": len(deleted),
            "originalFilter": original_filter,
        }
        return await self._finish_admin_task(record, details)

    async def _wait_finished(self, query: TaskQuery) -> None:
        if query.statuses is not None and not query.statuses - PENDING:
            return
        unfinished = dataclasses.replace(
            query, statuses=PENDING, limit=_EVERYTHING, from_uid=None, reverse=False
        )
        waiting = {r.uid for r in (await self._store.list_tasks(unfinished)).results}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cluster.config.timeouts.request_ms / 2000
        while waiting and loop.time() < deadline:
            self._wake.set()
            await asyncio.sleep(self._interval_s)
            for uid in list(waiting):
                live = await self.get(uid)
                if live is None or live.finished:
                    waiting.discard(uid)

    async def poll_once(self) -> bool:
        """One aggregation round over every unfinished task; whether any task changed."""
        records = [r for r in self._pending.values() if not r.finished]
        wanted: dict[str, list[int]] = {}
        for record in records:
            for ref in record.node_tasks:
                if ref["status"] in PENDING and ref["uid"] is not None:
                    wanted.setdefault(ref["node"], []).append(ref["uid"])
        answers: dict[str, dict[int, dict[str, Any]]] = {}
        async with asyncio.TaskGroup() as group:
            for node_id, uids in wanted.items():
                group.create_task(self._poll_node(node_id, uids, answers))
        now = self._clock()
        active = self._active_groups()
        any_change = False
        for record in records:
            if record.finished:  # canceled while we were polling
                self._pending.pop(record.uid, None)
                continue
            changed = self._apply(record, answers, now)
            changed = taskstatus.settle(record, active, now) or changed
            if changed:
                any_change = True
                await self._store.save_task(record)
            if record.finished:
                self._pending.pop(record.uid, None)
        return any_change

    def pending_uids(self) -> list[int]:
        return sorted(self._pending)

    async def _new(
        self,
        index_uid: str | None,
        type: str,
        details: dict[str, Any] | None,
        extra: Mapping[str, Any] | None,
    ) -> TaskRecord:
        # The store stamps the uid, so `enqueuedAt` follows uid order across pods.
        uid, enqueued = await self._store.next_task_stamp()
        if index_uid is not None:
            # A resharded index lives under a hidden uid; tasks name what the client does.
            index_uid = self._cluster.topology.client_name(index_uid) or index_uid
        return TaskRecord(
            uid=uid,
            index_uid=index_uid,
            type=type,
            enqueued_at=taskstatus.timestamp(enqueued),
            details=details,
            extra=dict(extra or {}),
        )

    def _not_before(self, record: TaskRecord) -> datetime:
        """This pod's clock, but never before `enqueuedAt`, which came from the store's."""
        return max(self._clock(), taskstatus.parse_timestamp(record.enqueued_at))

    async def _finish_admin_task(self, record: TaskRecord, details: dict[str, Any]) -> TaskRecord:
        now = taskstatus.timestamp(self._not_before(record))
        record.details = details
        record.status, record.started_at, record.finished_at = "succeeded", now, now
        record.batch_uid = record.uid
        await self._store.create_task(record)
        return record

    def _active_groups(self) -> frozenset[str]:
        return frozenset(g.id for g in self._cluster.topology.search_groups())

    def _apply(
        self, record: TaskRecord, answers: dict[str, dict[int, dict[str, Any]]], now: datetime
    ) -> bool:
        changed = False
        expired = now - taskstatus.parse_timestamp(record.enqueued_at) > self._deadline
        for ref in record.node_tasks:
            if ref["status"] not in PENDING:
                continue
            known = answers.get(ref["node"])
            if known is None:
                if expired:
                    ref["status"] = LOST
                    ref["error"] = taskstatus.node_error(
                        "miroir_node_unavailable",
                        f"Node `{ref['node']}` did not report its task `{ref['uid']}` within "
                        f"{self._deadline.total_seconds() * 1000:.0f} ms.",
                    )
                    changed = True
                continue
            task = known.get(ref["uid"]) if ref["uid"] is not None else None
            if task is None:
                ref["status"] = LOST
                ref["error"] = taskstatus.node_error(
                    "miroir_node_unavailable",
                    f"Node `{ref['node']}` no longer knows its task `{ref['uid']}`.",
                )
                changed = True
                continue
            status = str(task.get("status"))
            if status != ref["status"]:
                ref["status"] = status
                ref["startedAt"] = task.get("startedAt")
                if status not in PENDING:
                    ref["error"] = task.get("error")
                    ref["details"] = task.get("details")
                    ref["finishedAt"] = task.get("finishedAt")
                changed = True
        return changed

    async def _poll_node(
        self, node_id: str, uids: list[int], answers: dict[str, dict[int, dict[str, Any]]]
    ) -> None:
        found: dict[int, dict[str, Any]] = {}
        timeout_ms = self._cluster.config.timeouts.node_read_ms
        try:
            for start in range(0, len(uids), _UIDS_PER_POLL):
                chunk = uids[start : start + _UIDS_PER_POLL]
                response = await self._cluster.call(
                    node_id,
                    "GET",
                    "/tasks",
                    params={"uids": ",".join(map(str, chunk)), "limit": len(chunk)},
                    timeout_ms=timeout_ms,
                )
                if not response.ok:
                    return
                for task in response.json()["results"]:
                    found[int(task["uid"])] = task
        except (NodeError, KeyError, TypeError, ValueError) as e:
            log.debug("task poll of node %s failed: %s", node_id, e)
            return
        answers[node_id] = found

    async def _cancel_on_nodes(self, records: list[TaskRecord]) -> None:
        by_node: dict[str, list[int]] = {}
        for record in records:
            for ref in record.node_tasks:
                if ref["status"] in PENDING and ref["uid"] is not None:
                    by_node.setdefault(ref["node"], []).append(ref["uid"])
        timeout_ms = self._cluster.config.timeouts.node_write_ms

        async def cancel(node_id: str, uids: list[int]) -> None:
            try:
                await self._cluster.call(
                    node_id,
                    "POST",
                    "/tasks/cancel",
                    params={"uids": ",".join(map(str, uids))},
                    timeout_ms=timeout_ms,
                )
            except (NodeError, KeyError) as e:
                log.warning("could not cancel tasks %s on node %s: %s", uids, node_id, e)

        async with asyncio.TaskGroup() as group:
            for node_id, uids in by_node.items():
                group.create_task(cancel(node_id, uids))

    async def _run(self) -> None:
        # Nodes finish tasks in order, so while a long one runs, rounds that see nothing
        # new are wasted calls: each such round doubles the wait, up to `_QUIET_MAX_S`,
        # and any change brings it back to the interval (while 1 KB x 1,000 batches were
        # indexed, polling was ~10% of the proxy's CPU per routed document).
        interval = self._interval_s
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                interval = self._interval_s
            try:
                changed = await self.poll_once()
            except Exception:
                log.exception("task aggregation round failed; retrying")
                changed = False
            interval = self._interval_s if changed else min(2 * interval, _QUIET_MAX_S)
            await asyncio.sleep(interval)


def _count_only(query: TaskQuery) -> TaskQuery:
    return dataclasses.replace(query, limit=0, from_uid=None)
