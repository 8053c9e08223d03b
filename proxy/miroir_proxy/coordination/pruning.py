"""Task-registry pruning, the first Mode A user: finished tasks older than the retention
are deleted, each by the one pod that owns it.

Ownership is by task-uid block (`tasks:<uid // 1024>`), not by index uid: tasks without an
index (dumps, key changes) need an owner too, the uids of deleted indexes are never listed
anywhere else, and one busy index must not put all the pruning on one pod. Every pod reads
the same due candidates (oldest first, a page at a time) and deletes only its own, so the
deletes are spread out and never issued twice; a brief double delete while the peer set
changes is harmless (deleting a deleted task is a no-op).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

from miroir_proxy.state.store import TERMINAL, Store, StoreUnavailable
from miroir_proxy.state.taskquery import TaskQuery

from .ownership import Ownership

log = logging.getLogger(__name__)

BLOCK_BITS = 10
PAGE = 500


def block_key(uid: int) -> str:
    return f"tasks:{uid >> BLOCK_BITS}"


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TaskPruner:
    def __init__(
        self,
        store: Store,
        ownership: Ownership,
        *,
        retention_s: float,
        interval_ms: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ownership = ownership
        self._retention_s = retention_s
        self._interval_s = interval_ms / 1000
        self._clock = clock

    async def prune_once(self) -> list[int]:
        """Delete this pod's finished tasks past the retention; returns their uids."""
        due = (("finishedAt", "<", _rfc3339(self._clock() - self._retention_s)),)
        owned: dict[int, bool] = {}
        deleted: list[int] = []
        from_uid: int | None = None
        while True:
            page = await self._store.list_tasks(
                TaskQuery(statuses=TERMINAL, dates=due, limit=PAGE, from_uid=from_uid, reverse=True)
            )
            mine: set[int] = set()
            for task in page.results:
                block = task.uid >> BLOCK_BITS
                if block not in owned:
                    owned[block] = self._ownership.owns(block_key(task.uid))
                if owned[block]:
                    mine.add(task.uid)
            if mine:
                query = TaskQuery(uids=frozenset(mine), dates=due, has_filters=True)
                deleted += await self._store.delete_tasks(query)
            if page.next is None:
                return deleted
            from_uid = page.next

    async def run(self) -> NoReturn:
        while True:
            try:
                deleted = await self.prune_once()
            except StoreUnavailable as e:
                log.warning("task pruning skipped, store unavailable: %s", e)
            else:
                if deleted:
                    log.info("pruned %d finished tasks past the retention", len(deleted))
            await asyncio.sleep(self._interval_s)
