"""Settings on every node, identical: propose, verify, commit; and the settings-drift pass.

`SettingsSync.apply(uid, method, path, body, details)` is the one way settings reach the
nodes (client updates, and any operation that needs settings on a concrete index uid):

1. **Propose.** Every node's current settings are read (in parallel), then the update is
   sent to every node at once. A node that refuses it (the client's error, every node
   gives it) or cannot be reached gets the nodes that accepted put back, and the refusal
   is the answer: nothing changed. Nodes of a group that does not serve searches yet may
   miss it (the group's sync compares settings before it serves).
2. **Verify** (in the background; the client already holds the `settingsUpdate` task,
   which stays `processing`): once the node tasks finished, every node's settings are read
   back in parallel and compared by canonical hash (sorted-key JSON, SHA-256) with the
   settings of the first node (topology order) whose task succeeded: what Miroir intends.
   A node that differs gets those settings again, with a doubling backoff, up to
   `settings_sync.repair_attempts` times.
3. **Commit**: the intended settings are recorded in the store (the drift pass's
   reference), the index is unfrozen, the task succeeds. **Or roll back**: if a node task
   failed or a node still differs, every node gets the settings Miroir intended before
   (the store's record, else the first node's previous settings), verified the same way,
   and the task fails with `miroir_settings_rolled_back`. If even the rollback cannot be
   verified on every node (a node is down), writes to the index are frozen
   (`miroir_settings_frozen`) until the drift pass or a later update finds every node
   agreeing again.

A pod verifies the updates of one index one at a time in proposal order, each once every
update of the index it has in flight reached the nodes; a rollback also fails the later
in-flight updates it took back.

The drift pass (Mode A: each pod checks the indexes it owns, `settings-drift:<uid>`)
compares every node with the recorded intended settings and repairs the ones that differ
(a node restored from an old volume, a manual change). An index with no record yet (made
before this existed) is adopted when every node agrees. An index with an update in flight
(`settings-busy:<uid>` in the store) is skipped, and so is a node that still has tasks of
the index queued. A node that does not answer never freezes an index; one that answers
with settings that cannot be repaired does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, NoReturn, Self

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.config import SettingsSyncConfig
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch.broadcast import (
    NodeRefused,
    Target,
    broadcast,
    call_one,
    not_serving,
    raise_refusal,
    targets,
)
from miroir_proxy.dispatch.catalog import (
    FOREVER_S,
    Catalog,
    busy_key,
    intended_key,
    node_settings,
)
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.dispatch.tasks import TaskRegistry
from miroir_proxy.dispatch.taskstatus import PENDING
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import Store, StoreUnavailable, TaskRecord

log = logging.getLogger(__name__)

Settings = dict[str, Any]
_POLL_S = 0.05


def canonical_hash(settings: Mapping[str, Any]) -> str:
    """The same for two settings documents that mean the same (key order aside)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class DriftResult:
    index_uid: str
    checked: int
    repaired: list[str]
    frozen: bool
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "indexUid": self.index_uid,
            "nodesChecked": self.checked,
            "nodesRepaired": self.repaired,
            "frozen": self.frozen,
        }
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out


class SettingsSync:
    """Use as `async with SettingsSync(...)`: verifications and the drift loop run inside."""

    def __init__(
        self,
        cluster: Cluster,
        store: Store,
        catalog: Catalog,
        tasks: TaskRegistry,
        config: SettingsSyncConfig,
        owns: Callable[[str], bool],
    ) -> None:
        self._cluster = cluster
        self._catalog = catalog
        self._tasks = tasks
        self._config = config
        self._owns = owns
        self._store = store
        self._background = BackgroundTasks(log)
        self._running: dict[int, asyncio.Task[None]] = {}
        self._busy: dict[str, int] = {}
        # Per index: this pod's updates not verified yet (proposal order), one verification
        # at a time, and updates a rollback of an earlier one took back (uid -> cause).
        self._inflight: dict[str, list[int]] = {}
        self._verify_locks: dict[str, asyncio.Lock] = {}
        self._doomed: dict[int, str] = {}

    # -- the update ----------------------------------------------------------------------

    async def apply(
        self,
        uid: str,
        method: str,
        path: str,
        body: Any,
        details: dict[str, Any] | None,
    ) -> TaskRecord:
        """Propose a settings write (`method` on `path`, a `/indexes/{uid}/settings` route)
        to every node of `uid` (which must exist on the nodes); returns the held
        `settingsUpdate` task, finished once the update is verified or rolled back. Raises
        `NodeRefused` (or `miroir_node_unavailable`) when the proposal is refused: then no
        node changed."""
        previous = await self.read_all(uid)
        await self._enter(uid)
        try:
            outcomes = await broadcast(self._cluster, method, path, json_body=body)
        except BaseException:
            await self._leave(uid)
            raise
        refusal = next(
            (o for o in outcomes if not o.accepted and not not_serving(self._cluster, o)), None
        )
        if refusal is not None:
            accepted = [o.target for o in outcomes if o.accepted]
            before = await self._before(uid, previous)
            try:
                if accepted and before is not None:
                    await self._send(uid, before, accepted)
            finally:
                await self._leave(uid)
            raise_refusal(refusal)
        try:
            record = await self._tasks.enqueue(
                uid,
                "settingsUpdate",
                [o.task_ref() for o in outcomes],
                details=details,
                policy="all",
                hold_ms=self._config.verify_timeout_ms,
            )
        except BaseException:
            await self._leave(uid)
            raise
        self._inflight.setdefault(uid, []).append(record.uid)
        task = asyncio.create_task(self._verify(uid, record.uid, previous))
        self._running[record.uid] = task
        task.add_done_callback(lambda _: self._running.pop(record.uid, None))
        return record

    async def apply_settings(
        self, uid: str, settings: Mapping[str, Any], *, client_side: bool = True
    ) -> TaskRecord:
        """`PATCH /indexes/{uid}/settings` with `settings` on every node of the concrete
        index `uid` (it must exist on the nodes), propose, verify and commit or roll back;
        returns the finished `settingsUpdate` task (its `status` says which). With
        `client_side`, `settings` are what a client sends (Miroir's `_miroir_*` fields are
        added); otherwise they are node-side settings (e.g. read from another index's
        nodes). Raises like `apply` when a node refuses the proposal."""
        body = node_settings(dict(settings)) if client_side else dict(settings)
        path = f"/indexes/{uid}/settings"
        record = await self.apply(uid, "PATCH", path, body, dict(settings))
        running = self._running.get(record.uid)
        if running is not None:
            await asyncio.shield(running)
        return await self._tasks.get(record.uid) or record

    async def _verify(self, uid: str, task_uid: int, previous: dict[str, Settings | None]) -> None:
        """Verifications of one index run one at a time, in proposal order; each compares
        the nodes only once every update of the index this pod has in flight reached them
        (a later update still queued on one node is not a divergence)."""
        lock = self._verify_locks.setdefault(uid, asyncio.Lock())
        try:
            async with lock:
                cause = self._doomed.pop(task_uid, None)
                if cause is not None:
                    error: dict[str, Any] | None = MiroirError(
                        "miroir_settings_rolled_back",
                        f"The settings update of index `{uid}` was rolled back on every node "
                        f"with an earlier one: {cause}.",
                    ).to_dict()
                else:
                    await self._all_reached(uid)
                    error = await self._verify_unshielded(uid, task_uid, previous)
                    if error is not None:
                        later = [t for t in self._inflight.get(uid, []) if t != task_uid]
                        self._doomed.update(dict.fromkeys(later, error["message"]))
            await self._tasks.release(task_uid, error)
        except Exception:
            log.exception("settings verification of index %r failed", uid)
            error = MiroirError(
                "miroir_settings_rolled_back", "The settings update could not be verified."
            ).to_dict()
            await self._tasks.release(task_uid, error)
        finally:
            pending = self._inflight.get(uid, [])
            if task_uid in pending:
                pending.remove(task_uid)
            if not pending:
                self._inflight.pop(uid, None)
                self._verify_locks.pop(uid, None)
            self._catalog.invalidate(uid)
            await self._leave(uid)

    async def _all_reached(self, uid: str) -> None:
        """Wait until no node task of this pod's in-flight updates of `uid` is pending (at
        most `verify_timeout_ms`)."""
        deadline = time.monotonic() + self._config.verify_timeout_ms / 1000
        while time.monotonic() < deadline:
            waiting = False
            for other in list(self._inflight.get(uid, [])):
                record = await self._tasks.get(other)
                if record is not None and any(r["status"] in PENDING for r in record.node_tasks):
                    waiting = True
                    break
            if not waiting:
                return
            await asyncio.sleep(_POLL_S)

    async def _enter(self, uid: str) -> None:
        """Mark an update of `uid` in flight (the drift pass leaves the index alone)."""
        self._busy[uid] = self._busy.get(uid, 0) + 1
        await self._store.kv_set(busy_key(uid), b"1", self._config.verify_timeout_ms / 1000)

    async def _leave(self, uid: str) -> None:
        left = self._busy.get(uid, 1) - 1
        if left > 0:
            self._busy[uid] = left
            return
        self._busy.pop(uid, None)
        try:
            await self._store.kv_set(busy_key(uid), b"", 0.001)
        except StoreUnavailable:
            log.warning("could not clear the in-flight mark of index %r", uid)

    async def _verify_unshielded(
        self, uid: str, task_uid: int, previous: dict[str, Settings | None]
    ) -> dict[str, Any] | None:
        record = await self._finished_node_tasks(task_uid)
        succeeded = {ref["node"] for ref in record.node_tasks if ref["status"] == "succeeded"}
        # A node of a group still being added may miss it: its sync aligns settings.
        failed = [
            ref
            for ref in record.node_tasks
            if ref["status"] != "succeeded" and self._serving(ref["group"])
        ]
        if not succeeded:
            # Every node failed the task the same way a single node would: nothing changed.
            first = failed[0]["error"] if failed else None
            return (
                first or MiroirError("miroir_settings_rolled_back", "No node applied it.").to_dict()
            )
        now = await self.read_all(uid)
        reference = next(
            (
                now[t.node]
                for t in targets(self._cluster)
                if t.node in succeeded and now.get(t.node)
            ),
            None,
        )
        if not failed and reference is not None and await self.converge(uid, reference):
            await self._commit(uid, reference)
            return None
        cause = (
            f"node `{failed[0]['node']}` did not apply it"
            if failed
            else "the nodes did not end with the same settings"
        )
        before = await self._before(uid, previous)
        if not await self._rollback(uid, before):
            reason = f"a settings update failed ({cause}) and could not be rolled back everywhere."
            await self._catalog.set_frozen(uid, reason)
            return MiroirError("miroir_settings_frozen", f"Index `{uid}`: {reason}").to_dict()
        return MiroirError(
            "miroir_settings_rolled_back",
            f"The settings update of index `{uid}` was rolled back on every node: {cause}.",
        ).to_dict()

    async def _finished_node_tasks(self, task_uid: int) -> TaskRecord:
        """The task once none of its node tasks is pending (the registry polls them; a node
        that never reports is `lost` after `task_node_deadline_ms`)."""
        while True:
            record = await self._tasks.get(task_uid)
            if record is None:
                raise RuntimeError(f"task {task_uid} vanished")
            if record.finished or not any(r["status"] in PENDING for r in record.node_tasks):
                return record
            await asyncio.sleep(_POLL_S)

    async def _rollback(self, uid: str, before: Settings | None) -> bool:
        """Put every node back to `before`; None (no node's settings were known before,
        e.g. an index created by this very update): to the defaults."""
        everyone = targets(self._cluster)
        if before is None:
            keys = next((s for s in (await self.read_all(uid)).values() if s), None)
            if keys is None:
                return False
            await self._send(uid, node_settings(dict.fromkeys(keys)), everyone)
            now = await self.read_all(uid)
            before = next((s for t in everyone if (s := now.get(t.node))), None)
            if before is None:
                return False
        else:
            await self._send(uid, before, everyone)
        return await self.converge(uid, before)

    async def _commit(self, uid: str, intended: Settings) -> None:
        await self._store.kv_set(intended_key(uid), json.dumps(intended).encode(), FOREVER_S)
        if await self._catalog.frozen_reason(uid) is not None:
            await self._catalog.set_frozen(uid, None)

    async def _before(self, uid: str, previous: dict[str, Settings | None]) -> Settings | None:
        """What every node should hold when an update is undone."""
        recorded = await self.intended(uid)
        if recorded is not None:
            return recorded
        return next((s for t in targets(self._cluster) if (s := previous.get(t.node))), None)

    # -- shared pieces -------------------------------------------------------------------

    async def intended(self, uid: str) -> Settings | None:
        raw = await self._store.kv_get(intended_key(uid))
        value = json.loads(raw) if raw else None
        return value if isinstance(value, dict) and value else None

    async def read_all(self, uid: str) -> dict[str, Settings | None]:
        """Each node's settings of `uid` (None: unreachable or refused), read in parallel."""
        outcomes = await broadcast(self._cluster, "GET", f"/indexes/{uid}/settings")
        result: dict[str, Settings | None] = {}
        for outcome in outcomes:
            body = outcome.response.json() if outcome.accepted and outcome.response else None
            result[outcome.target.node] = body if isinstance(body, dict) else None
        return result

    async def _send(self, uid: str, settings: Settings, chosen: list[Target]) -> list[str]:
        """PATCH `settings` onto the `chosen` nodes and wait for their tasks; the node ids
        whose task did not succeed in time."""
        path = f"/indexes/{uid}/settings"

        async def one(target: Target) -> str | None:
            outcome = await call_one(self._cluster, target, "PATCH", path, json_body=settings)
            uid_ = outcome.task_ref()["uid"]
            if uid_ is None or not await self._node_task_succeeded(target.node, uid_):
                return target.node
            return None

        found = await asyncio.gather(*(one(t) for t in chosen))
        return [node for node in found if node is not None]

    async def _node_task_succeeded(self, node: str, task_uid: int) -> bool:
        """Whether the node's task succeeded: waited for while the node answers (at most
        `operations.node_task_timeout_ms`, a reindex takes time), given up once the node
        has not answered for `timeouts.task_node_deadline_ms`."""
        config = self._cluster.config
        start = time.monotonic()
        silent_since: float | None = None
        while time.monotonic() - start < config.operations.node_task_timeout_ms / 1000:
            try:
                response = await self._cluster.call(
                    node, "GET", f"/tasks/{task_uid}", timeout_ms=config.timeouts.node_read_ms
                )
            except NodeError:
                silent_since = silent_since or time.monotonic()
                if time.monotonic() - silent_since > config.timeouts.task_node_deadline_ms / 1000:
                    return False
            else:
                silent_since = None
                status = response.json().get("status") if response.ok else "failed"
                if status not in PENDING:
                    return bool(status == "succeeded")
            await asyncio.sleep(_POLL_S)
        return False

    async def converge(self, uid: str, expected: Settings) -> bool:
        """Repair every node whose settings of `uid` differ from `expected` (backoff,
        `repair_attempts` rounds); whether every node holds them in the end."""
        return not (await self._converge(uid, expected))[1]

    async def _converge(self, uid: str, expected: Settings) -> tuple[list[str], list[str]]:
        """(nodes repaired, nodes still differing)."""
        want = canonical_hash(expected)
        pause = self._config.repair_backoff_ms / 1000
        repaired: set[str] = set()
        for attempt in range(self._config.repair_attempts + 1):
            now = await self.read_all(uid)
            off = [
                t
                for t in targets(self._cluster)
                if (now.get(t.node) is None or canonical_hash(now[t.node] or {}) != want)
                and not self._skippable(t, now.get(t.node))
            ]
            if not off or attempt == self._config.repair_attempts:
                return sorted(repaired - {t.node for t in off}), [t.node for t in off]
            if attempt:
                await asyncio.sleep(pause)
                pause *= 2
            log.warning("settings of index %r differ on %s: repairing", uid, [t.node for t in off])
            await self._send(uid, expected, off)
            repaired.update(t.node for t in off)
        raise AssertionError("unreachable")

    def _skippable(self, target: Target, settings: Settings | None) -> bool:
        """An unreachable node of a group still being added (its sync checks settings)."""
        return settings is None and not self._serving(target.group)

    def _serving(self, group: str) -> bool:
        topology = self._cluster.topology
        return not topology.has_group(group) or topology.group(group).serves_searches

    # -- the drift pass ------------------------------------------------------------------

    async def drift_pass(self, *, owned_only: bool) -> list[DriftResult]:
        results = []
        for meta in await self._catalog.indexes():
            if owned_only and not self._owns(f"settings-drift:{meta.uid}"):
                continue
            try:
                results.append(await self.check_index(meta.uid))
            except (MiroirError, NodeRefused, NodeError, StoreUnavailable) as e:
                log.warning("settings-drift check of index %r failed: %s", meta.uid, e)
                results.append(DriftResult(meta.uid, 0, [], False, skipped=str(e)))
        return results

    async def check_index(self, uid: str) -> DriftResult:
        """Compare every node with the intended settings of `uid` and repair; freeze the
        index when a node cannot be repaired, unfreeze it once every node agrees."""
        if await self._store.kv_get(busy_key(uid)):
            return DriftResult(uid, 0, [], False, skipped="a settings update is in flight")
        if self._cluster.topology.also_written(uid):
            # The reshard aligns both copies' settings itself before its flip.
            return DriftResult(uid, 0, [], False, skipped="a reshard of the index is running")
        intended = await self.intended(uid)
        if intended is None:
            now = await self.read_all(uid)
            found = {canonical_hash(s) for s in now.values() if s is not None}
            if len(found) != 1 or None in now.values():
                return DriftResult(
                    uid, len(now), [], False, skipped="no recorded settings and nodes differ"
                )
            await self._commit(uid, next(s for s in now.values() if s is not None))
            return DriftResult(uid, len(now), [], False)
        want = canonical_hash(intended)
        now = await self.read_all(uid)
        differing = [n for n, found in now.items() if found and canonical_hash(found) != want]
        waiting = await self._catching_up(uid, differing)
        if waiting:
            # A node still applying tasks of the index (an update, a swap) is not drift yet.
            return DriftResult(
                uid, len(now), [], False, skipped=f"node(s) {', '.join(waiting)} have tasks"
            )
        repaired, off = await self._converge(uid, intended)
        if repaired:
            self._catalog.invalidate(uid)
        checked = len(targets(self._cluster))
        after = await self.read_all(uid) if off else now
        stuck = [node for node in off if after.get(node) is not None]
        silent = [node for node in off if after.get(node) is None]
        frozen = await self._catalog.frozen_reason(uid) is not None
        if stuck:
            # A node that answers but keeps other settings: writes would index differently.
            reason = f"the settings of node(s) {', '.join(stuck)} could not be repaired."
            await self._catalog.set_frozen(uid, reason)
            return DriftResult(uid, checked, repaired, True)
        if silent:
            # A node that does not answer is not drift (it is repaired when it is back), but
            # an index frozen for it stays frozen until it answers with the right settings.
            return DriftResult(
                uid, checked, repaired, frozen, skipped="unreachable: " + ", ".join(silent)
            )
        if frozen:
            await self._catalog.set_frozen(uid, None)
        return DriftResult(uid, checked, repaired, False)

    async def _catching_up(self, uid: str, nodes: list[str]) -> list[str]:
        """The `nodes` with tasks of `uid` (or an index swap) enqueued or processing; a node
        that cannot say counts as catching up."""
        timeout = self._cluster.config.timeouts.node_read_ms
        pending = "enqueued,processing"

        async def busy(node: str) -> bool:
            for filters in ({"indexUids": uid}, {"types": "indexSwap"}):
                try:
                    response = await self._cluster.call(
                        node,
                        "GET",
                        "/tasks",
                        params={**filters, "statuses": pending, "limit": "1"},
                        timeout_ms=timeout,
                    )
                except NodeError:
                    return True
                if not response.ok or response.json().get("total"):
                    return True
            return False

        found = await asyncio.gather(*(busy(node) for node in nodes))
        return [node for node, is_busy in zip(nodes, found, strict=True) if is_busy]

    async def run(self) -> NoReturn:
        while True:
            await asyncio.sleep(self._config.drift_interval_ms / 1000)
            for result in await self.drift_pass(owned_only=True):
                if result.repaired or result.frozen:
                    log.info("settings drift: %s", result.to_dict())

    async def __aenter__(self) -> Self:
        if self._config.drift_enabled:
            interval = self._config.drift_interval_ms / 1000
            self._background.start("settings drift", self.run, restart_s=interval)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
