"""Anti-entropy: the replicas of every shard converge to Miroir's version of each document.

One pass compares, shard by shard, every node that holds the shard (in every replica
group). Each replica is paged with `POST /indexes/{uid}/documents/fetch` and
`filter: _miroir_shard = N` and summarized while it streams in (`core.convergence`:
primary key, content digest, stamps, pk-hash buckets); buckets that differ narrow the
comparison to their documents, and `core.convergence.decide` applies the version rule:
the highest `_miroir_updated_at` wins (a copy without one, written behind Miroir's back,
loses to any stamped copy); copies altered behind Miroir's back (same stamp, other
content) are outvoted by the majority; a delete through Miroir (tombstone, clear-all
watermark or filter, `dispatch.deletions`) newer than every copy deletes it everywhere;
an expired document (`_miroir_expires_at`) is deleted, never copied.

The deletion records are read after the replicas were paged: a delete is recorded before
any node deletes, so a document some replica already lost to a delete is always covered.
Documents restored by filter deletions: a document about to be restored to a replica
that lacks it is first checked against the filter deletions newer than it, on a replica
that holds it (`(filter) AND _miroir_shard = N`); a match was meant to be deleted.

Repairs go straight to the nodes (never a client task): the winning version, fetched
again from the replica that holds it, is written as is (its `_miroir_shard` and
`_miroir_updated_at` included) with `POST .../documents`, deletions with
`delete-batch`, and every node task is waited for. With `auto_repair: false` a pass only
counts what it would repair. A replica that does not answer, or lacks the index, is left
out of its shard's comparison (and named in the result); the next pass covers it.

The scheduled pass is Mode A: each pod compares the shards it owns
(`anti-entropy:<index>:<shard>`), at most `shards_per_pass` of them per pass, resuming
where the previous pass stopped. `POST /_miroir/maintenance/anti-entropy` runs one full
pass over every shard as an operation (`AntiEntropyOperation`).
Known limit: a repair deletion racing a client re-add of the same id may delete the new
version (Meilisearch has no conditional delete); the next pass cannot tell it apart from
a delete and the client write is lost only on that id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn, Self

import orjson

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.config import AntiEntropyConfig, OperationsConfig
from miroir_proxy.core.convergence import Copy, Fingerprint, Fix, plan
from miroir_proxy.core.pk import DocumentError, document_id
from miroir_proxy.dispatch.catalog import Catalog
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.dispatch.deletions import DeleteLog, FilterDeletion
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import HintBacklog, IndexMeta, Store, StoreUnavailable

from .copying import CopyFailed, CopySettings, ShardIO, ShardRef
from .engine import OperationContext, StepFn

log = logging.getLogger(__name__)

KIND = "anti-entropy"
SCOPE = "anti-entropy"
# Up to this many documents to restore from one replica are fetched one by one; more are
# picked from one more page-through of the shard on that replica.
_FETCH_ONE_BY_ONE = 32
_SHARDS_IN_FLIGHT = 2


def owner_key(index_uid: str, shard: int) -> str:
    return f"anti-entropy:{index_uid}:{shard}"


@dataclasses.dataclass(slots=True)
class PassResult:
    """What one pass saw and did; `mismatches` counts documents that needed a fix,
    `repaired` the replica copies written or deleted to fix them."""

    auto_repair: bool
    started_at: float = 0.0
    finished_at: float | None = None
    shards: int = 0
    documents: int = 0
    mismatches: int = 0
    restored: int = 0
    deleted: int = 0
    expired: int = 0
    conflicts: int = 0
    repaired: int = 0
    unreachable: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "autoRepair": self.auto_repair,
            "shardsScanned": self.shards,
            "documentsScanned": self.documents,
            "mismatches": self.mismatches,
            "missingOrStale": self.restored,
            "deleted": self.deleted,
            "expired": self.expired,
            "conflicts": self.conflicts,
            "repaired": self.repaired,
            "unreachableReplicas": self.unreachable,
            "errors": self.errors,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }


@dataclasses.dataclass(slots=True)
class Totals:
    """Since the process started (the Prometheus counters)."""

    shards: int = 0
    mismatches: int = 0
    repaired: int = 0
    last_pass_s: float = 0.0


Progress = Callable[[int, int, PassResult], Awaitable[None]]


def _pk_text(document: Mapping[str, Any], pk: str) -> str | None:
    value = document.get(pk) if "." not in pk else None
    if type(value) is str or type(value) is int:
        return str(value)
    try:
        return str(document_id(document, pk))
    except DocumentError:
        return None


class AntiEntropy:
    def __init__(
        self,
        cluster: Cluster,
        catalog: Catalog,
        deletions: DeleteLog,
        config: AntiEntropyConfig,
        timeouts: OperationsConfig,
        owns: Callable[[str], bool],
        *,
        read_timeout_ms: int,
        write_timeout_ms: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cluster = cluster
        self._catalog = catalog
        self._deletions = deletions
        self.config = config
        self._owns = owns
        self._clock = clock
        self._io = ShardIO(
            cluster,
            CopySettings(
                page_size=config.page_size,
                docs_per_s=0,
                read_timeout_ms=read_timeout_ms,
                write_timeout_ms=write_timeout_ms,
                task_timeout_ms=timeouts.node_task_timeout_ms,
            ),
        )
        self._reads = asyncio.Semaphore(config.read_concurrency)
        self._cursor = 0  # where the next scheduled pass starts among the owned shards
        self.totals = Totals()
        self.last: PassResult | None = None
        self._background = BackgroundTasks(log)

    # --- a pass ----------------------------------------------------------------------

    async def run_pass(
        self, *, owned_only: bool, max_shards: int = 0, progress: Progress | None = None
    ) -> PassResult:
        """Compare (and repair) every shard of every index, or this pod's own; with
        `max_shards`, at most that many, starting after the last pass's."""
        result = PassResult(self.config.auto_repair, started_at=self._clock())
        self._io.forget_embedders()  # an index may have gained embedders since the last pass
        work: list[tuple[IndexMeta, int]] = []
        for meta in await self._catalog.indexes():
            if meta.primary_key is None:
                continue  # nothing written yet
            for shard in range(meta.shards):
                if not owned_only or self._owns(owner_key(meta.uid, shard)):
                    work.append((meta, shard))
        if max_shards and len(work) > max_shards:
            start = self._cursor % len(work)
            work = (work[start:] + work[:start])[:max_shards]
            self._cursor = start + max_shards
        if progress is not None:
            await progress(0, len(work), result)
        # Two shards in flight: one is read while the other's repairs wait for the nodes.
        pending = iter(work)
        done = 0

        async def worker() -> None:
            nonlocal done
            for meta, shard in pending:
                try:
                    await self.check_shard(meta, shard, result)
                except (CopyFailed, NodeError, StoreUnavailable) as e:
                    log.warning("anti-entropy of %s shard %d failed: %s", meta.uid, shard, e)
                    result.errors.append(f"{meta.uid}/{shard}: {e}")
                done += 1
                if progress is not None:
                    await progress(done, len(work), result)

        workers = [asyncio.create_task(worker()) for _ in range(_SHARDS_IN_FLIGHT)]
        try:
            await asyncio.gather(*workers)  # the first error (a cancel request) as it is
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        result.finished_at = self._clock()
        if progress is not None:
            await progress(len(work), len(work), result)
        self.last = result
        self.totals.last_pass_s = result.finished_at
        return result

    async def check_shard(self, meta: IndexMeta, shard: int, result: PassResult) -> None:
        assert meta.primary_key is not None
        ref = ShardRef(meta.uid, meta.primary_key, shard)
        layout = self._cluster.layout
        replicas: list[str] = []
        for group in layout.topology.groups:
            for node in layout.placement(group, meta.shards).writes[shard]:
                if node not in replicas:
                    replicas.append(node)
        scans = await asyncio.gather(
            *(self._fingerprint(node, ref) for node in replicas), return_exceptions=True
        )
        prints: dict[str, Fingerprint] = {}
        for node, scan in zip(replicas, scans, strict=True):
            if isinstance(scan, (NodeError, CopyFailed)):
                result.unreachable.append(f"{node} ({meta.uid}/{shard})")
            elif isinstance(scan, BaseException):
                raise scan
            else:
                prints[node] = scan
                result.documents += len(scan.copies)
        result.shards += 1
        self.totals.shards += 1
        if not prints:
            return
        # Read after paging: every delete a replica already applied is recorded by now.
        tombstones = await self._deletions.tombstones(meta.uid, shard)
        cleared_at = await self._deletions.cleared_at(meta.uid)
        now_ms = int(self._clock() * 1000)
        fixes = plan(prints, tombstones=tombstones, cleared_at=cleared_at, now_ms=now_ms)
        filters = await self._deletions.filters(meta.uid)
        if filters:
            fixes = await self._apply_filter_deletions(ref, prints, fixes, filters)
        result.mismatches += len(fixes)
        self.totals.mismatches += len(fixes)
        for fix in fixes:
            result.conflicts += fix.conflict
            if fix.reason == "restore":
                result.restored += 1
            elif fix.reason == "deleted":
                result.deleted += 1
            else:
                result.expired += 1
        if fixes and self.config.auto_repair:
            repaired = await self._repair(ref, fixes)
            result.repaired += repaired
            self.totals.repaired += repaired

    async def _fingerprint(self, node: str, ref: ShardRef) -> Fingerprint:
        fp = Fingerprint()
        size = self._io.settings.page_size
        offset = 0
        field = ref.primary_key
        while True:
            async with self._reads:
                page = await self._page(node, ref, offset, size)
            add, take = fp.add, Copy.taken
            for document in page:
                value = document.get(field)
                pk = str(value) if type(value) is int or type(value) is str else None
                if pk is None:
                    pk = _pk_text(document, field)
                if pk is not None:
                    add(pk, take(document))
            if len(page) < size:
                return fp
            offset += len(page)

    async def _page(self, node: str, ref: ShardRef, offset: int, limit: int) -> list[Any]:
        """One page of the shard on `node`. A node without the index is not compared (it is
        not ready: restoring documents would create the index without Miroir's settings)."""
        response = await self._cluster.call(
            node,
            "POST",
            f"/indexes/{ref.index}/documents/fetch",
            json_body=await self._io.fetch_body(
                node, ref.index, {"filter": ref.filter, "offset": offset, "limit": limit}
            ),
            timeout_ms=self._io.settings.read_timeout_ms,
        )
        if not response.ok:
            raise CopyFailed(f"node {node} answered {response.status}: {response.body[:200]!r}")
        try:
            body = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            body = None
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise CopyFailed(f"node {node} answered a page without results")
        return results

    async def _apply_filter_deletions(
        self,
        ref: ShardRef,
        prints: Mapping[str, Fingerprint],
        fixes: list[Fix],
        filters: Sequence[FilterDeletion],
    ) -> list[Fix]:
        """Restores of documents a replica lacks become deletions when the document,
        written before a filter deletion, matches its filter (module docstring)."""
        out: list[Fix] = []
        matched: dict[tuple[str, int], set[str]] = {}
        for fix in fixes:
            source = fix.source
            lacking = source is not None and any(
                fix.pk not in prints[t].copies for t in fix.targets
            )
            if source is None or not lacking:
                out.append(fix)
                continue
            stamp = prints[source].copies[fix.pk].stamp
            doomed = False
            for n, deletion in enumerate(filters):
                if deletion.at_ms <= stamp:
                    continue
                key = (source, n)
                if key not in matched:
                    matched[key] = await self._matching(source, ref, deletion.filter)
                if fix.pk in matched[key]:
                    doomed = True
                    break
            if doomed:
                holders = tuple(r for r, fp in prints.items() if fix.pk in fp.copies)
                out.append(Fix(fix.pk, "deleted", holders))
            else:
                out.append(fix)
        return out

    async def _matching(self, node: str, ref: ShardRef, filter_: Any) -> set[str]:
        """Primary keys of the shard on `node` that match a client's filter (none when the
        filter is not valid any more)."""
        clauses = [*filter_] if isinstance(filter_, list) else [filter_]
        body = {"filter": [*clauses, ref.filter], "fields": [ref.primary_key]}
        found: set[str] = set()
        size = self._io.settings.page_size
        offset = 0
        while True:
            async with self._reads:
                response = await self._cluster.call(
                    node,
                    "POST",
                    f"/indexes/{ref.index}/documents/fetch",
                    json_body={**body, "offset": offset, "limit": size},
                    timeout_ms=self._io.settings.read_timeout_ms,
                )
            if not response.ok:
                return found
            results = orjson.loads(response.body).get("results", [])
            for document in results:
                pk = _pk_text(document, ref.primary_key)
                if pk is not None:
                    found.add(pk)
            if len(results) < size:
                return found
            offset += len(results)

    async def _repair(self, ref: ShardRef, fixes: Sequence[Fix]) -> int:
        deletes: dict[str, list[str]] = {}
        wanted: dict[str, list[Fix]] = {}
        for fix in fixes:
            if fix.source is None:
                for node in fix.targets:
                    deletes.setdefault(node, []).append(fix.pk)
            else:
                wanted.setdefault(fix.source, []).append(fix)
        writes: dict[str, list[dict[str, Any]]] = {}
        for source, wanted_fixes in wanted.items():
            documents = await self._documents(source, ref, [f.pk for f in wanted_fixes])
            for fix in wanted_fixes:
                document = documents.get(fix.pk)
                if document is None:
                    continue  # deleted on the source since: the next pass decides
                for node in fix.targets:
                    writes.setdefault(node, []).append(document)
        size = self._io.settings.page_size
        calls: list[Awaitable[None]] = []
        for node, ids in deletes.items():
            for i in range(0, len(ids), size):
                calls.append(self._io.delete([node], ref, ids[i : i + size]))
        for node, batch in writes.items():
            for i in range(0, len(batch), size):
                calls.append(self._io.write([node], ref, batch[i : i + size]))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, (CopyFailed, NodeError)
            ):
                raise outcome
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            raise CopyFailed(f"{len(failed)} repair writes failed, e.g. {failed[0]}")
        return sum(len(ids) for ids in deletes.values()) + sum(len(d) for d in writes.values())

    async def _documents(
        self, node: str, ref: ShardRef, pks: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """The current version of the documents `pks` on `node`."""
        if len(pks) > _FETCH_ONE_BY_ONE:
            wanted = set(pks)
            every = await self._io.documents(node, ref)
            return {pk: d for pk, d in every.items() if pk in wanted}

        vectors = "retrieveVectors" in await self._io.fetch_body(node, ref.index, {})
        params = {"retrieveVectors": "true"} if vectors else None

        async def one(pk: str) -> tuple[str, dict[str, Any] | None]:
            async with self._reads:
                response = await self._cluster.call(
                    node,
                    "GET",
                    f"/indexes/{ref.index}/documents/{pk}",
                    params=params,
                    timeout_ms=self._io.settings.read_timeout_ms,
                )
            if response.status == 404:
                return pk, None
            if not response.ok:
                raise CopyFailed(f"node {node} answered {response.status} for document {pk}")
            document = orjson.loads(response.body)
            return pk, document if isinstance(document, dict) else None

        found = await asyncio.gather(*(one(pk) for pk in pks))
        return {pk: d for pk, d in found if d is not None}

    # --- schedule --------------------------------------------------------------------

    async def run(self) -> NoReturn:
        while True:
            await asyncio.sleep(self.config.interval_ms / 1000)
            result = await self.run_pass(owned_only=True, max_shards=self.config.shards_per_pass)
            if result.mismatches or result.errors:
                log.info("anti-entropy pass: %s", result.to_dict())

    async def __aenter__(self) -> Self:
        if self.config.enabled:
            self._background.start(
                "anti-entropy", self.run, restart_s=self.config.interval_ms / 1000
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()


class AntiEntropyOperation:
    """`POST /_miroir/maintenance/anti-entropy`: one full pass over every shard as an
    operation; its progress (`GET /_miroir/operations/{id}`) counts shards and carries the
    pass's figures (`PassResult.to_dict`)."""

    name = KIND

    def __init__(self, anti_entropy: AntiEntropy) -> None:
        self._anti_entropy = anti_entropy

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [("comparing", self._compare)]

    async def _compare(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        async def progress(done: int, total: int, result: PassResult) -> None:
            await ctx.check_canceled()
            await ctx.report(done=done, total=total, unit="shards", **result.to_dict())

        before = await ctx.store.hint_backlogs()
        result = await self._anti_entropy.run_pass(owned_only=False, progress=progress)
        await _clear_repaired_overflows(ctx.store, before, result)

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        """Nothing to undo: every repair stands on its own."""


async def _clear_repaired_overflows(
    store: Store, before: Mapping[str, HintBacklog], result: PassResult
) -> None:
    """Hinted handoff leaves a node past its hint bound to anti-entropy: a full pass that
    compared every shard with the node reachable, while the node dropped no further write,
    has brought it in line, so it may take hints again. (A scheduled pass covers only a
    pod's own shards and clears nothing.)"""
    if result.errors:
        return
    missed = {entry.split(" ", 1)[0] for entry in result.unreachable}
    after = await store.hint_backlogs()
    for node, was in before.items():
        now = after.get(node)
        if was.overflowed and node not in missed and now is not None and now.dropped == was.dropped:
            await store.clear_hint_overflow(node)
