"""Operation records of the SQLite backend.

A partial unique index holds "one running operation per scope", so finishing an operation
(its state leaving 'running') frees the scope in the same statement. `create_operation` runs
in a `BEGIN IMMEDIATE` transaction, atomic even against another process on the same file.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from .sqlite_coordination import transaction
from .store import OperationRecord, check_operation_state

T = TypeVar("T")

# `seq` orders by creation; `body` holds what a save may change besides the state.
OPERATIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL, scope TEXT NOT NULL, state TEXT NOT NULL, started_at TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0, body BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS operations_running ON operations(scope)
    WHERE state = 'running';
"""

_COLUMNS = "id, kind, scope, state, started_at, cancel_requested, body"
_SLOTS = ", ".join("?" * 7)


def _body(record: OperationRecord) -> bytes:
    return orjson.dumps(
        {
            "phase": record.phase,
            "params": record.params,
            "progress": record.progress,
            "finished_at": record.finished_at,
            "error": record.error,
        }
    )


def _from_row(row: tuple[Any, ...]) -> OperationRecord:
    op_id, kind, scope, state, started_at, cancel, body = row
    return OperationRecord(
        id=op_id,
        kind=kind,
        scope=scope,
        state=state,
        started_at=started_at,
        cancel_requested=bool(cancel),
        **orjson.loads(body),
    )


def _select(conn: sqlite3.Connection, op_id: str) -> OperationRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM operations WHERE id = ?", (op_id,)).fetchone()
    return None if row is None else _from_row(row)


class SqliteOperations(ABC):
    @abstractmethod
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def create_operation(self, record: OperationRecord) -> str | None:
        check_operation_state(record.state, new=True)
        row = (
            record.id,
            record.kind,
            record.scope,
            record.state,
            record.started_at,
            int(record.cancel_requested),
            _body(record),
        )

        def create(conn: sqlite3.Connection) -> str | None:
            with transaction(conn):
                if conn.execute("SELECT 1 FROM operations WHERE id = ?", (record.id,)).fetchone():
                    return record.id
                holder = conn.execute(
                    "SELECT id FROM operations WHERE scope = ? AND state = 'running'",
                    (record.scope,),
                ).fetchone()
                if holder is not None:
                    return str(holder[0])
                conn.execute(f"INSERT INTO operations({_COLUMNS}) VALUES ({_SLOTS})", row)
                return None

        return await self._run(create)

    async def get_operation(self, op_id: str) -> OperationRecord | None:
        return await self._run(lambda c: _select(c, op_id))

    async def list_operations(self, limit: int = 100) -> list[OperationRecord]:
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM operations ORDER BY seq DESC LIMIT ?", (max(0, limit),)
            ).fetchall()
        )
        return [_from_row(r) for r in rows]

    async def save_operation(self, record: OperationRecord) -> bool:
        check_operation_state(record.state)
        args = (record.state, _body(record), record.id)
        cur = await self._run(
            lambda c: c.execute(
                "UPDATE operations SET state = ?, body = ? WHERE id = ? AND state = 'running'",
                args,
            )
        )
        return cur.rowcount == 1

    async def request_cancel(self, op_id: str) -> OperationRecord | None:
        def cancel(conn: sqlite3.Connection) -> OperationRecord | None:
            with transaction(conn):
                conn.execute(
                    "UPDATE operations SET cancel_requested = 1 WHERE id = ? AND state = 'running'",
                    (op_id,),
                )
                return _select(conn, op_id)

        return await self._run(cancel)
