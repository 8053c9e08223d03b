"""Coordination primitives of the SQLite backend: leases, peers, phases and the job queue.

Same contract as the Redis scripts, with times from the store's injectable clock. Each
primitive is one statement or one `BEGIN IMMEDIATE` transaction, so it stays atomic even if
another process opens the same file.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson

from .store import ClaimedChunk, JobProgress

T = TypeVar("T")

COORDINATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (scope TEXT PRIMARY KEY, owner TEXT NOT NULL,
    expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS peers (pod_id TEXT PRIMARY KEY, info BLOB NOT NULL,
    expires_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS phases (scope TEXT PRIMARY KEY, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, kind TEXT NOT NULL,
    payload BLOB NOT NULL, total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0,
    turn INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs(turn) WHERE done < total;
CREATE TABLE IF NOT EXISTS chunks (job_id TEXT NOT NULL, idx INTEGER NOT NULL,
    chunk BLOB NOT NULL, owner TEXT, expires_ms INTEGER, cursor BLOB,
    attempt INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (job_id, idx));
"""
# A done chunk's row is deleted; a pending one has owner NULL; a claimed one an expiry.

_TURN = (
    "INSERT INTO counters(name, value) VALUES ('job_turn', 0) "
    "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value"
)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteCoordination(ABC):
    @abstractmethod
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    @abstractmethod
    def _now_ms(self) -> int: ...

    async def lease_acquire(self, scope: str, owner: str, ttl_ms: int) -> bool:
        now = self._now_ms()
        cur = await self._run(
            lambda c: c.execute(
                "INSERT INTO leases(scope, owner, expires_ms) VALUES (?, ?, ?) "
                "ON CONFLICT(scope) DO UPDATE SET owner = excluded.owner, "
                "expires_ms = excluded.expires_ms WHERE leases.owner = excluded.owner "
                "OR leases.expires_ms <= ?",
                (scope, owner, now + ttl_ms, now),
            )
        )
        return cur.rowcount == 1

    async def lease_renew(self, scope: str, owner: str, ttl_ms: int) -> bool:
        now = self._now_ms()
        cur = await self._run(
            lambda c: c.execute(
                "UPDATE leases SET expires_ms = ? WHERE scope = ? AND owner = ? AND expires_ms > ?",
                (now + ttl_ms, scope, owner, now),
            )
        )
        return cur.rowcount == 1

    async def lease_release(self, scope: str, owner: str) -> bool:
        now = self._now_ms()
        cur = await self._run(
            lambda c: c.execute(
                "DELETE FROM leases WHERE scope = ? AND owner = ? AND expires_ms > ?",
                (scope, owner, now),
            )
        )
        return cur.rowcount == 1

    async def lease_holder(self, scope: str) -> str | None:
        now = self._now_ms()
        row = await self._run(
            lambda c: c.execute(
                "SELECT owner FROM leases WHERE scope = ? AND expires_ms > ?", (scope, now)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    async def lease_ttl_ms(self, scope: str) -> int | None:
        now = self._now_ms()
        row = await self._run(
            lambda c: c.execute(
                "SELECT expires_ms - ? FROM leases WHERE scope = ? AND expires_ms > ?",
                (now, scope, now),
            ).fetchone()
        )
        return None if row is None else int(row[0])

    async def peer_heartbeat(self, pod_id: str, info: dict[str, Any], ttl_ms: int) -> None:
        row = (pod_id, orjson.dumps(info), self._now_ms() + ttl_ms)
        await self._run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO peers(pod_id, info, expires_ms) VALUES (?, ?, ?)", row
            )
        )

    async def live_peers(self) -> dict[str, dict[str, Any]]:
        now = self._now_ms()

        def read(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            conn.execute("DELETE FROM peers WHERE expires_ms <= ?", (now,))
            return conn.execute("SELECT pod_id, info FROM peers").fetchall()

        return {pod: orjson.loads(info) for pod, info in await self._run(read)}

    async def peer_leave(self, pod_id: str) -> None:
        await self._run(lambda c: c.execute("DELETE FROM peers WHERE pod_id = ?", (pod_id,)))

    async def get_phase(self, scope: str) -> dict[str, Any] | None:
        row = await self._run(
            lambda c: c.execute("SELECT state FROM phases WHERE scope = ?", (scope,)).fetchone()
        )
        return None if row is None else orjson.loads(row[0])

    async def put_phase(self, scope: str, state: dict[str, Any], *, owner: str) -> bool:
        args = (scope, orjson.dumps(state), scope, owner, self._now_ms())
        cur = await self._run(
            lambda c: c.execute(
                "INSERT INTO phases(scope, state) SELECT ?, ? WHERE EXISTS (SELECT 1 FROM "
                "leases WHERE scope = ? AND owner = ? AND expires_ms > ?) "
                "ON CONFLICT(scope) DO UPDATE SET state = excluded.state",
                args,
            )
        )
        return cur.rowcount == 1

    async def enqueue_job(
        self, job_id: str, kind: str, payload: dict[str, Any], chunks: list[dict[str, Any]]
    ) -> bool:
        rows = [(job_id, i, orjson.dumps(chunk)) for i, chunk in enumerate(chunks)]
        body = orjson.dumps(payload)

        def enqueue(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                turn = conn.execute(_TURN).fetchone()[0]
                cur = conn.execute(
                    "INSERT OR IGNORE INTO jobs(job_id, kind, payload, total, turn) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (job_id, kind, body, len(rows), turn),
                )
                if cur.rowcount != 1:
                    return False
                conn.executemany("INSERT INTO chunks(job_id, idx, chunk) VALUES (?, ?, ?)", rows)
                return True

        return await self._run(enqueue)

    async def claim_chunk(
        self, owner: str, ttl_ms: int, kinds: Collection[str] | None = None
    ) -> ClaimedChunk | None:
        now = self._now_ms()
        wanted = None if kinds is None else frozenset(kinds)

        def claim(conn: sqlite3.Connection) -> ClaimedChunk | None:
            with transaction(conn):
                jobs = conn.execute(
                    "SELECT job_id, kind, payload FROM jobs WHERE done < total ORDER BY turn"
                ).fetchall()
                for job_id, kind, payload in jobs:
                    if wanted is not None and kind not in wanted:
                        continue
                    # Pending chunks first, then the claim that expired longest ago.
                    row = conn.execute(
                        "SELECT idx, chunk, cursor, attempt FROM chunks WHERE job_id = ? "
                        "AND (owner IS NULL OR expires_ms <= ?) "
                        "ORDER BY owner IS NOT NULL, expires_ms, idx LIMIT 1",
                        (job_id, now),
                    ).fetchone()
                    if row is None:
                        continue
                    index, chunk, cursor, attempt = row
                    conn.execute(
                        "UPDATE chunks SET owner = ?, expires_ms = ?, attempt = attempt + 1 "
                        "WHERE job_id = ? AND idx = ?",
                        (owner, now + ttl_ms, job_id, index),
                    )
                    turn = conn.execute(_TURN).fetchone()[0]
                    conn.execute("UPDATE jobs SET turn = ? WHERE job_id = ?", (turn, job_id))
                    return ClaimedChunk(
                        job_id=job_id,
                        kind=kind,
                        index=index,
                        payload=orjson.loads(payload),
                        chunk=orjson.loads(chunk),
                        cursor=None if cursor is None else orjson.loads(cursor),
                        attempt=attempt + 1,
                    )
                return None

        return await self._run(claim)

    async def heartbeat_chunk(
        self,
        job_id: str,
        index: int,
        owner: str,
        ttl_ms: int,
        cursor: dict[str, Any] | None = None,
    ) -> bool:
        saved = None if cursor is None else orjson.dumps(cursor)
        args = (self._now_ms() + ttl_ms, saved, job_id, index, owner)
        cur = await self._run(
            lambda c: c.execute(
                "UPDATE chunks SET expires_ms = ?, cursor = COALESCE(?, cursor) "
                "WHERE job_id = ? AND idx = ? AND owner = ?",
                args,
            )
        )
        return cur.rowcount == 1

    async def complete_chunk(self, job_id: str, index: int, owner: str) -> bool:
        def complete(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                cur = conn.execute(
                    "DELETE FROM chunks WHERE job_id = ? AND idx = ? AND owner = ?",
                    (job_id, index, owner),
                )
                if cur.rowcount != 1:
                    return False
                conn.execute("UPDATE jobs SET done = done + 1 WHERE job_id = ?", (job_id,))
                return True

        return await self._run(complete)

    async def queue_depth(self) -> int:
        row = await self._run(
            lambda c: c.execute(
                "SELECT COALESCE(SUM(total - done), 0) FROM jobs WHERE done < total"
            ).fetchone()
        )
        return int(row[0])

    async def job_progress(self, job_id: str) -> JobProgress | None:
        now = self._now_ms()

        def read(conn: sqlite3.Connection) -> JobProgress | None:
            row = conn.execute(
                "SELECT total, done, (SELECT COUNT(*) FROM chunks WHERE job_id = ?1 "
                "AND owner IS NOT NULL AND expires_ms > ?2) FROM jobs WHERE job_id = ?1",
                (job_id, now),
            ).fetchone()
            return None if row is None else JobProgress(*row)

        return await self._run(read)
