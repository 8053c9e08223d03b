"""Tombstones of the SQLite backend: one row per (index, shard, id), the latest deletion."""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

T = TypeVar("T")

TOMBSTONES_SCHEMA = """
CREATE TABLE IF NOT EXISTS tombstones (index_uid TEXT NOT NULL, shard INTEGER NOT NULL,
    id TEXT NOT NULL, deleted_at INTEGER NOT NULL, PRIMARY KEY (index_uid, shard, id));
"""


class SqliteTombstones(ABC):
    @abstractmethod
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def add_tombstones(
        self,
        index_uid: str,
        ids_by_shard: Mapping[int, Collection[str]],
        deleted_at_ms: int,
        keep_ms: int,
    ) -> None:
        rows = [
            (index_uid, shard, doc_id, deleted_at_ms)
            for shard, ids in ids_by_shard.items()
            for doc_id in ids
        ]
        if not rows:
            return
        await self._run(
            lambda c: c.executemany(
                "INSERT INTO tombstones(index_uid, shard, id, deleted_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(index_uid, shard, id) DO UPDATE SET "
                "deleted_at = MAX(deleted_at, excluded.deleted_at)",
                rows,
            )
        )

    async def tombstones(self, index_uid: str, shard: int, since_ms: int) -> dict[str, int]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT id, deleted_at FROM tombstones "
                "WHERE index_uid = ? AND shard = ? AND deleted_at >= ?",
                (index_uid, shard, since_ms),
            ).fetchall()
        )
        return {str(doc_id): int(at) for doc_id, at in rows}

    async def prune_tombstones(self, index_uid: str, shard: int, before_ms: int) -> int:
        cur = await self._run(
            lambda c: c.execute(
                "DELETE FROM tombstones WHERE index_uid = ? AND shard = ? AND deleted_at < ?",
                (index_uid, shard, before_ms),
            )
        )
        return int(cur.rowcount)
