"""Dumps out: `POST /dumps` writes one Meilisearch V6 dump of the whole cluster.

The dump is an operation (`dump-export`, scope `dump:<uid>`) behind a Miroir task of type
`dumpCreation` that no node runs (`TaskRegistry.enqueue_for_operation`): the operation's holder
moves the task to `processing`, then `succeeded` with `details.dumpUid`, or `failed`.

What the dump holds is what a client of Miroir sees: the indexes of the catalog (aliases
are not indexes), each read once, shard by shard, from one up-to-date replica (a covering
set; a shard whose replica fails is read again from the start on another replica), with
every `_miroir_*` field stripped; each index's settings as `GET /settings` shows them; the
keys as `GET /keys` lists them. Documents carry their `_vectors` when the index has embedders,
so an import does not embed them again. Writes that land during the dump may or may not
be in it (Meilisearch's own dump is a snapshot; ours is read page by page).

Dump files live on the disk of the pod that ran the operation (`dumps.dir`); the store
records which pod and path, so `GET /_miroir/dumps/{uid}` on another pod names the pod
that holds it instead of failing obscurely.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from miroir_proxy.config import MiroirConfig
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.pk import RESERVED_PREFIX
from miroir_proxy.dispatch import taskstatus
from miroir_proxy.dispatch.broadcast import read_any
from miroir_proxy.dispatch.catalog import SHARD_FIELD, visible
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state import kvkeys
from miroir_proxy.state.store import IndexMeta, Store

from .copying import fresh_sources
from .dumpwriting import (
    DUMP_VERSION,
    SUFFIX,
    ArchiveWriter,
    StagedDocuments,
    dump_key,
    dump_uid,
    jsonl,
    rfc3339,
)
from .engine import Canceled, OperationContext, StepFn

log = logging.getLogger(__name__)

KIND = "dump-export"
TASK_TYPE = "dumpCreation"
FOREVER_S = 100 * 365 * 86_400
# The store entry of a uid taken by a dump still being written (`find` does not know it yet).
_RESERVED = b"{}"
KEYS_PAGE = 100_000
# What `metadata.json` says when no node tells its version (Meilisearch does not check it).
DEFAULT_DB_VERSION = "1.13.0"


def dumps_dir(config: MiroirConfig) -> Path:
    """`dumps.dir`; by default the pod's data directory (next to its SQLite state file), or
    with a Redis store (no data directory) the temporary directory: the only writable one
    of a proxy pod with a read-only root filesystem."""
    if config.dumps.dir is not None:
        return Path(config.dumps.dir)
    if config.store is None:
        return Path(config.state_path).parent / "dumps"
    return Path(tempfile.gettempdir()) / "miroir-dumps"


def scope(uid: str) -> str:
    return f"dump:{uid}"


@dataclasses.dataclass(frozen=True, slots=True)
class DumpRecord:
    """Where a finished dump is: which pod wrote it, at which path, how many bytes."""

    uid: str
    pod: str
    path: str
    size: int

    def to_bytes(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> DumpRecord:
        data = orjson.loads(raw)
        return cls(str(data["uid"]), str(data["pod"]), str(data["path"]), int(data["size"]))


async def reserve_uid(store: Store, now: datetime | None = None) -> str:
    """A dump uid no other dump has: the moment's, moved on by a millisecond while taken."""
    moment = now or datetime.now(UTC)
    for _ in range(1_000):
        uid = dump_uid(moment)
        if await store.kv_set(kvkeys.dump(uid), _RESERVED, FOREVER_S, only_new=True):
            return uid
        moment += timedelta(milliseconds=1)
    raise MiroirError("internal", "No free dump uid was found.")


async def find(store: Store, uid: str) -> DumpRecord | None:
    raw = await store.kv_get(kvkeys.dump(uid))
    if raw is None or raw == _RESERVED:
        return None
    return DumpRecord.from_bytes(raw)


# --- reading the cluster ----------------------------------------------------------------


def _clean(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if not k.startswith(RESERVED_PREFIX)}


def shard_sources(cluster: Cluster, shards: int, shard: int) -> list[str]:
    """The replicas of `shard` to read it from: the covering set's choice first, then
    every other replica of every active group, healthy ones first."""
    chosen = [a.node_id for a in cluster.covering(shards, [shard]).assignments]
    replicas = [
        node_id
        for group in cluster.topology.search_groups()
        for node_id in cluster.placement(group, shards).replicas[shard]
    ]
    ordered = list(dict.fromkeys([*chosen, *replicas]))
    return sorted(ordered, key=lambda node_id: not cluster.is_healthy(node_id))


SafePoint = Callable[[], Awaitable[None]]
# (indexes done, documents written so far)
Progress = Callable[[int, int], Awaitable[None]]


class SourceFailed(Exception):
    """A replica could not serve a page; the shard is read again from another one."""


@dataclasses.dataclass(slots=True)
class Exporter:
    """Reads the cluster and writes one archive (see the module docstring)."""

    cluster: Cluster
    store: Store
    page_size: int
    check: SafePoint  # raises `Canceled` when the dump must stop
    documents: int = 0

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await read_any(self.cluster, method, path, **kwargs)
        if not response.ok:
            raise MiroirError("internal", f"`{method} {path}` answered {response.status}.")
        return response.json()

    async def _db_version(self) -> str:
        try:
            version = (await self._call("GET", "/version")).get("pkgVersion")
        except (MiroirError, NodeError, AttributeError):
            return DEFAULT_DB_VERSION
        return version if isinstance(version, str) else DEFAULT_DB_VERSION

    async def keys(self) -> list[dict[str, Any]]:
        listed = await self._call("GET", "/keys", params={"limit": KEYS_PAGE})
        return [dump_key(key) for key in listed.get("results") or []]

    async def index_metadata(self, name: str, meta: IndexMeta) -> dict[str, Any] | None:
        """`metadata.json` of the index clients call `name`; None when the nodes do not
        have it (its creation failed, or it was just deleted): clients do not see it."""
        response = await read_any(self.cluster, "GET", f"/indexes/{meta.uid}")
        if response.status == 404:
            return None
        if not response.ok:
            raise MiroirError("internal", f"`GET /indexes/{meta.uid}` answered {response.status}.")
        node = response.json()
        return {
            "uid": name,
            "primaryKey": meta.primary_key or node.get("primaryKey"),
            "createdAt": node.get("createdAt") or meta.created_at,
            "updatedAt": node.get("updatedAt") or meta.created_at,
        }

    async def settings(self, meta: IndexMeta) -> dict[str, Any]:
        return visible(await self._call("GET", f"/indexes/{meta.uid}/settings"))

    async def _page(
        self, node: str, meta: IndexMeta, shard: int, offset: int, vectors: bool
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "filter": f"{SHARD_FIELD} = {shard}",
            "offset": offset,
            "limit": self.page_size,
        }
        if vectors:
            body["retrieveVectors"] = True
        try:
            response = await self.cluster.call(
                node,
                "POST",
                f"/indexes/{meta.uid}/documents/fetch",
                json_body=body,
                timeout_ms=self.cluster.config.timeouts.node_read_ms,
            )
            results = response.json().get("results") if response.ok else None
        except (NodeError, AttributeError) as e:
            raise SourceFailed(f"{node}: {e}") from e
        if not isinstance(results, list):
            raise SourceFailed(f"{node}: HTTP {response.status}")
        return results

    async def shard(
        self, staged: StagedDocuments, meta: IndexMeta, shard: int, vectors: bool
    ) -> None:
        reasons = []
        staged.mark()
        sources = fresh_sources(self.store, lambda: shard_sources(self.cluster, meta.shards, shard))
        for node in await sources():
            offset = 0
            try:
                while True:
                    page = await self._page(node, meta, shard, offset, vectors)
                    await asyncio.to_thread(staged.write, [_clean(d) for d in page])
                    offset += len(page)
                    if len(page) < self.page_size:
                        return
            except SourceFailed as e:
                reasons.append(str(e))
                await asyncio.to_thread(staged.rewind)
        raise MiroirError(
            "miroir_shard_unavailable",
            f"No replica of shard {shard} of `{meta.uid}` could be read: "
            + ("; ".join(reasons) or "no live replica is up to date"),
        )

    async def index(
        self,
        archive: ArchiveWriter,
        name: str,
        meta: IndexMeta,
        staging: Path,
        report: Callable[[int], Awaitable[None]],
    ) -> None:
        """Index `meta.uid` on the nodes, written as the index clients call `name`."""
        metadata = await self.index_metadata(name, meta)
        if metadata is None:
            return
        base = f"indexes/{name}"
        settings = await self.settings(meta)
        vectors = bool(settings.get("embedders"))
        staged = await asyncio.to_thread(StagedDocuments, staging / f"{name}.jsonl")
        try:
            for shard in range(meta.shards):
                await self.check()
                await self.shard(staged, meta, shard, vectors)
                await report(staged.count)
            await asyncio.to_thread(archive.directory, base)
            await asyncio.to_thread(archive.add_json, f"{base}/metadata.json", metadata)
            await asyncio.to_thread(archive.add_json, f"{base}/settings.json", settings)
            await asyncio.to_thread(archive.add_file, f"{base}/documents.jsonl", staged.file)
        finally:
            await asyncio.to_thread(staged.close)
        self.documents += staged.count

    async def write(self, path: Path, indexes: Sequence[IndexMeta], report: Progress) -> None:
        """Write the whole dump to `path` (replaced if it exists); a failure leaves a
        truncated file the caller deletes."""
        staging = path.with_name(path.name + ".staging")
        await asyncio.to_thread(staging.mkdir, parents=True, exist_ok=True)
        try:
            await self._write(path, indexes, report, staging)
        finally:
            await asyncio.to_thread(_remove, staging)

    async def _write(
        self, path: Path, indexes: Sequence[IndexMeta], report: Progress, staging: Path
    ) -> None:
        metadata = {
            "dumpVersion": DUMP_VERSION,
            "dbVersion": await self._db_version(),
            "dumpDate": rfc3339(datetime.now(UTC)),
        }
        keys = await self.keys()
        archive = await asyncio.to_thread(ArchiveWriter, path)
        with archive:
            await asyncio.to_thread(archive.add_json, "metadata.json", metadata)
            await asyncio.to_thread(archive.add_bytes, "keys.jsonl", jsonl(keys))
            await asyncio.to_thread(archive.directory, "tasks")
            await asyncio.to_thread(archive.add_bytes, "tasks/queue.jsonl", b"")
            await asyncio.to_thread(archive.directory, "indexes")
            for position, meta in enumerate(indexes):

                async def progress(count: int, position: int = position) -> None:
                    await report(position, self.documents + count)

                name = self.cluster.topology.client_name(meta.uid) or meta.uid
                await self.index(archive, name, meta, staging, progress)


# --- the operation ----------------------------------------------------------------------


async def _task_check(ctx: OperationContext, task_uid: int) -> None:
    """A safe point: stop when the operation or its task (a client) was canceled."""
    await ctx.check_canceled()
    task = await ctx.store.get_task(task_uid)
    if task is not None and task.finished:
        raise Canceled(ctx.record.id)


async def _move_task(ctx: OperationContext, task_uid: int, **finish: Any) -> None:
    task = await ctx.store.get_task(task_uid)
    if task is None:
        return
    now = datetime.now(UTC)
    changed = (
        taskstatus.finish_operation_task(task, now, **finish)
        if finish
        else taskstatus.start_operation_task(task, now)
    )
    if changed:
        await ctx.store.save_task(task)


class DumpExportOperation:
    name = KIND

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [("write", self._write), ("publish", self._publish)]

    async def _write(self, ctx: OperationContext, data: dict[str, Any]) -> Mapping[str, Any]:
        uid, task_uid = str(data["dumpUid"]), int(data["taskUid"])
        await _move_task(ctx, task_uid)
        directory = dumps_dir(ctx.config)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        final = directory / f"{uid}{SUFFIX}"
        partial = directory / f"{uid}{SUFFIX}.part"
        # What clients see: a resharded index under its name, its hidden copies left out.
        topology = ctx.cluster.topology
        indexes = [m for m in await ctx.catalog.indexes() if topology.client_name(m.uid)]

        async def report(done: int, documents: int) -> None:
            await ctx.report(done=done, total=len(indexes), unit="indexes", documents=documents)

        exporter = Exporter(
            ctx.cluster, ctx.store, ctx.config.dumps.page_size, lambda: _task_check(ctx, task_uid)
        )
        try:
            await exporter.write(partial, indexes, report)
        except BaseException:
            await asyncio.to_thread(_remove, partial)
            raise
        await asyncio.to_thread(partial.replace, final)
        size = (await asyncio.to_thread(final.stat)).st_size
        await report(len(indexes), exporter.documents)
        log.info("dump %s: %d documents, %d bytes at %s", uid, exporter.documents, size, final)
        return {**data, "path": str(final), "pod": ctx.pod.pod_id, "size": size}

    async def _publish(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        uid = str(data["dumpUid"])
        record = DumpRecord(uid, str(data["pod"]), str(data["path"]), int(data["size"]))
        await ctx.store.kv_set(kvkeys.dump(uid), record.to_bytes(), FOREVER_S)
        await _move_task(ctx, int(data["taskUid"]), details={"dumpUid": uid})

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        uid, task_uid = str(data["dumpUid"]), int(data["taskUid"])
        directory = dumps_dir(ctx.config)
        for name in (f"{uid}{SUFFIX}", f"{uid}{SUFFIX}.part"):
            await asyncio.to_thread(_remove, directory / name)
        error = MiroirError(
            "dump_process_failed",
            f"The dump `{uid}` could not be written: see `GET /_miroir/operations/"
            f"{ctx.record.id}` for why.",
        )
        task = await ctx.store.get_task(task_uid)
        if task is None or task.finished:
            return
        now = datetime.now(UTC)
        if ctx.record.cancel_requested:
            taskstatus.finish_canceled(task, None, now)
        else:
            taskstatus.finish_operation_task(task, now, error=error.to_dict())
        await ctx.store.save_task(task)


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink(missing_ok=True)
        path.rmdir()
    else:
        path.unlink(missing_ok=True)
