"""SQLite backend of `Store`: the embedded default for a single proxy pod.

All SQL runs on one dedicated thread that owns the connection, so the event loop never
blocks on disk and statements never interleave. WAL keeps readers off the writer's path.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .sqlite_coordination import COORDINATION_SCHEMA, SqliteCoordination, transaction
from .sqlite_hints import HINTS_SCHEMA, SqliteHints
from .sqlite_operations import OPERATIONS_SCHEMA, SqliteOperations
from .sqlite_tombstones import TOMBSTONES_SCHEMA, SqliteTombstones
from .store import IndexFields, IndexMeta, TaskPage, TaskRecord
from .taskquery import TaskQuery

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    uid INTEGER PRIMARY KEY,
    index_uid TEXT,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    batch_uid INTEGER,
    canceled_by INTEGER,
    enqueued_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks(status)
    WHERE status IN ('enqueued', 'processing');
CREATE TABLE IF NOT EXISTS topology (id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS indexes (uid TEXT PRIMARY KEY, shards INTEGER NOT NULL,
    primary_key TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS index_fields (uid TEXT PRIMARY KEY, fields BLOB NOT NULL,
    searchable BLOB);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL NOT NULL);
"""

_NEXT_UID = (
    "INSERT INTO counters(name, value) VALUES ('task_uid', 0) "
    "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"
)
# The clock's microseconds, but never below the last stamp (a clock step back).
_NEXT_STAMP = (
    "INSERT INTO counters(name, value) VALUES ('task_stamp', ?1) "
    "ON CONFLICT(name) DO UPDATE SET value = MAX(value, ?1) RETURNING value"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_BODY_FIELDS = ("details", "error", "node_tasks", "extra")


def _to_row(task: TaskRecord) -> tuple[Any, ...]:
    body = orjson.dumps({name: getattr(task, name) for name in _BODY_FIELDS})
    return (
        task.uid,
        task.index_uid,
        task.type,
        task.status,
        task.batch_uid,
        task.canceled_by,
        task.enqueued_at,
        task.started_at,
        task.finished_at,
        body,
    )


_COLUMNS = (
    "uid, index_uid, type, status, batch_uid, canceled_by, enqueued_at, started_at, "
    "finished_at, body"
)


def _from_row(row: tuple[Any, ...]) -> TaskRecord:
    body = orjson.loads(row[9])
    return TaskRecord(
        uid=row[0],
        index_uid=row[1],
        type=row[2],
        status=row[3],
        batch_uid=row[4],
        canceled_by=row[5],
        enqueued_at=row[6],
        started_at=row[7],
        finished_at=row[8],
        **body,
    )


def _where(query: TaskQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, values in (
        ("uid", query.uids),
        ("batch_uid", query.batch_uids),
        ("canceled_by", query.canceled_by),
        ("type", query.types),
        ("status", query.statuses),
        ("index_uid", query.index_uids),
    ):
        if values is not None:
            ordered = sorted(values, key=str)
            clauses.append(f"{column} IN ({','.join('?' * len(ordered))})")
            args.extend(ordered)
    columns = {"enqueuedAt": "enqueued_at", "startedAt": "started_at", "finishedAt": "finished_at"}
    for field_name, op, moment in query.dates:
        clauses.append(f"{columns[field_name]} {op} ?")
        args.append(moment)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


_BUSY_TIMEOUT_S = 5.0


def _read_fields(conn: sqlite3.Connection, uid: str) -> IndexFields:
    row = conn.execute(
        "SELECT fields, searchable FROM index_fields WHERE uid = ?", (uid,)
    ).fetchone()
    if row is None:
        return IndexFields()
    searchable = None if row[1] is None else tuple(orjson.loads(row[1]))
    return IndexFields(tuple(orjson.loads(row[0])), searchable)


def _write_fields(conn: sqlite3.Connection, uid: str, record: IndexFields) -> None:
    searchable = None if record.searchable is None else orjson.dumps(record.searchable)
    conn.execute(
        "INSERT OR REPLACE INTO index_fields(uid, fields, searchable) VALUES (?, ?, ?)",
        (uid, orjson.dumps(record.fields), searchable),
    )


def _open(path: str) -> sqlite3.Connection:
    """A connection to the state file in WAL mode, its tables created if missing."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
    try:
        # Turning a new file to WAL needs it to itself, and SQLite answers "database is
        # locked" at once instead of waiting: pods opening one new file together (a test
        # opened three) retry until the first has switched it.
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(
            SCHEMA + COORDINATION_SCHEMA + OPERATIONS_SCHEMA + TOMBSTONES_SCHEMA + HINTS_SCHEMA
        )
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteStore(SqliteCoordination, SqliteOperations, SqliteTombstones, SqliteHints):
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self._path = str(path)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miroir-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                self._conn = _open(self._path)
            return fn(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def ping(self) -> None:
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    async def next_task_stamp(self) -> tuple[int, datetime]:
        def bump(conn: sqlite3.Connection) -> tuple[int, datetime]:
            with transaction(conn):
                uid = conn.execute(_NEXT_UID).fetchone()[0]
                # Read under the write lock, so another process sharing the file stamps
                # either entirely before or entirely after this one.
                now = round(self._clock() * 1_000_000)
                stamp = conn.execute(_NEXT_STAMP, (now,)).fetchone()[0]
            return int(uid), _EPOCH + timedelta(microseconds=stamp)

        return await self._run(bump)

    async def create_task(self, task: TaskRecord) -> None:
        row = _to_row(task)
        await self._run(
            lambda c: c.execute(f"INSERT INTO tasks({_COLUMNS}) VALUES ({','.join('?' * 10)})", row)
        )

    async def get_task(self, uid: int) -> TaskRecord | None:
        row = await self._run(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM tasks WHERE uid = ?", (uid,)).fetchone()
        )
        return None if row is None else _from_row(row)

    async def save_task(self, task: TaskRecord) -> None:
        row = _to_row(task)
        await self._run(
            lambda c: c.execute(
                f"UPDATE tasks SET ({_COLUMNS}) = ({','.join('?' * 10)}) WHERE uid = ? "
                "AND status NOT IN ('succeeded', 'failed', 'canceled')",
                (*row, task.uid),
            )
        )

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        where, args = _where(query)

        def select(conn: sqlite3.Connection) -> TaskPage:
            total = conn.execute(f"SELECT COUNT(*) FROM tasks{where}", args).fetchone()[0]
            page_where, page_args = where, list(args)
            if query.from_uid is not None:
                op = ">=" if query.reverse else "<="
                page_where += (" AND " if where else " WHERE ") + f"uid {op} ?"
                page_args.append(query.from_uid)
            order = "ASC" if query.reverse else "DESC"
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM tasks{page_where} ORDER BY uid {order} LIMIT ?",
                [*page_args, query.limit + 1],
            ).fetchall()
            following = rows[query.limit][0] if len(rows) > query.limit else None
            return TaskPage([_from_row(r) for r in rows[: query.limit]], total, following)

        return await self._run(select)

    async def delete_tasks(self, query: TaskQuery) -> list[int]:
        where, args = _where(query)
        finished = "status IN ('succeeded', 'failed', 'canceled')"
        where += (" AND " if where else " WHERE ") + finished

        def delete(conn: sqlite3.Connection) -> list[int]:
            rows = conn.execute(f"DELETE FROM tasks{where} RETURNING uid", args).fetchall()
            return sorted(r[0] for r in rows)

        return await self._run(delete)

    async def unfinished_tasks(self) -> list[TaskRecord]:
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE status IN ('enqueued', 'processing') "
                "ORDER BY uid"
            ).fetchall()
        )
        return [_from_row(r) for r in rows]

    async def put_index(self, meta: IndexMeta, *, only_new: bool = False) -> bool:
        verb = "INSERT OR IGNORE" if only_new else "INSERT OR REPLACE"
        row = (meta.uid, meta.shards, meta.primary_key, meta.created_at)
        cur = await self._run(
            lambda c: c.execute(
                f"{verb} INTO indexes(uid, shards, primary_key, created_at) VALUES (?, ?, ?, ?)",
                row,
            )
        )
        return cur.rowcount == 1

    async def get_index(self, uid: str) -> IndexMeta | None:
        row = await self._run(
            lambda c: c.execute(
                "SELECT uid, shards, primary_key, created_at FROM indexes WHERE uid = ?", (uid,)
            ).fetchone()
        )
        return None if row is None else IndexMeta(*row)

    async def list_indexes(self) -> list[IndexMeta]:
        rows = await self._run(
            lambda c: c.execute(
                "SELECT uid, shards, primary_key, created_at FROM indexes ORDER BY uid"
            ).fetchall()
        )
        return [IndexMeta(*row) for row in rows]

    async def delete_index(self, uid: str) -> bool:
        cur = await self._run(lambda c: c.execute("DELETE FROM indexes WHERE uid = ?", (uid,)))
        return cur.rowcount == 1

    async def add_fields(self, uid: str, names: Sequence[str]) -> IndexFields:
        def append(conn: sqlite3.Connection) -> IndexFields:
            with transaction(conn):
                record = _read_fields(conn, uid)
                known = set(record.fields)
                new = [n for n in dict.fromkeys(names) if n not in known]
                if new:
                    record = IndexFields((*record.fields, *new), record.searchable)
                    _write_fields(conn, uid, record)
            return record

        return await self._run(append)

    async def set_searchable(self, uid: str, searchable: Sequence[str] | None) -> IndexFields:
        choice = None if searchable is None else tuple(searchable)

        def put(conn: sqlite3.Connection) -> IndexFields:
            with transaction(conn):
                record = IndexFields(_read_fields(conn, uid).fields, choice)
                _write_fields(conn, uid, record)
            return record

        return await self._run(put)

    async def put_fields(self, uid: str, record: IndexFields | None) -> None:
        def put(conn: sqlite3.Connection) -> None:
            if record is None:
                conn.execute("DELETE FROM index_fields WHERE uid = ?", (uid,))
            else:
                _write_fields(conn, uid, record)

        await self._run(put)

    async def get_topology(self) -> tuple[int, dict[str, Any]] | None:
        row = await self._run(
            lambda c: c.execute("SELECT epoch, body FROM topology WHERE id = 1").fetchone()
        )
        return None if row is None else (int(row[0]), orjson.loads(row[1]))

    async def put_topology(self, expected_epoch: int, topology: dict[str, Any]) -> int | None:
        body = orjson.dumps(topology)

        def cas(conn: sqlite3.Connection) -> int | None:
            if expected_epoch == 0:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO topology(id, epoch, body) VALUES (1, 1, ?)", (body,)
                )
            else:
                cur = conn.execute(
                    "UPDATE topology SET epoch = epoch + 1, body = ? WHERE id = 1 AND epoch = ?",
                    (body, expected_epoch),
                )
            return expected_epoch + 1 if cur.rowcount == 1 else None

        return await self._run(cas)

    async def kv_set(self, key: str, value: bytes, ttl_s: float, *, only_new: bool = False) -> bool:
        now = self._clock()

        def put(conn: sqlite3.Connection) -> bool:
            if only_new:
                cur = conn.execute(
                    "INSERT INTO kv(key, value, expires) VALUES (?, ?, ?) ON CONFLICT(key) DO "
                    "UPDATE SET value = excluded.value, expires = excluded.expires "
                    "WHERE kv.expires <= ?",
                    (key, value, now + ttl_s, now),
                )
                return cur.rowcount == 1
            conn.execute(
                "INSERT OR REPLACE INTO kv(key, value, expires) VALUES (?, ?, ?)",
                (key, value, now + ttl_s),
            )
            return True

        return await self._run(put)

    async def kv_get(self, key: str) -> bytes | None:
        now = self._clock()
        row = await self._run(
            lambda c: c.execute(
                "SELECT value FROM kv WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()

        if self._conn is not None:
            await self._run(shut)
            self._conn = None
        self._executor.shutdown(wait=True)
