"""Hinted handoff on the SQLite backend: one row per hint, ids from one sequence (so a
node's hints list in the order they were stored), and one row of bookkeeping per node
that overflowed its bound or dropped hints."""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import TypeVar

from .sqlite_coordination import transaction
from .store import Hint, HintBacklog

T = TypeVar("T")

HINTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS hints (id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL,
    body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS hints_by_node ON hints(node, id);
CREATE TABLE IF NOT EXISTS hint_overflows (node TEXT PRIMARY KEY,
    overflowed INTEGER NOT NULL, dropped INTEGER NOT NULL);
"""


def _drop(conn: sqlite3.Connection, node: str, count: int, overflow: bool) -> None:
    conn.execute(
        "INSERT INTO hint_overflows(node, overflowed, dropped) VALUES (?, ?, ?) "
        "ON CONFLICT(node) DO UPDATE SET overflowed = MAX(overflowed, excluded.overflowed), "
        "dropped = dropped + excluded.dropped",
        (node, int(overflow), count),
    )


class SqliteHints(ABC):
    @abstractmethod
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def put_hint(self, hint: Hint, max_per_node: int) -> int | None:
        blob = hint.to_blob()
        node = hint.node

        def put(conn: sqlite3.Connection) -> int | None:
            with transaction(conn):
                flagged = conn.execute(
                    "SELECT overflowed FROM hint_overflows WHERE node = ?", (node,)
                ).fetchone()
                if flagged is not None and flagged[0]:
                    _drop(conn, node, 1, True)
                    return None
                held = conn.execute("SELECT COUNT(*) FROM hints WHERE node = ?", (node,))
                count = int(held.fetchone()[0])
                if count >= max_per_node:
                    conn.execute("DELETE FROM hints WHERE node = ?", (node,))
                    _drop(conn, node, count + 1, True)
                    return None
                cur = conn.execute("INSERT INTO hints(node, body) VALUES (?, ?)", (node, blob))
                return int(cur.lastrowid or 0)

        return await self._run(put)

    async def list_hints(self, node: str, limit: int) -> list[Hint]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT id, body FROM hints WHERE node = ? ORDER BY id LIMIT ?",
                (node, max(0, limit)),
            ).fetchall()
        )
        return [Hint.from_blob(int(row[0]), bytes(row[1])) for row in rows]

    async def delete_hints(self, node: str, ids: Collection[int]) -> int:
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        slots = ",".join("?" * len(wanted))
        cur = await self._run(
            lambda c: c.execute(
                f"DELETE FROM hints WHERE node = ? AND id IN ({slots})", (node, *wanted)
            )
        )
        return int(cur.rowcount)

    async def hint_backlogs(self) -> dict[str, HintBacklog]:
        def read(conn: sqlite3.Connection) -> dict[str, HintBacklog]:
            pending = dict(
                conn.execute("SELECT node, COUNT(*) FROM hints GROUP BY node").fetchall()
            )
            flags = {
                row[0]: (bool(row[1]), int(row[2]))
                for row in conn.execute("SELECT node, overflowed, dropped FROM hint_overflows")
            }
            return {
                node: HintBacklog(
                    pending=int(pending.get(node, 0)),
                    dropped=flags.get(node, (False, 0))[1],
                    overflowed=flags.get(node, (False, 0))[0],
                )
                for node in sorted(pending.keys() | flags.keys())
            }

        return await self._run(read)

    async def clear_hint_overflow(self, node: str) -> bool:
        cur = await self._run(
            lambda c: c.execute(
                "DELETE FROM hint_overflows WHERE node = ? AND overflowed = 1", (node,)
            )
        )
        return cur.rowcount == 1
