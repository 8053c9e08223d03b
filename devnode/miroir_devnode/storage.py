"""The node's durable state: one SQLite file (WAL) under `--db-path`.

Indexes, documents (one JSON row per index/id), tasks (with the enqueued payload, so an
enqueued task survives `kill -9` and runs after a restart), webhooks and small metadata
live here; the API keys table belongs to `KeyStore`, which shares the connection.
Writes that belong together run in one `transaction()`: a task's effects and its new
status commit or roll back as one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

DB_FILE = "devnode.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS indexes (
    uid TEXT PRIMARY KEY,
    primary_key TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    settings BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    index_uid TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (index_uid, doc_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
    uid INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    payload BLOB
);
CREATE TABLE IF NOT EXISTS webhooks (uuid TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


@dataclass(slots=True)
class IndexRow:
    uid: str
    primary_key: str | None
    created_at: str
    updated_at: str
    settings: dict[str, Any]


class Storage:
    def __init__(self, db_dir: Path) -> None:
        db_dir.mkdir(parents=True, exist_ok=True)
        self.path = db_dir / DB_FILE
        # Autocommit mode: transactions are explicit (`transaction()`), so a write outside
        # one (KeyStore's) commits by itself and never joins a half-done task.
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a process crash (kill -9), which is what tests exercise.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def size_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    # Indexes and documents

    def load_indexes(self) -> list[IndexRow]:
        rows = self.conn.execute(
            "SELECT uid, primary_key, created_at, updated_at, settings FROM indexes ORDER BY uid"
        )
        return [IndexRow(r[0], r[1], r[2], r[3], orjson.loads(r[4])) for r in rows]

    def put_index(self, row: IndexRow) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO indexes VALUES (?, ?, ?, ?, ?)",
            (row.uid, row.primary_key, row.created_at, row.updated_at, orjson.dumps(row.settings)),
        )

    def delete_index(self, uid: str) -> None:
        self.conn.execute("DELETE FROM documents WHERE index_uid = ?", (uid,))
        self.conn.execute("DELETE FROM indexes WHERE uid = ?", (uid,))

    def rename_index(self, old: str, new: str) -> None:
        self.conn.execute("UPDATE indexes SET uid = ? WHERE uid = ?", (new, old))
        self.conn.execute("UPDATE documents SET index_uid = ? WHERE index_uid = ?", (new, old))

    def load_documents(self, uid: str) -> Iterator[tuple[str, Any]]:
        rows = self.conn.execute("SELECT doc_id, body FROM documents WHERE index_uid = ?", (uid,))
        for doc_id, body in rows:
            yield doc_id, orjson.loads(body)

    def put_documents(self, uid: str, docs: Iterable[tuple[str, bytes]]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?)",
            ((uid, doc_id, body) for doc_id, body in docs),
        )

    def delete_documents(self, uid: str, ids: Iterable[str]) -> None:
        self.conn.executemany(
            "DELETE FROM documents WHERE index_uid = ? AND doc_id = ?",
            ((uid, doc_id) for doc_id in ids),
        )

    def clear_documents(self, uid: str) -> None:
        self.conn.execute("DELETE FROM documents WHERE index_uid = ?", (uid,))

    def raw_documents_size(self, uid: str) -> int:
        row = self.conn.execute(
            "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM documents WHERE index_uid = ?", (uid,)
        ).fetchone()
        return int(row[0])

    # Tasks

    def load_tasks(self) -> Iterator[tuple[dict[str, Any], bytes | None]]:
        for body, payload in self.conn.execute("SELECT body, payload FROM tasks ORDER BY uid"):
            yield orjson.loads(body), payload

    def insert_task(self, uid: int, body: dict[str, Any], payload: bytes | None) -> None:
        self.conn.execute("INSERT INTO tasks VALUES (?, ?, ?)", (uid, orjson.dumps(body), payload))

    def finish_tasks(self, bodies: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Store finished tasks; their payload is no longer needed."""
        self.conn.executemany(
            "UPDATE tasks SET body = ?, payload = NULL WHERE uid = ?",
            ((orjson.dumps(body), uid) for uid, body in bodies),
        )

    def delete_tasks(self, uids: Iterable[int]) -> None:
        self.conn.executemany("DELETE FROM tasks WHERE uid = ?", ((uid,) for uid in uids))

    # Webhooks and metadata

    def load_webhooks(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT body FROM webhooks ORDER BY rowid")
        return [orjson.loads(body) for (body,) in rows]

    def put_webhook(self, webhook: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO webhooks VALUES (?, ?) "
            "ON CONFLICT(uuid) DO UPDATE SET body = excluded.body",
            (webhook["uuid"], orjson.dumps(webhook)),
        )

    def delete_webhook(self, uuid: str) -> None:
        self.conn.execute("DELETE FROM webhooks WHERE uuid = ?", (uuid,))

    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def put_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, orjson.dumps(value)))
