"""Importing a Meilisearch dump (`dump-import`): one operation, its documents in chunks.

Where the bytes live. `POST /_miroir/dumps/import` streams the body, still compressed,
into a file of this pod's spool directory (`operations.dump_spool_dir`) while a first pass
over the same bytes (`core.dumpreading.DumpScan`) collects everything but the documents:
index metadata, settings, keys, and each index's line count. Nothing is unpacked to disk
and nothing is held whole in memory. The summary goes to the store; the documents stay in
the spooled file, read again (streaming, from its first byte) by each chunk.

Who can resume what. The operation's steps need only the store, so any pod drives them
and takes over when its pod dies. The document chunks need the file: they are queued as
job kind `dump-import@<spool id>`, where the spool id is written once into the spool
directory, so exactly the pods that see that directory claim them. With a directory of
the pod's own (the default) that is the receiving pod alone: a chunk it was running
resumes from its cursor once the pod is back with the same directory (a restart, a
persistent volume); if the pod is gone for good, the chunks wait until the operation is
canceled. With a directory every pod mounts (a ReadWriteMany volume) any pod resumes any
chunk from its cursor.

Steps: `check` (the dump parsed, no index already there, primary keys known), `indexes`
(created with their primary keys, then their settings), `keys` (recreated with their uids:
the same master key gives the same key values), `documents` (chunks of
`dump_chunk_documents` lines, routed per shard exactly like client writes), `finish`.
Failure or cancel deletes the indexes and keys the operation created (each recorded in the
store before it is created, so a new holder knows them too) once its chunks stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from miroir_proxy.config import MiroirConfig
from miroir_proxy.coordination.queueing import ChunkContext, Handler
from miroir_proxy.core.dumpreading import DumpScan, DumpSummary, document_lines, invalid_dump
from miroir_proxy.core.errors import CODES, MiroirError
from miroir_proxy.core.pk import check_reserved_fields, resolve_primary_key
from miroir_proxy.dispatch.broadcast import NodeOutcome, NodeRefused, broadcast, read_any
from miroir_proxy.dispatch.catalog import with_shard_displayed, with_shard_field
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.dispatch.writes import document_ids, route_batch, write_stamp
from miroir_proxy.state.store import Store

from .copying import CopyFailed, ShardIO, Throttle
from .engine import OperationContext, StepFn
from .groups import copy_settings, settle_chunks

log = logging.getLogger(__name__)

KIND = "dump-import"
JOB_PREFIX = "dump-import@"
SPOOL_ID_FILE = "spool-id"
RECORD_TTL_S = 30 * 86_400
MAX_ROUNDS = 20
# How often the operation looks at its chunks: every look reads the store once per chunk.
JOB_POLL_S = 0.5
RECEIVE_PIECE = 1 << 18
READ_PIECE = 1 << 16
APPLIED_POLL_S = (0.01, 0.1)  # first and longest pause between checks of a batch's tasks
# Batches a chunk keeps queued on the nodes beyond the one it waits for, so a node never
# idles between batches (client writes are enqueued all at once); a restart resends them.
IN_FLIGHT_BATCHES = 3
# Settings a dump may carry that Miroir applies; any other key is ignored, as Meilisearch's
# reader ignores keys it does not know.
SETTINGS = frozenset(
    (  # noqa: SIM905 - one line per key would be 20 lines
        "displayedAttributes searchableAttributes filterableAttributes sortableAttributes "
        "distinctAttribute rankingRules stopWords separatorTokens nonSeparatorTokens dictionary "
        "synonyms typoTolerance faceting pagination proximityPrecision searchCutoffMs "
        "localizedAttributes facetSearch prefixSearch embedders"
    ).split()
)


# --- the spool --------------------------------------------------------------------------


def spool_directory(config: MiroirConfig) -> Path:
    configured = config.operations.dump_spool_dir
    if configured is not None:
        return Path(configured)
    return Path(config.state_path).parent / "miroir-dumps"


class Spool:
    """This pod's directory of received dumps, and the id every pod seeing it shares."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.id = _spool_id(self.directory / SPOOL_ID_FILE)

    @property
    def job_kind(self) -> str:
        return JOB_PREFIX + self.id

    def path(self, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise ValueError(f"not a spool file name: {name!r}")
        return self.directory / name

    async def receive(self, body: AsyncIterator[bytes]) -> tuple[str, DumpSummary | MiroirError]:
        """Write `body` to a new spool file while scanning it: the file's name, and the
        dump's summary or what is wrong with it. The file is removed if receiving fails."""
        name = f"{int(time.time())}-{secrets.token_hex(8)}.dump"
        path = self.path(name)
        scan = DumpScan()
        error: MiroirError | None = None
        try:
            with path.open("xb") as file:
                async for piece in body:
                    error = await asyncio.to_thread(_take, file, scan, piece, error)
            if scan.reader.compressed_bytes == 0:
                raise MiroirError("missing_payload", "A dump payload is missing.")
            if error is None:
                try:
                    return name, scan.summary()
                except MiroirError as e:
                    error = e
            return name, error
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    async def sweep(self, store: Store) -> None:
        """Remove this spool's files of finished imports: the pod that finished an import
        removes its file only if it sees this directory."""
        for record in await store.list_operations():
            if record.kind == KIND and record.finished and record.params.get("spool") == self.id:
                self.remove(str(record.params["file"]))


def _take(
    file: BinaryIO, scan: DumpScan, piece: bytes, error: MiroirError | None
) -> MiroirError | None:
    file.write(piece)
    if error is None:
        try:
            scan.feed(piece)
        except MiroirError as e:
            return e  # the rest is still received, so the client gets its answer
    return error


def _spool_id(path: Path) -> str:
    try:
        with path.open("x") as file:
            file.write(secrets.token_hex(8))
    except FileExistsError:
        pass
    for _ in range(50):  # another pod may be writing it right now
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.01)
    raise RuntimeError(f"{path} stays empty")


# --- what the operation knows ------------------------------------------------------------


def summary_key(file: str) -> str:
    return f"dump-import:{file}:summary"


def summary_document(summary: DumpSummary | MiroirError) -> bytes:
    if isinstance(summary, MiroirError):
        return orjson.dumps({"error": {"code": summary.code, "message": summary.message}})
    return orjson.dumps(dataclasses.asdict(summary))


def import_params(spool: Spool, file: str, summary: DumpSummary | MiroirError) -> dict[str, Any]:
    params: dict[str, Any] = {"spool": spool.id, "file": file}
    if isinstance(summary, DumpSummary):
        params["indexes"] = [index.uid for index in summary.indexes]
        params["documents"] = summary.documents
        params["keys"] = len(summary.keys)
    return params


def _error(raw: Mapping[str, Any]) -> MiroirError:
    return MiroirError(str(raw["code"]), str(raw["message"]))


async def _summary(ctx: OperationContext, data: Mapping[str, Any]) -> dict[str, Any]:
    raw = await ctx.store.kv_get(summary_key(str(data["file"])))
    if raw is None:
        raise invalid_dump("The received dump's summary is gone from the state store.")
    summary: dict[str, Any] = orjson.loads(raw)
    if "error" in summary:
        raise _error(summary["error"])
    return summary


def _created_key(op_id: str, what: str) -> str:
    return f"{op_id}:dump:created:{what}"


async def _created(ctx: OperationContext, what: str) -> list[str]:
    raw = await ctx.store.kv_get(_created_key(ctx.record.id, what))
    return [] if raw is None else list(orjson.loads(raw))


async def _remember_created(ctx: OperationContext, what: str, name: str) -> None:
    """Record `name` as created by this operation before creating it, so a rollback by any
    pod deletes it."""
    names = await _created(ctx, what)
    if name not in names:
        value = orjson.dumps([*names, name])
        await ctx.store.kv_set(_created_key(ctx.record.id, what), value, RECORD_TTL_S)


def _chunk_key(op_id: str, chunk: Mapping[str, Any]) -> str:
    return f"{op_id}:dump:chunk:{chunk['uid']}:{chunk['start']}"


def _stop_key(op_id: str) -> str:
    return f"{op_id}:dump:stop"


# --- the operation -------------------------------------------------------------------------


class ImportDumpOperation:
    name = KIND

    def __init__(self, spool: Spool | None = None) -> None:
        self._spool = spool

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [
            ("check", self._check),
            ("indexes", self._indexes),
            ("keys", self._keys),
            ("documents", self._documents),
            ("finish", self._finish),
        ]

    async def _check(self, ctx: OperationContext, data: dict[str, Any]) -> dict[str, Any]:
        summary = await _summary(ctx, data)
        plan = []
        for index in summary["indexes"]:
            uid = index["uid"]
            if await ctx.catalog.get(uid) is not None:
                raise MiroirError("index_already_exists", f"Index `{uid}` already exists.")
            try:
                pk = resolve_primary_key(index["primary_key"], None, index["first_document"])
            except MiroirError as e:
                raise MiroirError(e.code, f"Dump index `{uid}`: {e.message}") from e
            plan.append({"uid": uid, "dir": index["directory"], "primaryKey": pk})
        return {**data, "plan": plan}

    async def _indexes(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        summary = await _summary(ctx, data)
        io = ShardIO(ctx.cluster, copy_settings(ctx.config))
        created = await _created(ctx, "indexes")
        for planned, index in zip(data["plan"], summary["indexes"], strict=True):
            uid = planned["uid"]
            await ctx.check_canceled()
            if uid not in created:
                await _remember_created(ctx, "indexes", uid)
                body = {"uid": uid, "primaryKey": planned["primaryKey"]}
                try:
                    made = await ctx.catalog.create(uid, body)
                except NodeRefused as e:
                    raise _refused(f"The dump's index `{uid}`", e) from e
                if made is None:
                    raise MiroirError("index_already_exists", f"Index `{uid}` already exists.")
                for ref in [*made[1], *made[2]]:
                    if ref["uid"] is None:
                        raise CopyFailed(
                            f"node {ref['node']} did not create `{uid}`: {ref['error']}"
                        )
                    await io.wait_task(ref["node"], ref["uid"])
            await apply_index_settings(ctx.cluster, io, uid, index["settings"])
            ctx.catalog.invalidate(uid)
            await ctx.report(None, indexesCreated=data["plan"].index(planned) + 1)

    async def _keys(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        summary = await _summary(ctx, data)
        recreated, skipped = 0, 0
        now = datetime.now(UTC)
        for key in summary["keys"]:
            body = _key_body(key)
            if body is None or (body["expiresAt"] and _date(body["expiresAt"]) <= now):
                skipped += 1  # Meilisearch refuses a key that already expired
                continue
            if await _key_exists(ctx.cluster, body["uid"]):
                if body["uid"] not in await _created(ctx, "keys"):
                    skipped += 1  # the cluster's own key with that uid stays as it is
                    continue
            else:
                await _remember_created(ctx, "keys", body["uid"])
            outcomes = await broadcast(ctx.cluster, "POST", "/keys", json_body=body)
            for outcome in outcomes:
                _check_key_created(outcome, body["uid"])
            recreated += 1
        await ctx.report(None, keysRecreated=recreated, keysSkipped=skipped)

    async def _documents(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        summary = await _summary(ctx, data)
        size = ctx.config.operations.dump_chunk_documents
        chunks = [
            {
                "uid": planned["uid"],
                "dir": planned["dir"],
                "primaryKey": planned["primaryKey"],
                "start": start,
                "end": min(start + size, index["lines"]),
            }
            for planned, index in zip(data["plan"], summary["indexes"], strict=True)
            for start in range(0, index["lines"], size)
        ]
        total = sum(c["end"] - c["start"] for c in chunks)
        await ctx.report(None, done=0, total=total, unit="documents")
        if chunks:
            await _run_import_chunks(ctx, data, chunks, total)

    async def _finish(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        if self._spool is not None and self._spool.id == data["spool"]:
            self._spool.remove(str(data["file"]))

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        op_id = ctx.record.id
        await ctx.store.kv_set(_stop_key(op_id), b"1", RECORD_TTL_S)
        await settle_chunks(ctx, ("import",))  # a late batch must not re-create an index
        io = ShardIO(ctx.cluster, copy_settings(ctx.config))
        for uid in await _created(ctx, "indexes"):
            outcomes = await broadcast(ctx.cluster, "DELETE", f"/indexes/{uid}")
            for ref in (o.task_ref() for o in outcomes):
                if ref["uid"] is not None:
                    try:
                        await io.wait_task(ref["node"], ref["uid"])
                    except CopyFailed as e:
                        log.warning("%s: deleting %s: %s", op_id, uid, e)
            await ctx.catalog.forget(uid)
        for uid in await _created(ctx, "keys"):
            await broadcast(ctx.cluster, "DELETE", f"/keys/{uid}")
        await self._finish(ctx, data)


async def apply_index_settings(
    cluster: Cluster, io: ShardIO, uid: str, settings: Mapping[str, Any]
) -> None:
    """The dump's settings of `uid` on every node, each node's task waited for.

    The one place the import applies settings: `null` and a missing key both mean the
    default, unknown keys are ignored, and `_miroir_shard` stays filterable and displayed
    as for a client's update. The index was created by this operation, so a failure needs
    no per-node undo: the operation's rollback deletes the index.
    """
    update = {k: v for k, v in settings.items() if k in SETTINGS and v is not None}
    if "filterableAttributes" in update:
        update["filterableAttributes"] = with_shard_field(update["filterableAttributes"])
    if "displayedAttributes" in update:
        update["displayedAttributes"] = with_shard_displayed(update["displayedAttributes"])
    if not update:
        return
    for group in cluster.topology.groups:
        for node in group.node_ids:
            try:
                await io.change(node, "PATCH", f"/indexes/{uid}/settings", update)
            except CopyFailed as e:
                if " 400:" in str(e) or " failed:" in str(e):
                    raise MiroirError(
                        "miroir_invalid_dump", f"The dump's settings of index `{uid}`: {e}"[:800]
                    ) from e
                raise


def _refused(what: str, refusal: NodeRefused) -> MiroirError:
    """A node's refusal of something the dump holds (an invalid index uid, say), with the
    node's code when Miroir knows it."""
    try:
        answer = orjson.loads(refusal.response.body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    code, message = str(answer.get("code", "")), str(answer.get("message", refusal))
    if code not in CODES:
        code = "miroir_invalid_dump"
    return MiroirError(code, f"{what}: {message}"[:800])


def _check_key_created(outcome: NodeOutcome, uid: str) -> None:
    """A node's answer to a key's creation: a refusal of the dump's key fails the import,
    an unreachable node is retried."""
    response = outcome.response
    if outcome.accepted or (response is not None and b"api_key_already_exists" in response.body):
        return
    if response is not None and 400 <= response.status < 500:
        detail = response.body[:300].decode("utf-8", "replace")
        raise MiroirError(
            "miroir_invalid_dump",
            f"The dump's key `{uid}` was refused by node `{outcome.target.node}`: {detail}",
        )
    raise CopyFailed(f"node {outcome.target.node} did not create key {uid}: {outcome.failure}")


def _key_body(key: Mapping[str, Any]) -> dict[str, Any] | None:
    uid = key.get("uid")
    if not isinstance(uid, str) or not isinstance(key.get("actions"), list):
        return None
    return {
        "uid": uid,
        "name": key.get("name"),
        "description": key.get("description"),
        "actions": key["actions"],
        "indexes": key.get("indexes") or [],
        "expiresAt": key.get("expires_at"),
    }


def _date(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def _key_exists(cluster: Cluster, uid: str) -> bool:
    response = await read_any(cluster, "GET", f"/keys/{uid}")
    return response.ok


async def _run_import_chunks(
    ctx: OperationContext, data: Mapping[str, Any], chunks: list[dict[str, Any]], total: int
) -> None:
    """Queue the chunks not done yet as a numbered round and follow them; a chunk the queue
    gave up on (its handler failed on every claim) is queued again in the next round, and
    a chunk that found bad input fails the operation."""
    op_id = ctx.record.id
    kind = JOB_PREFIX + str(data["spool"])
    payload = {"operation": op_id, "file": data["file"]}
    for round_ in range(MAX_ROUNDS):
        records = await _chunk_records(ctx.store, op_id, chunks)
        pending = [c for c, r in zip(chunks, records, strict=True) if not r.get("done")]
        if not pending:
            return
        job_id = f"{op_id}:import:{round_}"
        await ctx.pod.queue.enqueue(job_id, kind, pending, payload)
        while True:
            await ctx.check_canceled()
            progress = await ctx.store.job_progress(job_id)
            if progress is None:
                raise RuntimeError(f"job {job_id} vanished")
            records = await _chunk_records(ctx.store, op_id, chunks)
            for record in records:
                if "error" in record:
                    raise _error(record["error"])
            done = sum(int(r.get("documents", 0)) for r in records)
            if done != ctx.record.progress.get("done"):
                await ctx.report(None, done=done, total=total, unit="documents")
            if progress.finished:
                break
            await asyncio.sleep(JOB_POLL_S)
    raise CopyFailed(f"dump documents could not be imported in {MAX_ROUNDS} rounds")


async def _chunk_records(
    store: Store, op_id: str, chunks: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    records = []
    for chunk in chunks:
        raw = await store.kv_get(_chunk_key(op_id, chunk))
        records.append({} if raw is None else orjson.loads(raw))
    return records


# --- the chunks --------------------------------------------------------------------------


class _BadDocument(Exception):
    def __init__(self, error: MiroirError) -> None:
        super().__init__(error.message)
        self.error = error


def _parse(
    uid: str, primary_key: str, lines: list[tuple[int, bytes]]
) -> tuple[list[dict[str, Any]], list[Any]]:
    filled = [line for line in lines if line[1].strip()]
    try:  # one call for the batch; line by line only to name a bad line
        documents = orjson.loads(b"[" + b",".join(line for _, line in filled) + b"]")
    except orjson.JSONDecodeError:
        documents = None
    if (
        documents is None
        or len(documents) != len(filled)
        or any(type(d) is not dict for d in documents)
    ):
        documents = [_document(uid, number, line) for number, line in filled]
    try:
        for document in documents:
            check_reserved_fields(document)
        ids = document_ids(documents, primary_key)
    except MiroirError as e:
        raise _BadDocument(MiroirError(e.code, f"Dump index `{uid}`: {e.message}")) from e
    return documents, ids


def _next_batch(
    batches: Iterator[list[tuple[int, bytes]]], uid: str, primary_key: str
) -> tuple[int, list[dict[str, Any]], list[Any]] | None:
    """The next batch's documents and ids, and the line after it (None at the end)."""
    try:
        lines = next(batches, None)
    except MiroirError as e:  # the spooled file cannot be read as a dump any more
        raise _BadDocument(e) from e
    if lines is None:
        return None
    documents, ids = _parse(uid, primary_key, lines)
    return lines[-1][0] + 1, documents, ids


def _document(uid: str, number: int, line: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise _BadDocument(
            invalid_dump(f"Dump index `{uid}`, document line {number + 1} is not JSON: {e}.")
        ) from e
    if type(document) is not dict:
        raise _BadDocument(
            invalid_dump(f"Dump index `{uid}`, document line {number + 1} is not an object.")
        )
    return document


def import_handler(store: Store, cluster: Cluster, config: MiroirConfig, spool: Spool) -> Handler:
    """The Mode C handler of this spool's import chunks: route lines `[start, end)` of one
    index's documents to their shards, a batch at a time, the cursor after each batch."""
    settings = copy_settings(config)
    batch_size = settings.page_size

    async def stopped(op_id: str) -> bool:
        record = await store.get_operation(op_id)
        if record is None or record.finished or record.cancel_requested:
            return True
        return await store.kv_get(_stop_key(op_id)) is not None

    async def handle(ctx: ChunkContext) -> None:
        op_id = str(ctx.payload["operation"])
        chunk = ctx.chunk
        uid, pk = str(chunk["uid"]), str(chunk["primaryKey"])
        record_key = _chunk_key(op_id, chunk)
        cursor = ctx.cursor or {}
        line = int(cursor.get("line", chunk["start"]))
        imported = int(cursor.get("documents", 0))
        meta = await store.get_index(uid)
        if meta is None or await stopped(op_id):
            return
        io = ShardIO(cluster, settings)
        throttle = Throttle(settings.docs_per_s)
        path = spool.path(str(ctx.payload["file"]))
        params = {"primaryKey": pk}
        # Batches sent but not yet known applied, oldest first; the cursor moves past a
        # batch only once every replica applied it.
        in_flight: deque[tuple[list[tuple[str, int]], dict[str, Any]]] = deque()

        async def fail(error: MiroirError) -> None:
            found = {"code": error.code, "message": error.message}
            await store.kv_set(record_key, orjson.dumps({"error": found}), RECORD_TTL_S)

        try:
            file = path.open("rb")
        except FileNotFoundError:
            await fail(MiroirError("internal", f"The received dump `{path.name}` is gone."))
            return
        with file:
            batches = document_lines(
                file.read, str(chunk["dir"]), line, int(chunk["end"]), batch_size, READ_PIECE
            )
            while True:
                try:
                    batch = await asyncio.to_thread(_next_batch, batches, uid, pk)
                except _BadDocument as e:
                    await fail(e.error)
                    return
                if batch is None:
                    break
                next_line, documents, ids = batch
                await throttle.take(len(documents))
                if await stopped(op_id):
                    return
                targets = route_batch(cluster.layout, documents, ids, meta.shards, write_stamp())
                bodies = {node: target.body or b"[]" for node, target in targets.items()}
                sent = await io.send_each(f"/indexes/{uid}/documents", params, bodies)
                imported += len(documents)
                in_flight.append((sent, {"line": next_line, "documents": imported}))
                if len(in_flight) > IN_FLIGHT_BATCHES:
                    await _applied(io, store, ctx, record_key, *in_flight.popleft())
        while in_flight:
            await _applied(io, store, ctx, record_key, *in_flight.popleft())
        await store.kv_set(
            record_key, orjson.dumps({"documents": imported, "done": True}), RECORD_TTL_S
        )

    return handle


async def _applied(
    io: ShardIO,
    store: Store,
    ctx: ChunkContext,
    record_key: str,
    sent: list[tuple[str, int]],
    cursor: dict[str, Any],
) -> None:
    """Wait until every replica applied a batch, then move the cursor past it."""
    await _wait_applied(io, sent)
    await ctx.checkpoint(cursor)
    await store.kv_set(record_key, orjson.dumps({"documents": cursor["documents"]}), RECORD_TTL_S)


async def _wait_applied(io: ShardIO, sent: list[tuple[str, int]]) -> None:
    """Poll the batch's node tasks together, patiently: the next batch is already queued
    on every node, so noticing this one a little late costs the nodes nothing, while
    polling each task every few milliseconds cost the proxy more CPU than the routing."""
    pending = list(sent)
    pause = APPLIED_POLL_S[0]
    deadline = time.monotonic() + io.settings.task_timeout_ms / 1000
    while pending:
        await asyncio.sleep(pause)
        pause = min(pause * 2, APPLIED_POLL_S[1])
        async with asyncio.TaskGroup() as group:
            checks = [group.create_task(io.task_status(node, uid)) for node, uid in pending]
        pending = [task for task, check in zip(pending, checks, strict=True) if not check.result()]
        if pending and time.monotonic() > deadline:
            node, uid = pending[0]
            raise CopyFailed(f"node {node} task {uid} still not applied")
