"""Replay of hinted handoff: a node that is healthy again gets the batches it missed.

Every pod runs the same round each `handoff.replay_interval_ms`: read every node's backlog
from the store (which also refreshes the write path's view of nodes catching up), and for
each node with hints that the prober sees healthy, try its lease `hints:<node>`. The holder
(one pod per node, so two pods never replay one node's hints at once) sends the node its
hints oldest first, one at a time (a node runs its tasks in the order it enqueued them, so
the node applies them in the order the writes were acknowledged), waits until each batch of
node tasks finished, and deletes a hint only after its node task succeeded. A hint whose
call fails (the node went away again) stays and is sent again later: replaying an addition,
an update or a deletion twice leaves the same documents.

Topology changes since the write:
- the node left the topology: its hints are dropped (a removed node is never written);
- the index is gone (deleted since): the hint is dropped, a replay would recreate it;
- the node has no such index (it came back from an empty volume): the hint is dropped, a
  replay would create the index without Miroir's settings, and only a full copy can
  rebuild it;
- the node no longer holds any shard the hint was for (its replicas moved away while it
  was down): the hint is dropped; the copy that moved the shard read it from a replica
  that acknowledged the write. A hint for shards of which the node still holds some is
  replayed whole.
A hint the node refuses (a 4xx) or whose node task fails is dropped and logged: the node
disagrees with the other replicas about that write, which only anti-entropy can settle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import NoReturn, Self

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.config import MiroirConfig
from miroir_proxy.coordination.leasing import LeaseKeeper, LeaseLost
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.dispatch.handoff import Handoff
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import Hint, Store, StoreUnavailable

log = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
# Polls of a batch's node tasks: short at first (a node finishes a small batch quickly).
_TASK_POLL_S = (0.005, 0.05)


def lease_scope(node_id: str) -> str:
    return f"hints:{node_id}"


class HintReplayer:
    """Use as `async with HintReplayer(...)`: the replay loop runs inside."""

    def __init__(
        self,
        store: Store,
        cluster: Cluster,
        handoff: Handoff,
        config: MiroirConfig,
        lease: Callable[[str], LeaseKeeper],
    ) -> None:
        self._store = store
        self._cluster = cluster
        self._handoff = handoff
        self._config = config.handoff
        self._write_timeout_ms = config.timeouts.node_write_ms
        self._read_timeout_ms = config.timeouts.node_read_ms
        self._task_timeout_s = config.operations.node_task_timeout_ms / 1000
        self._lease = lease
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._background = BackgroundTasks(log)
        # Counters of this pod (`/metrics`).
        self.replayed = 0
        self.discarded = 0

    async def replay_once(self) -> None:
        """One round: refresh the backlogs and start draining every ready node."""
        self._handoff.begin_refresh()
        backlogs = await self._store.hint_backlogs()
        self._handoff.note_backlogs(backlogs)
        for node, backlog in backlogs.items():
            if len(self._draining) >= self._config.replay_concurrency:
                break
            if not backlog.pending or node in self._draining:
                continue
            if self._down(node):
                continue
            task = asyncio.create_task(self._drain_under_lease(node))
            self._draining[node] = task
            task.add_done_callback(self._forget(node))

    async def drained(self) -> None:
        """Wait for the drains running now (tests, shutdown)."""
        if self._draining:
            await asyncio.wait(list(self._draining.values()))

    def _forget(self, node: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(_: asyncio.Task[None]) -> None:
            self._draining.pop(node, None)

        return forget

    def _down(self, node: str) -> bool:
        """A node of the topology the prober does not see healthy (a node that left the
        topology is never called: its hints are only dropped)."""
        return self._listed(node) and not self._cluster.is_healthy(node)

    def _listed(self, node: str) -> bool:
        return any(n.id == node for n in self._cluster.topology.nodes())

    async def _drain_under_lease(self, node: str) -> None:
        keeper = self._lease(lease_scope(node))
        try:
            if not await keeper.attempt():
                return  # another pod replays this node
            async with keeper:
                await keeper.hold(lambda: self._drain(node))
        except LeaseLost as e:
            log.warning("hint replay to %s stopped: %s", node, e)
        except StoreUnavailable as e:
            log.warning("hint replay to %s stopped, store unavailable: %s", node, e)
        except Exception:
            log.exception("hint replay to %s failed", node)

    async def _drain(self, node: str) -> None:
        while True:
            if self._down(node):
                return
            hints = await self._store.list_hints(node, self._config.replay_batch)
            if not hints:
                self._handoff.caught_up(node)
                return
            if not await self._replay_batch(node, hints):
                return

    async def _replay_batch(self, node: str, hints: list[Hint]) -> bool:
        """Send `hints` in order, wait for their node tasks, delete what is done. False
        when the node stopped answering (the rest waits for the next round)."""
        sent: list[tuple[Hint, int]] = []
        stale: list[Hint] = []
        answered = True
        # A node that left the topology is never called (not even for its indexes).
        present: set[str] | None = set()
        if self._listed(node):
            present = await self._indexes_present(node, {hint.index_uid for hint in hints})
        if present is None:
            return False
        for hint in hints:
            if hint.index_uid not in present or not await self._relevant(node, hint):
                stale.append(hint)
                continue
            try:
                response = await self._cluster.call(
                    node,
                    hint.method,
                    hint.path,
                    params=hint.params or None,
                    body=hint.body,
                    content_type=None if hint.body is None else "application/json",
                    timeout_ms=self._write_timeout_ms,
                )
            except NodeError as e:
                log.info("hint replay to %s paused: %s", node, e)
                answered = False
                break
            if response.status == 202:
                try:
                    sent.append((hint, int(response.json()["taskUid"])))
                    continue
                except (NodeError, KeyError, TypeError, ValueError):
                    answered = False
                    break
            if response.is_node_failure or response.status < 400:
                answered = False
                break
            log.warning(
                "node %s refused hint %d (%s %s): HTTP %d; dropped, anti-entropy repairs it",
                node, hint.id, hint.method, hint.path, response.status,
            )  # fmt: skip
            stale.append(hint)
        done: list[Hint] = list(stale)
        statuses = await self._wait_tasks(node, [uid for _, uid in sent]) if sent else {}
        for hint, uid in sent:
            status = statuses.get(uid)
            if status is None:
                # Unanswered (the node went away again) or unknown to the node (restarted
                # without it): this hint and the ones after it stay, and are sent again
                # later in the same order.
                answered = False
                break
            if status == "succeeded":
                self.replayed += 1
            else:
                log.warning(
                    "hint %d replayed to %s ended %s; dropped, anti-entropy repairs it",
                    hint.id, node, status,
                )  # fmt: skip
                self.discarded += 1
            done.append(hint)
        self.discarded += len(stale)
        await self._store.delete_hints(node, [hint.id for hint in done])
        return answered and bool(done)

    async def _wait_tasks(self, node: str, uids: list[int]) -> dict[int, str]:
        """The final status of each of the node's tasks `uids` that finished before the
        node stopped answering or the task deadline passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._task_timeout_s
        pause, cap = _TASK_POLL_S
        pending = set(uids)
        finished: dict[int, str] = {}
        while pending:
            try:
                response = await self._cluster.call(
                    node,
                    "GET",
                    "/tasks",
                    params={"uids": ",".join(map(str, sorted(pending))), "limit": len(pending)},
                    timeout_ms=self._read_timeout_ms,
                )
                results = response.json()["results"] if response.ok else None
            except (NodeError, KeyError, TypeError, ValueError) as e:
                log.info("hint replay to %s: task poll failed: %s", node, e)
                return finished
            if not isinstance(results, list):
                return finished
            known = set()
            for task in results:
                uid = int(task["uid"])
                known.add(uid)
                if task.get("status") in TERMINAL:
                    finished[uid] = str(task["status"])
                    pending.discard(uid)
            if pending - known or loop.time() > deadline:
                return finished
            await asyncio.sleep(pause)
            pause = min(pause * 2, cap)
        return finished

    async def _indexes_present(self, node: str, uids: set[str]) -> set[str] | None:
        """Which of `uids` the node has (None when it does not answer). A node without the
        index lost it (a wiped volume): a replay would recreate it without Miroir's
        settings, and only a full copy can rebuild it, so its hints are dropped."""
        present: set[str] = set()
        for uid in sorted(uids):
            try:
                response = await self._cluster.call(
                    node, "GET", f"/indexes/{uid}", timeout_ms=self._read_timeout_ms
                )
            except NodeError as e:
                log.info("hint replay to %s paused: %s", node, e)
                return None
            if response.ok:
                present.add(uid)
            elif response.status == 404:
                log.warning(
                    "node %s has no index %s: its hints are dropped, a copy must rebuild it",
                    node, uid,
                )  # fmt: skip
            else:
                return None
        return present

    async def _relevant(self, node: str, hint: Hint) -> bool:
        """Whether `node` should still get `hint` (module docstring)."""
        layout = self._cluster.layout
        groups = [g for g in layout.topology.groups if node in g.node_ids]
        if not groups:
            return False
        meta = await self._store.get_index(hint.index_uid)
        if meta is None:
            return False
        if not hint.shards:
            return True
        held: set[int] = set()
        for group in groups:
            held |= layout.placement(group, meta.shards).holdings.get(node, frozenset())
        return bool(held & set(hint.shards))

    async def _run(self) -> NoReturn:
        while True:
            try:
                await self.replay_once()
            except StoreUnavailable as e:
                log.warning("hint replay round skipped, store unavailable: %s", e)
            await asyncio.sleep(self._config.replay_interval_ms / 1000)

    async def __aenter__(self) -> Self:
        self._background.start(
            "hint replay", self._run, restart_s=self._config.replay_interval_ms / 1000
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
        for task in list(self._draining.values()):
            task.cancel()
        await self.drained()
