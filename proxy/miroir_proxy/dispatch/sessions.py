"""Read-your-writes sessions (`X-Miroir-Session`), shared by every pod through the store.

After a write, the session remembers one replica group that acknowledged it and the node
tasks of that group. A search in the same session is read from that group first, after
waiting (at most `features.session_wait_ms`) until those node tasks are finished, so the
search sees the write whichever pod serves it. Nodes apply their queues in order, so
waiting for the session's last write covers all earlier ones.

The wait polls the group's nodes directly (`GET /tasks?uids=`), not the Miroir task
record: it does not depend on the pod that registered the write being alive, and a node
that cannot be asked is not waited for (the scatter routes around it anyway). A session
search that cannot reach the store is served without waiting: searches never fail
because of the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state import kvkeys
from miroir_proxy.state.store import NodeTaskRef, Store, StoreUnavailable, TaskRecord

from .cluster import Cluster
from .taskstatus import PENDING

log = logging.getLogger(__name__)

NodeTasks = tuple[tuple[str, int], ...]

HEADER = "X-Miroir-Session"
# The group a session points to stays its freshest one until the other groups caught up,
# which takes at most a node task deadline; an hour covers that with room to spare.
SESSION_TTL_S = 3_600.0
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class SessionWrite:
    """The last write of a session: its Miroir task, the group to read from, and that
    group's node tasks as (node id, node task uid)."""

    task_uid: int
    group: str
    node_tasks: NodeTasks

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"task": self.task_uid, "group": self.group, "nodeTasks": self.node_tasks}
        )

    @classmethod
    def from_json(cls, raw: bytes) -> SessionWrite:
        data = orjson.loads(raw)
        return cls(
            int(data["task"]),
            str(data["group"]),
            tuple((str(node), int(uid)) for node, uid in data["nodeTasks"]),
        )


def acknowledging_group(node_tasks: Sequence[NodeTaskRef]) -> tuple[str, NodeTasks] | None:
    """The group to read from after a write and its accepted node tasks: a group where
    every node accepted first, then the most accepting nodes; None if no node accepted."""
    by_group: dict[str, list[tuple[str, int]]] = {}
    sizes: dict[str, int] = {}
    for ref in node_tasks:
        sizes[ref["group"]] = sizes.get(ref["group"], 0) + 1
        accepted = by_group.setdefault(ref["group"], [])
        if ref["uid"] is not None:
            accepted.append((ref["node"], ref["uid"]))
    ranked = sorted(
        (g for g, accepted in by_group.items() if accepted),
        key=lambda g: (len(by_group[g]) == sizes[g], len(by_group[g])),
        reverse=True,
    )
    if not ranked:
        return None
    return ranked[0], tuple(by_group[ranked[0]])


class Sessions:
    def __init__(
        self, store: Store, cluster: Cluster, *, wait_ms: int, ttl_s: float = SESSION_TTL_S
    ) -> None:
        self._store = store
        self._cluster = cluster
        self._ttl_s = ttl_s
        self._wait_s = wait_ms / 1000

    async def remember(self, session_id: str, credentials: str, task: TaskRecord) -> bool:
        """Record `task` as the session's last write; False if no node accepted it."""
        chosen = acknowledging_group(task.node_tasks)
        if chosen is None:
            return False
        write = SessionWrite(task.uid, *chosen)
        key = kvkeys.session(session_id, credentials)
        await self._store.kv_set(key, write.to_json(), self._ttl_s)
        return True

    async def last_write(self, session_id: str, credentials: str) -> SessionWrite | None:
        raw = await self._store.kv_get(kvkeys.session(session_id, credentials))
        return None if raw is None else SessionWrite.from_json(raw)

    async def before_read(self, session_id: str, credentials: str) -> str | None:
        """Wait for the session's last write on its group; the group to read from first."""
        try:
            write = await self.last_write(session_id, credentials)
        except StoreUnavailable:
            log.warning("session %s read without waiting: the store is unreachable", session_id)
            return None
        if write is None or self._wait_s == 0:
            return None if write is None else write.group
        try:
            await asyncio.wait_for(self._settled(write), self._wait_s)
        except TimeoutError:
            log.info(
                "session wait for task %d gave up after %.0f ms",
                write.task_uid,
                self._wait_s * 1000,
            )
        return write.group

    async def _settled(self, write: SessionWrite) -> None:
        waiting = dict(write.node_tasks)
        delay = _POLL_FIRST_S
        while waiting:
            finished = await asyncio.gather(
                *(self._finished(node, uid) for node, uid in waiting.items())
            )
            waiting = {
                n: u for (n, u), done in zip(waiting.items(), finished, strict=True) if not done
            }
            if waiting:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)

    async def _finished(self, node_id: str, uid: int) -> bool:
        """Whether node task `uid` is no longer pending; True when it cannot be known."""
        if node_id not in {n.id for n in self._cluster.all_nodes()}:
            return True
        try:
            response = await self._cluster.call(
                node_id,
                "GET",
                "/tasks",
                params={"uids": str(uid), "limit": 1},
                timeout_ms=self._cluster.config.timeouts.node_read_ms,
            )
            if not response.ok:
                return True
            results: list[dict[str, Any]] = response.json()["results"]
        except (NodeError, KeyError, TypeError, ValueError):
            return True
        return not results or results[0].get("status") not in PENDING
