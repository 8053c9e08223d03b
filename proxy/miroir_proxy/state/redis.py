"""Redis backend of `Store`: the state many proxy pods share, on one Redis or a Redis Cluster.

Every multi-key step is one Lua script (`scripts.py`), so pods never see half a write and
never race each other. Each script declares its keys, all in one hash slot (`keys.py`), so
the same scripts run on a standalone Redis and on Redis Cluster. Every call has a deadline
(socket and connect timeouts), and connection failures surface as `StoreUnavailable` at this
one boundary; the pool reconnects by itself once Redis answers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import scripts
from .keys import DEFAULT_NAMESPACE, TASK_DATES, TASK_INDEXED, Keys, check_namespace
from .store import (
    ClaimedChunk,
    Hint,
    HintBacklog,
    IndexFields,
    IndexMeta,
    JobProgress,
    OperationRecord,
    StoreUnavailable,
    TaskPage,
    TaskRecord,
    check_operation_state,
)
from .taskquery import TaskQuery

_TASK_FIELDS = (
    "uid",
    "index_uid",
    "type",
    "enqueued_at",
    "status",
    "started_at",
    "finished_at",
    "details",
    "error",
    "canceled_by",
    "batch_uid",
    "node_tasks",
    "extra",
)
_TERMINAL = ("succeeded", "failed", "canceled")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
# Lua numbers are doubles: keep page sizes where they stay exact.
_MAX_LIMIT = 1 << 31
# Finished tasks deleted per script call: bounds the keys one call declares.
_DELETE_BATCH = 500
# A script's answer when the data the caller read to name its keys changed meanwhile.
_STALE = -1


def _micros(moment: str) -> int:
    """RFC 3339 text -> microseconds since the epoch (exact, unlike float timestamps)."""
    return (datetime.fromisoformat(moment) - _EPOCH) // _MICRO


def _indexed_values(task: TaskRecord) -> tuple[str, ...]:
    values = (task.status, task.type, task.index_uid, task.batch_uid, task.canceled_by)
    return tuple("" if v is None else str(v) for v in values)


def _decode_fields(reply: Any) -> IndexFields:
    """An index's fields hash (a dict, or HGETALL's flat list from a script)."""
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    entries = {_text(k): v for k, v in reply.items()}
    positions = {k[2:]: int(v) for k, v in entries.items() if k.startswith("f:")}
    raw = entries.get("s")
    searchable = None if raw is None else tuple(orjson.loads(raw))
    return IndexFields(tuple(sorted(positions, key=positions.__getitem__)), searchable)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _members(reply: Any) -> list[str]:
    """A ZRANGE without scores (redis-py types it with the WITHSCORES shapes too)."""
    return [_text(member) for member in reply]


def _decode_task(body: bytes | str) -> TaskRecord:
    return TaskRecord(**orjson.loads(body))


# How an operation hash stores the record: these as text, the rest as JSON, and the cancel
# flag as 0/1. A save writes `state` plus `_OP_SAVED`.
_OP_TEXT = ("id", "kind", "scope", "state", "phase", "started_at")
_OP_JSON = ("params", "progress", "finished_at", "error")
_OP_SAVED = ("phase", *_OP_JSON)


def _op_fields(record: OperationRecord, names: tuple[str, ...]) -> list[str | bytes]:
    flat: list[str | bytes] = []
    for name in names:
        value = getattr(record, name)
        flat += [name, value if name in _OP_TEXT else orjson.dumps(value)]
    return flat


def _decode_operation(fields: Mapping[bytes | str, bytes | str]) -> OperationRecord:
    f = {_text(k): v for k, v in fields.items()}
    return OperationRecord(
        id=_text(f["id"]),
        kind=_text(f["kind"]),
        scope=_text(f["scope"]),
        state=_text(f["state"]),
        phase=_text(f["phase"]),
        started_at=_text(f["started_at"]),
        params=orjson.loads(f["params"]),
        progress=orjson.loads(f["progress"]),
        finished_at=orjson.loads(f["finished_at"]),
        error=orjson.loads(f["error"]),
        cancel_requested=_text(f["cancel_requested"]) == "1",
    )


def _pairs(flat: list[bytes]) -> dict[bytes | str, bytes | str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _open_client(
    url: str, *, cluster: bool, timeout_s: float, max_connections: int
) -> Redis | RedisCluster:
    # No retries: a failed call is reported at once; the pool re-checks connections on
    # checkout, so the first call after Redis comes back already succeeds. No socket
    # timeout: redis-py enforces it with asyncio.wait_for, which on Python 3.11 can swallow
    # a cancellation; `_reachable` sets the deadline instead.
    common: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }
    if cluster:
        # Connections per master; redirects (MOVED, ASK) are followed whatever the retry.
        return RedisCluster.from_url(url, max_connections=max_connections, **common)
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s, **common
    )
    return Redis(connection_pool=pool)


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 1.0,
        max_connections: int = 64,
        cluster: bool = False,
    ) -> None:
        """`cluster`: `url` (redis:// or rediss://) names one node of a Redis Cluster, and
        the client finds the others and routes each call to the master of its slot."""
        self._keys = Keys(check_namespace(namespace))
        self._redis = _open_client(
            url, cluster=cluster, timeout_s=timeout_s, max_connections=max_connections
        )
        self._timeout_s = timeout_s
        # The cluster client fails a call at once when a node has no free connection (the
        # standalone pool waits for one): callers wait here instead, within the deadline.
        # No call holds more than one connection per node.
        self._gate: AbstractAsyncContextManager[Any] = (
            asyncio.Semaphore(max_connections) if cluster else nullcontext()
        )
        register = self._redis.register_script
        self._next_task_stamp = register(scripts.NEXT_TASK_STAMP)
        self._lease_acquire = register(scripts.LEASE_ACQUIRE)
        self._lease_renew = register(scripts.LEASE_RENEW)
        self._lease_release = register(scripts.LEASE_RELEASE)
        self._put_phase = register(scripts.PUT_PHASE)
        self._peer_heartbeat = register(scripts.PEER_HEARTBEAT)
        self._live_peers = register(scripts.LIVE_PEERS)
        self._put_topology = register(scripts.PUT_TOPOLOGY)
        self._add_fields = register(scripts.ADD_FIELDS)
        self._put_task = register(scripts.PUT_TASK)
        self._list_tasks = register(scripts.LIST_TASKS)
        self._matching_tasks = register(scripts.MATCHING_TASKS)
        self._delete_tasks = register(scripts.DELETE_TASKS)
        self._enqueue_job = register(scripts.ENQUEUE_JOB)
        self._claim_chunk = register(scripts.CLAIM_CHUNK)
        self._heartbeat_chunk = register(scripts.HEARTBEAT_CHUNK)
        self._complete_chunk = register(scripts.COMPLETE_CHUNK)
        self._job_progress = register(scripts.JOB_PROGRESS)
        self._create_operation = register(scripts.CREATE_OPERATION)
        self._save_operation = register(scripts.SAVE_OPERATION)
        self._request_cancel = register(scripts.REQUEST_CANCEL)
        self._list_operations = register(scripts.LIST_OPERATIONS)
        self._peer_leave = register(scripts.PEER_LEAVE)
        self._put_hint = register(scripts.PUT_HINT)
        self._delete_hints = register(scripts.DELETE_HINTS)
        self._clear_hint_overflow = register(scripts.CLEAR_HINT_OVERFLOW)

    @asynccontextmanager
    async def _reachable(self) -> AsyncIterator[None]:
        """The one boundary: a deadline on every call, and every way of not getting an
        answer (refused, reset, timed out) turned into `StoreUnavailable`."""
        try:
            async with asyncio.timeout(self._timeout_s), self._gate:
                yield
        except (
            redis_errors.ConnectionError,
            redis_errors.TimeoutError,
            # Redis Cluster: a master down, its slots uncovered, no node reachable.
            redis_errors.ClusterDownError,
            redis_errors.SlotNotCoveredError,
            redis_errors.RedisClusterUnreachableError,
            OSError,
        ) as e:
            raise StoreUnavailable(f"redis: {str(e) or type(e).__name__}") from e

    # -- tasks --------------------------------------------------------------------------

    async def next_task_stamp(self) -> tuple[int, datetime]:
        keys = [self._keys.task_uid, self._keys.task_stamp]
        async with self._reachable():
            uid, stamp = await self._next_task_stamp(keys=keys)
        return int(uid), _EPOCH + int(stamp) * _MICRO

    async def _write_task(self, mode: str, task: TaskRecord) -> None:
        k = self._keys
        body = orjson.dumps({name: getattr(task, name) for name in _TASK_FIELDS})
        new = _indexed_values(task)
        moments = (task.enqueued_at, task.started_at, task.finished_at)
        scores = ["" if moment is None else _micros(moment) for moment in moments]
        # A new uid has no old values yet: a create reads them only if the script says so.
        old: list[str] | None = [""] * len(TASK_INDEXED) if mode == "create" else None
        async with self._reachable():
            while True:
                # The script ZREMs the task from the sets of its old values: read them to
                # declare those sets; the script answers _STALE if they changed meanwhile.
                if old is None:
                    got = await self._redis.hmget(k.task(task.uid), list(TASK_INDEXED))
                    old = ["" if v is None else _text(v) for v in got]
                keys = [k.task(task.uid), k.tasks, k.task_bodies]
                keys += [k.task_by(f, v) for f, v in zip(TASK_INDEXED, old, strict=True)]
                keys += [k.task_by(f, v) for f, v in zip(TASK_INDEXED, new, strict=True)]
                keys += [k.task_dates(field) for field in TASK_DATES]
                args: list[Any] = [mode, task.uid, body, *old, *new, *scores]
                if int(await self._put_task(keys=keys, args=args)) != _STALE:
                    return
                old = None

    async def create_task(self, task: TaskRecord) -> None:
        await self._write_task("create", task)

    async def get_task(self, uid: int) -> TaskRecord | None:
        async with self._reachable():
            body = await self._redis.hget(self._keys.task_bodies, str(uid))
        return None if body is None else _decode_task(body)

    async def save_task(self, task: TaskRecord) -> None:
        await self._write_task("save", task)

    def _spec(
        self, query: TaskQuery, *, finished: bool = False
    ) -> tuple[list[str], dict[str, Any]]:
        """(KEYS, spec) of the matching scripts: the spec names each key by its position
        in KEYS. `finished`: only tasks that are done (what a deletion may take)."""
        k = self._keys
        declared: list[str] = []

        def key(name: str) -> int:
            declared.append(name)
            return len(declared)

        sets: list[list[int]] = []
        for field, values in (
            ("status", query.statuses),
            ("type", query.types),
            ("index", query.index_uids),
            ("batch", query.batch_uids),
            ("canceled", query.canceled_by),
            ("status", frozenset(_TERMINAL) if finished else None),
        ):
            if values is not None:
                sets.append([key(k.task_by(field, v)) for v in sorted(values, key=str)])
        dates = []
        for field, op, moment in query.dates:
            bound = f"({_micros(moment)}"
            low, high = (bound, "+inf") if op == ">" else ("-inf", bound)
            dates.append([key(k.task_dates(field)), low, high])
        # Every group of several sets, the uids, every date range and the intersection may
        # each take one scratch key.
        need = sum(len(group) != 1 for group in sets) + len(dates) + 2
        return declared, {
            "all": key(k.tasks),
            "bodies": key(k.task_bodies),
            "scratch": [key(k.scratch(n)) for n in range(1, need + 1)],
            "sets": sets,
            "uids": None if query.uids is None else sorted(query.uids),
            "dates": dates,
            "from": query.from_uid,
            "reverse": query.reverse,
            "limit": min(query.limit, _MAX_LIMIT),
        }

    async def list_tasks(self, query: TaskQuery) -> TaskPage:
        keys, spec = self._spec(query)
        async with self._reachable():
            reply = await self._list_tasks(keys=keys, args=[orjson.dumps(spec)])
        following = None if reply[1] is None else int(reply[1])
        return TaskPage([_decode_task(b) for b in reply[2:]], int(reply[0]), following)

    async def delete_tasks(self, query: TaskQuery) -> list[int]:
        k = self._keys
        keys, spec = self._spec(query, finished=True)
        deleted: list[int] = []
        async with self._reachable():
            found = await self._matching_tasks(keys=keys, args=[orjson.dumps(spec)])
            uids = [_text(u) for u in found]
            # Finished tasks never change, so the values read here name their sets until
            # the task is deleted; each batch is one atomic step.
            for first in range(0, len(uids), _DELETE_BATCH):
                batch = uids[first : first + _DELETE_BATCH]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for uid in batch:
                        pipe.hmget(k.task(int(uid)), list(TASK_INDEXED))
                    values = await pipe.execute()
                batch_keys = [k.tasks, k.task_bodies, *(k.task_dates(f) for f in TASK_DATES)]
                args: list[str | int] = []
                for uid, got in zip(batch, values, strict=True):
                    sets = [
                        k.task_by(field, _text(v))
                        for field, v in zip(TASK_INDEXED, got, strict=True)
                        if v is not None and v != b""
                    ]
                    batch_keys += [k.task(int(uid)), *sets]
                    args += [uid, len(sets)]
                gone = await self._delete_tasks(keys=batch_keys, args=args)
                deleted += (int(u) for u in gone)
        return sorted(deleted)

    async def unfinished_tasks(self) -> list[TaskRecord]:
        query = TaskQuery(statuses=frozenset({"enqueued", "processing"}), reverse=True)
        keys, spec = self._spec(query)
        spec["limit"] = _MAX_LIMIT
        async with self._reachable():
            reply = await self._list_tasks(keys=keys, args=[orjson.dumps(spec)])
        return [_decode_task(b) for b in reply[2:]]

    # -- index metadata, topology, kv ---------------------------------------------------

    async def put_index(self, meta: IndexMeta, *, only_new: bool = False) -> bool:
        value = orjson.dumps([meta.shards, meta.primary_key, meta.created_at])
        async with self._reachable():
            if only_new:
                return bool(await self._redis.hsetnx(self._keys.indexes, meta.uid, value))
            await self._redis.hset(self._keys.indexes, meta.uid, value)
        return True

    async def get_index(self, uid: str) -> IndexMeta | None:
        async with self._reachable():
            value = await self._redis.hget(self._keys.indexes, uid)
        return None if value is None else IndexMeta(uid, *orjson.loads(value))

    async def list_indexes(self) -> list[IndexMeta]:
        async with self._reachable():
            entries = await self._redis.hgetall(self._keys.indexes)
        metas = [IndexMeta(_text(uid), *orjson.loads(v)) for uid, v in entries.items()]
        return sorted(metas, key=lambda m: m.uid)

    async def delete_index(self, uid: str) -> bool:
        async with self._reachable():
            return bool(await self._redis.hdel(self._keys.indexes, uid))

    async def add_fields(self, uid: str, names: Sequence[str]) -> IndexFields:
        async with self._reachable():
            reply = await self._add_fields(keys=[self._keys.fields(uid)], args=list(names))
        return _decode_fields(reply)

    async def set_searchable(self, uid: str, searchable: Sequence[str] | None) -> IndexFields:
        key = self._keys.fields(uid)
        async with self._reachable():
            if searchable is None:
                await self._redis.hdel(key, "s")
            else:
                await self._redis.hset(key, "s", orjson.dumps(list(searchable)))
            reply = await self._redis.hgetall(key)
        return _decode_fields(reply)

    async def put_fields(self, uid: str, record: IndexFields | None) -> None:
        key = self._keys.fields(uid)
        async with self._reachable():
            await self._redis.delete(key)
            if record is None or (not record.fields and record.searchable is None):
                return
            items: list[Any] = ["n", len(record.fields)]
            for position, name in enumerate(record.fields, 1):
                items += [f"f:{name}", position]
            if record.searchable is not None:
                items += ["s", orjson.dumps(list(record.searchable))]
            await self._redis.hset(key, items=items)

    async def get_topology(self) -> tuple[int, dict[str, Any]] | None:
        async with self._reachable():
            epoch, body = await self._redis.hmget(self._keys.topology, ["epoch", "body"])
        return None if epoch is None or body is None else (int(epoch), orjson.loads(body))

    async def put_topology(self, expected_epoch: int, topology: dict[str, Any]) -> int | None:
        async with self._reachable():
            epoch = await self._put_topology(
                keys=[self._keys.topology], args=[expected_epoch, orjson.dumps(topology)]
            )
        return None if epoch is None else int(epoch)

    async def kv_set(self, key: str, value: bytes, ttl_s: float, *, only_new: bool = False) -> bool:
        ttl_ms = max(1, round(ttl_s * 1000))
        async with self._reachable():
            done = await self._redis.set(self._keys.kv(key), value, px=ttl_ms, nx=only_new)
        return bool(done)

    async def kv_get(self, key: str) -> bytes | None:
        async with self._reachable():
            value = await self._redis.get(self._keys.kv(key))
        return None if value is None else value.encode() if isinstance(value, str) else value

    # -- tombstones ---------------------------------------------------------------------

    async def add_tombstones(
        self,
        index_uid: str,
        ids_by_shard: Mapping[int, Collection[str]],
        deleted_at_ms: int,
        keep_ms: int,
    ) -> None:
        shards = [(shard, ids) for shard, ids in ids_by_shard.items() if ids]
        if not shards:
            return
        async with self._reachable(), self._redis.pipeline(transaction=False) as pipe:
            for shard, ids in shards:
                key = self._keys.tombstones(index_uid, shard)
                # GT: an id deleted again keeps the later time, never an earlier one.
                pipe.zadd(key, dict.fromkeys(ids, deleted_at_ms), gt=True)
                pipe.pexpire(key, max(1, keep_ms))
            await pipe.execute()

    async def tombstones(self, index_uid: str, shard: int, since_ms: int) -> dict[str, int]:
        key = self._keys.tombstones(index_uid, shard)
        async with self._reachable():
            found = await self._redis.zrangebyscore(key, since_ms, "+inf", withscores=True)
        pairs: list[tuple[bytes, float]] = [(p[0], p[1]) for p in found]  # type: ignore[misc]
        return {_text(doc_id): int(at) for doc_id, at in pairs}

    async def prune_tombstones(self, index_uid: str, shard: int, before_ms: int) -> int:
        key = self._keys.tombstones(index_uid, shard)
        async with self._reachable():
            return int(await self._redis.zremrangebyscore(key, "-inf", f"({before_ms}"))

    # -- leases, peers, phases ----------------------------------------------------------

    async def lease_acquire(self, scope: str, owner: str, ttl_ms: int) -> bool:
        async with self._reachable():
            return bool(
                await self._lease_acquire(keys=[self._keys.lease(scope)], args=[owner, ttl_ms])
            )

    async def lease_renew(self, scope: str, owner: str, ttl_ms: int) -> bool:
        async with self._reachable():
            return bool(
                await self._lease_renew(keys=[self._keys.lease(scope)], args=[owner, ttl_ms])
            )

    async def lease_release(self, scope: str, owner: str) -> bool:
        async with self._reachable():
            return bool(await self._lease_release(keys=[self._keys.lease(scope)], args=[owner]))

    async def lease_holder(self, scope: str) -> str | None:
        async with self._reachable():
            owner = await self._redis.get(self._keys.lease(scope))
        return None if owner is None else _text(owner)

    async def lease_ttl_ms(self, scope: str) -> int | None:
        async with self._reachable():
            remaining = int(await self._redis.pttl(self._keys.lease(scope)))
        # -2: no such key; -1 cannot happen (a lease is always set with an expiry).
        return None if remaining < 0 else remaining

    async def peer_heartbeat(self, pod_id: str, info: dict[str, Any], ttl_ms: int) -> None:
        keys = [self._keys.peers, self._keys.peer_expiry]
        async with self._reachable():
            await self._peer_heartbeat(keys=keys, args=[pod_id, orjson.dumps(info), ttl_ms])

    async def live_peers(self) -> dict[str, dict[str, Any]]:
        async with self._reachable():
            flat = await self._live_peers(keys=[self._keys.peers, self._keys.peer_expiry])
        return {flat[i].decode(): orjson.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def peer_leave(self, pod_id: str) -> None:
        keys = [self._keys.peers, self._keys.peer_expiry]
        async with self._reachable():
            await self._peer_leave(keys=keys, args=[pod_id])

    async def get_phase(self, scope: str) -> dict[str, Any] | None:
        async with self._reachable():
            value = await self._redis.get(self._keys.phase(scope))
        return None if value is None else orjson.loads(value)

    async def put_phase(self, scope: str, state: dict[str, Any], *, owner: str) -> bool:
        keys = [self._keys.lease(scope), self._keys.phase(scope)]
        async with self._reachable():
            return bool(await self._put_phase(keys=keys, args=[owner, orjson.dumps(state)]))

    # -- job queue ----------------------------------------------------------------------

    async def enqueue_job(
        self, job_id: str, kind: str, payload: dict[str, Any], chunks: list[dict[str, Any]]
    ) -> bool:
        k = self._keys
        keys = [k.job(job_id), k.job_slots(job_id), k.active_jobs, k.job_turn, k.queue_depth]
        args: list[str | bytes] = [job_id, kind, orjson.dumps(payload)]
        args += [orjson.dumps(c) for c in chunks]
        async with self._reachable():
            return bool(await self._enqueue_job(keys=keys, args=args))

    async def claim_chunk(
        self, owner: str, ttl_ms: int, kinds: Collection[str] | None = None
    ) -> ClaimedChunk | None:
        k = self._keys
        wanted = b"" if kinds is None else orjson.dumps(sorted(kinds))
        async with self._reachable():
            while True:
                # The script walks the active jobs: read them to declare their keys; it
                # answers _STALE if a job it was not given became active meanwhile.
                active = _members(await self._redis.zrange(k.active_jobs, 0, -1))
                keys = [k.active_jobs, k.job_turn]
                for job in active:
                    keys += [k.job(job), k.job_slots(job)]
                args: list[str | bytes | int] = [owner, ttl_ms, wanted, *active]
                got = await self._claim_chunk(keys=keys, args=args)
                if got != _STALE:
                    break
        if got is None:
            return None
        job_id, kind, index, payload, chunk, cursor, attempt = got
        return ClaimedChunk(
            job_id=job_id.decode(),
            kind=kind.decode(),
            index=int(index),
            payload=orjson.loads(payload),
            chunk=orjson.loads(chunk),
            cursor=None if cursor is None else orjson.loads(cursor),
            attempt=int(attempt),
        )

    async def heartbeat_chunk(
        self,
        job_id: str,
        index: int,
        owner: str,
        ttl_ms: int,
        cursor: dict[str, Any] | None = None,
    ) -> bool:
        keys = [self._keys.job(job_id), self._keys.job_slots(job_id)]
        saved = b"" if cursor is None else orjson.dumps(cursor)
        async with self._reachable():
            return bool(await self._heartbeat_chunk(keys=keys, args=[index, owner, ttl_ms, saved]))

    async def complete_chunk(self, job_id: str, index: int, owner: str) -> bool:
        k = self._keys
        keys = [k.job(job_id), k.job_slots(job_id), k.active_jobs, k.queue_depth]
        async with self._reachable():
            return bool(await self._complete_chunk(keys=keys, args=[job_id, index, owner]))

    async def queue_depth(self) -> int:
        async with self._reachable():
            depth = await self._redis.get(self._keys.queue_depth)
        return 0 if depth is None else int(depth)

    async def job_progress(self, job_id: str) -> JobProgress | None:
        keys = [self._keys.job(job_id), self._keys.job_slots(job_id)]
        async with self._reachable():
            got = await self._job_progress(keys=keys)
        return None if got is None else JobProgress(*(int(v) for v in got))

    # -- operation records --------------------------------------------------------------

    async def create_operation(self, record: OperationRecord) -> str | None:
        check_operation_state(record.state, new=True)
        k = self._keys
        keys = [k.operation(record.id), k.running(record.scope), k.operations, k.operation_seq]
        args: list[str | bytes] = [record.id, *_op_fields(record, _OP_TEXT + _OP_JSON)]
        args += ["cancel_requested", "1" if record.cancel_requested else "0"]
        async with self._reachable():
            holder = await self._create_operation(keys=keys, args=args)
        return None if holder is None else _text(holder)

    async def get_operation(self, op_id: str) -> OperationRecord | None:
        async with self._reachable():
            fields = await self._redis.hgetall(self._keys.operation(op_id))
        return _decode_operation(fields) if fields else None

    async def list_operations(self, limit: int = 100) -> list[OperationRecord]:
        if limit <= 0:
            return []
        k = self._keys
        async with self._reachable():
            # Operation records are never deleted: the newest ids name the hashes to read.
            ids = _members(
                await self._redis.zrange(k.operations, 0, min(limit, _MAX_LIMIT) - 1, desc=True)
            )
            if not ids:
                return []
            found = await self._list_operations(keys=[k.operation(i) for i in ids])
        return [_decode_operation(_pairs(flat)) for flat in found]

    async def save_operation(self, record: OperationRecord) -> bool:
        check_operation_state(record.state)
        k = self._keys
        fields = _op_fields(record, _OP_SAVED)
        async with self._reachable():
            while True:
                # Finishing frees the scope the operation was created with: read it to
                # declare its running key (the script answers _STALE if it differs).
                stored = await self._redis.hget(k.operation(record.id), "scope")
                scope = record.scope if stored is None else _text(stored)
                keys = [k.operation(record.id), k.running(scope)]
                args: list[str | bytes] = [record.id, scope, record.state, *fields]
                done = int(await self._save_operation(keys=keys, args=args))
                if done != _STALE:
                    return bool(done)

    async def request_cancel(self, op_id: str) -> OperationRecord | None:
        async with self._reachable():
            flat = await self._request_cancel(keys=[self._keys.operation(op_id)])
        return None if flat is None else _decode_operation(_pairs(flat))

    # -- hinted handoff -----------------------------------------------------------------

    async def put_hint(self, hint: Hint, max_per_node: int) -> int | None:
        k = self._keys
        keys = [k.hint_seq, k.hint_nodes, k.hint_flags]
        keys += [k.hint_queue(hint.node), k.hint_bodies(hint.node)]
        async with self._reachable():
            got = await self._put_hint(keys=keys, args=[hint.node, hint.to_blob(), max_per_node])
        return None if got is None else int(got)

    async def list_hints(self, node: str, limit: int) -> list[Hint]:
        if limit <= 0:
            return []
        k = self._keys
        async with self._reachable():
            ids = _members(await self._redis.zrange(k.hint_queue(node), 0, limit - 1))
            if not ids:
                return []
            blobs = await self._redis.hmget(k.hint_bodies(node), ids)
        # A hint deleted between the two reads is simply not listed.
        return [
            Hint.from_blob(int(i), blob if isinstance(blob, bytes) else blob.encode())
            for i, blob in zip(ids, blobs, strict=True)
            if blob
        ]

    async def delete_hints(self, node: str, ids: Collection[int]) -> int:
        if not ids:
            return 0
        keys = [self._keys.hint_queue(node), self._keys.hint_bodies(node)]
        async with self._reachable():
            return int(await self._delete_hints(keys=keys, args=sorted(set(ids))))

    async def hint_backlogs(self) -> dict[str, HintBacklog]:
        k = self._keys
        async with self._reachable():
            nodes = sorted(_members(await self._redis.smembers(k.hint_nodes)))
            if not nodes:
                return {}
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in nodes:
                    pipe.zcard(k.hint_queue(node))
                pipe.hgetall(k.hint_flags)
                *counts, raw_flags = await pipe.execute()
        flags = {_text(key): _text(value) for key, value in raw_flags.items()}
        backlogs = {}
        for node, count in zip(nodes, counts, strict=True):
            backlog = HintBacklog(
                pending=int(count),
                dropped=int(flags.get(f"dropped:{node}", 0)),
                overflowed=flags.get(f"overflowed:{node}") == "1",
            )
            if backlog.pending or backlog.overflowed or backlog.dropped:
                backlogs[node] = backlog
        return backlogs

    async def clear_hint_overflow(self, node: str) -> bool:
        async with self._reachable():
            was = await self._clear_hint_overflow(keys=[self._keys.hint_flags], args=[node])
        return bool(was)

    async def ping(self) -> None:
        async with self._reachable():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
        if isinstance(self._redis, Redis):
            await self._redis.connection_pool.disconnect()
