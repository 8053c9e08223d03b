"""Document writes: route every document (or id) to its shard's replicas in every group.

Add/replace/update: the batch is parsed once by the caller; here the primary key is
resolved, every id validated before any node is touched, each document tagged with
`_miroir_shard`, and one batch serialized per distinct set of shards a node replicates
(nodes holding the same shards share it). Deletions by id go the same way; deletions by
filter and clear-all go to every node. All node calls run in parallel under the write
deadline and always carry `?primaryKey=` so every node agrees on the key.

Problems a single Meilisearch reports in a failed task (primary key inference, a missing
or invalid id, a conflicting `primaryKey`, an unknown index on deletion) become a Miroir
task that failed the same way without reaching a node, so clients see the same answer
through Miroir as from one node. The quorum rule decides the rest: no group at quorum for
some shard -> `503 miroir_no_quorum` and no task; a 4xx every node gave (a bad filter)
-> `NodeRefused`, the node's answer unchanged; otherwise a task, with `degraded` naming
the replicas that did not acknowledge.

A node the health prober knows is down gets no call at all, and a call to a node the
prober marks down while the write waits is abandoned. With hinted handoff (`handoff`), the
batches such nodes (and nodes that failed, or are still catching up on earlier hints)
missed are stored as hints before the verdict, and count for the quorum as
`core.quorum.judge_write` says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, Protocol

import orjson

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.hashing import shards_of
from miroir_proxy.core.pk import (
    MAX_ID_BYTES,
    DocumentError,
    check_reserved_fields,
    is_reserved,
    resolve_primary_key,
    validate_document_id,
)
from miroir_proxy.core.pk import document_id as extract_id
from miroir_proxy.core.placement import Layout
from miroir_proxy.core.quorum import judge_write
from miroir_proxy.nodes.client import NodeResponse
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import Hint, IndexMeta, NodeTaskRef, TaskRecord

from .broadcast import NodeRefused
from .cluster import Cluster
from .deletions import DeleteLog
from .handoff import Handoff, Recorded
from .tasks import TaskRegistry
from .taskstatus import HINTED, node_error

SHARD_FIELD = "_miroir_shard"
# When the proxy accepted the document's current version, in milliseconds of the pod's
# clock: a copy or repair never puts an older version over a newer one.
UPDATED_FIELD = "_miroir_updated_at"
ADDITION = "documentAdditionOrUpdate"
DELETION = "documentDeletion"
JSON = "application/json"
# How often a write waiting on a node checks whether the prober marked it down meanwhile.
_DOWN_CHECK_S = 0.05

DocumentId = str | int


class IndexCatalog(Protocol):
    """What the write path needs from `dispatch.catalog.Catalog`."""

    async def get(self, uid: str) -> IndexMeta | None: ...

    async def ensure(
        self, uid: str, primary_key: str | None = None
    ) -> tuple[IndexMeta, list[NodeTaskRef]]: ...

    async def set_primary_key(self, uid: str, primary_key: str) -> None: ...

    async def note_fields(self, uid: str, names: Collection[str]) -> None: ...

    async def check_writable(self, uid: str) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class WriteResult:
    """The registered task (answer 202) and the `X-Miroir-Degraded` value ("" if none)."""

    task: TaskRecord
    degraded: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class _Sent:
    uid: int | None
    error: dict[str, Any] | None
    refusal: NodeResponse | None = None


@dataclasses.dataclass(slots=True)
class _Target:
    group: str
    shards: list[int]
    body: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Leg:
    """The same write to another concrete index (an index being resharded)."""

    path: str
    targets: Mapping[str, _Target]
    shards: int


def index_not_found(uid: str) -> MiroirError:
    return MiroirError("index_not_found", f"Index `{uid}` not found.")


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    """The task a write will be registered as."""

    index_uid: str
    type: str
    details: dict[str, Any]
    extra: Mapping[str, Any] | None


class DocumentWriter:
    def __init__(
        self,
        cluster: Cluster,
        catalog: IndexCatalog,
        registry: TaskRegistry,
        *,
        handoff: Handoff | None = None,
        deletions: DeleteLog | None = None,
    ) -> None:
        self._cluster = cluster
        self._catalog = catalog
        self._registry = registry
        # Deletes are recorded for anti-entropy before any node is asked (dispatch.deletions).
        self._deletions = deletions
        self._handoff = handoff

    async def add(
        self,
        index_uid: str,
        documents: list[dict[str, Any]],
        *,
        merge: bool,
        requested_pk: str | None = None,
        skip_creation: bool = False,
        can_create_index: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> WriteResult:
        """POST (`merge=False`, add or replace) or PUT (`merge=True`, add or update)."""
        # One union of the top-level names (C speed) instead of a check per document.
        names: set[str] = set().union(*documents)
        if any(is_reserved(name) for name in names):
            for document in documents:
                check_reserved_fields(document)
        details = {"receivedDocuments": len(documents), "indexedDocuments": None}
        job = _Job(index_uid, ADDITION, details, extra)
        meta = await self._catalog.get(index_uid)
        if meta is None and not can_create_index:
            return await self._failed(job, index_not_found(index_uid))
        index_pk = meta.primary_key if meta is not None else None
        try:
            if index_pk is not None and requested_pk not in (None, index_pk):
                raise DocumentError(
                    "index_primary_key_already_exists",
                    f"Index already has a primary key: `{index_pk}`.",
                )
            pk = resolve_primary_key(index_pk, requested_pk, documents[0] if documents else None)
            ids = document_ids(documents, pk) if pk is not None else []
        except DocumentError as e:
            return await self._failed(job, e)
        if meta is None:
            meta, _ = await self._catalog.ensure(index_uid, pk)
        if pk is None or not documents:
            return WriteResult(
                await self._registry.enqueue(index_uid, ADDITION, [], details=details, extra=extra)
            )
        for uid in self._also_named(index_uid):  # a resharded index's copy searches them too
            await self._catalog.note_fields(uid, names)
        layout = self._cluster.layout
        moved = layout.topology.moved(index_uid)
        if moved is not None:  # resharded while this request was on its way
            return await self.add(
                moved,
                documents,
                merge=merge,
                requested_pk=requested_pk,
                skip_creation=skip_creation,
                can_create_index=can_create_index,
                extra=extra,
            )
        stamp = write_stamp()
        targets = route_batch(layout, documents, ids, meta.shards, stamp)
        params = {"primaryKey": pk}
        if skip_creation:
            params["skipCreation"] = "true"
        method = "PUT" if merge else "POST"
        path = f"/indexes/{index_uid}/documents"
        # An index being resharded is written to its other concrete index too, each with
        # its own `_miroir_shard` (`route_batch` serializes before the next one re-tags).
        also = [
            _Leg(f"/indexes/{uid}/documents", route_batch(layout, documents, ids, s, stamp), s)
            for uid, s in layout.topology.also_written(index_uid)
        ]
        result = await self._write(job, method, path, params, targets, layout, meta.shards, also)
        if result.task is not None and meta.primary_key != pk:
            await self._catalog.set_primary_key(index_uid, pk)
        return result

    async def delete_ids(
        self, index_uid: str, ids: Sequence[DocumentId], extra: Mapping[str, Any] | None = None
    ) -> WriteResult:
        details = {"providedIds": len(ids), "deletedDocuments": None, "originalFilter": None}
        job = _Job(index_uid, DELETION, details, extra)
        meta = await self._catalog.get(index_uid)
        if meta is None:
            return await self._failed(job, index_not_found(index_uid))
        by_shard = _ids_by_shard(ids, meta.shards)
        if self._deletions is not None:
            await self._deletions.ids_deleted(index_uid, by_shard)
            # An index being resharded: its other copy keeps its own tombstones.
            for uid, s in self._cluster.topology.also_written(index_uid):
                await self._deletions.ids_deleted(uid, _ids_by_shard(ids, s))
        layout = self._cluster.layout
        moved = layout.topology.moved(index_uid)
        if moved is not None:  # resharded while this request was on its way
            return await self.delete_ids(moved, ids, extra)
        targets = shard_targets(layout, meta.shards, by_shard)
        path = f"/indexes/{index_uid}/documents/delete-batch"
        also = [
            _Leg(f"/indexes/{uid}/documents/delete-batch", shard_targets(layout, s, by_s), s)
            for uid, s in layout.topology.also_written(index_uid)
            for by_s in [_ids_by_shard(ids, s)]
        ]
        return await self._write(job, "POST", path, {}, targets, layout, meta.shards, also)

    async def delete_by_filter(
        self, index_uid: str, filter_: Any, extra: Mapping[str, Any] | None = None
    ) -> WriteResult:
        details = {
            "providedIds": 0,
            "deletedDocuments": None,
            "originalFilter": orjson.dumps(filter_).decode(),
        }
        job = _Job(index_uid, DELETION, details, extra)
        if self._deletions is not None:
            for uid in self._also_named(index_uid):
                await self._deletions.filter_deleted(uid, filter_)
        path = f"/indexes/{index_uid}/documents/delete"
        return await self._broadcast(job, "POST", path, orjson.dumps({"filter": filter_}))

    async def delete_all(
        self, index_uid: str, extra: Mapping[str, Any] | None = None
    ) -> WriteResult:
        job = _Job(index_uid, DELETION, {"deletedDocuments": None}, extra)
        if self._deletions is not None:
            for uid in self._also_named(index_uid):
                await self._deletions.cleared(uid)
        return await self._broadcast(job, "DELETE", f"/indexes/{index_uid}/documents", None)

    def _also_named(self, index_uid: str) -> list[str]:
        """The index and, while it is resharded, its other copy (both keep deletion records)."""
        return [index_uid, *(uid for uid, _ in self._cluster.topology.also_written(index_uid))]

    async def _broadcast(
        self, job: _Job, method: str, path: str, body: bytes | None
    ) -> WriteResult:
        """Every node of every group, each node answering for the shards it holds."""
        meta = await self._catalog.get(job.index_uid)
        if meta is None:
            return await self._failed(job, index_not_found(job.index_uid))
        layout = self._cluster.layout
        moved = layout.topology.moved(job.index_uid)
        if moved is not None:  # resharded while this request was on its way
            here = f"/indexes/{job.index_uid}/"
            path = path.replace(here, f"/indexes/{moved}/", 1)
            return await self._broadcast(
                dataclasses.replace(job, index_uid=moved), method, path, body
            )
        targets = _every_node(layout, meta.shards, body)
        also = [
            _Leg(path.replace(f"/indexes/{job.index_uid}/", f"/indexes/{uid}/", 1), t, s)
            for uid, s in layout.topology.also_written(job.index_uid)
            for t in [_every_node(layout, s, body)]
        ]
        return await self._write(job, method, path, {}, targets, layout, meta.shards, also)

    async def _write(
        self,
        job: _Job,
        method: str,
        path: str,
        params: Mapping[str, str],
        targets: Mapping[str, _Target],
        layout: Layout,
        shards: int,
        also: Sequence[_Leg] = (),
    ) -> WriteResult:
        await self._catalog.check_writable(job.index_uid)
        # Once node batches are on their way the outcome must be registered even if the
        # client goes away, or the nodes would hold writes no task describes. The write
        # counts as in flight from here (no await since `layout` was taken) to its end.
        done = self._cluster.writing(layout)
        write = asyncio.ensure_future(
            self._write_unshielded(job, method, path, params, targets, layout, shards, also)
        )
        write.add_done_callback(lambda _: done())
        return await asyncio.shield(write)

    async def _write_unshielded(
        self,
        job: _Job,
        method: str,
        path: str,
        params: Mapping[str, str],
        targets: Mapping[str, _Target],
        layout: Layout,
        shards: int,
        also: Sequence[_Leg],
    ) -> WriteResult:
        nodes = list(targets)
        handoff = self._handoff
        skipped = {n for n in nodes if self._avoid(n)}
        sending = [n for n in nodes if n not in skipped]
        async with asyncio.TaskGroup() as group:
            calls = [
                group.create_task(
                    self._send_watched(node, method, path, params, targets[node].body)
                )
                for node in sending
            ]
            other_calls = [
                {
                    node: group.create_task(
                        self._send_watched(node, method, leg.path, params, target.body)
                    )
                    for node, target in leg.targets.items()
                    if not self._avoid(node)
                }
                for leg in also
            ]
        sent = {node: call.result() for node, call in zip(sending, calls, strict=True)}
        for node in skipped:
            reason = "catching up on hints" if self._cluster.is_healthy(node) else "it is down"
            sent[node] = _Sent(None, _unreachable(node, f"not sent, {reason}"))
        acked = {node for node, s in sent.items() if s.uid is not None}
        refusals = [s.refusal for s in sent.values() if s.refusal is not None]
        if not acked and refusals:
            raise NodeRefused(refusals[0])
        touched = {shard for t in targets.values() for shard in t.shards}
        recorded = Recorded()
        # A refused batch (a 4xx) would be refused again: only missed ones are hinted.
        missed = [n for n in nodes if sent[n].uid is None and sent[n].refusal is None]
        # Hints only for a write that stands once they are stored.
        if (
            handoff is not None
            and handoff.enabled
            and acked
            and missed
            and judge_write(layout, touched, acked, index_shards=shards, hinted=missed).succeeded
        ):
            stamp = write_stamp()
            recorded = await handoff.record(
                Hint(
                    node=node,
                    index_uid=job.index_uid,
                    method=method,
                    path=path,
                    params=dict(params),
                    body=targets[node].body,
                    group=targets[node].group,
                    shards=tuple(targets[node].shards),
                    created_ms=stamp,
                )
                for node in missed
            )
        verdict = judge_write(layout, touched, acked, index_shards=shards, hinted=recorded.recorded)
        if not verdict.succeeded:
            raise verdict.no_quorum_error()
        for leg, leg_calls in zip(also, other_calls, strict=True):
            # The other index must take the write too (its node tasks are not the
            # client's: counts stay those of the index the client's name means).
            leg_acked = {node for node, call in leg_calls.items() if call.result().uid is not None}
            leg_touched = {shard for t in leg.targets.values() for shard in t.shards}
            leg_verdict = judge_write(layout, leg_touched, leg_acked, index_shards=leg.shards)
            if not leg_verdict.succeeded:
                raise leg_verdict.no_quorum_error()
        refs = [
            NodeTaskRef(
                node=node,
                group=targets[node].group,
                shards=targets[node].shards,
                uid=sent[node].uid,
                status=_ref_status(sent[node], node in recorded.recorded),
                error=sent[node].error,
            )
            for node in nodes
        ]
        task = await self._registry.enqueue(
            job.index_uid, job.type, refs, details=job.details, extra=job.extra
        )
        return WriteResult(task, verdict.degraded_header(recorded.overflowed))

    def _avoid(self, node: str) -> bool:
        if self._handoff is not None:
            return self._handoff.avoid(node)
        return not self._cluster.is_healthy(node)

    async def _send_watched(
        self, node: str, method: str, path: str, params: Mapping[str, str], body: bytes | None
    ) -> _Sent:
        """`_send`, abandoned as soon as the prober marks `node` down (a paused node would
        otherwise hold the write for the whole node deadline)."""
        call = asyncio.ensure_future(self._send(node, method, path, params, body))
        try:
            while True:
                done, _ = await asyncio.wait({call}, timeout=_DOWN_CHECK_S)
                if done:
                    return call.result()
                if not self._cluster.is_healthy(node):
                    return _Sent(None, _unreachable(node, "marked down while writing"))
        finally:
            if not call.done():
                call.cancel()
                await asyncio.wait({call})

    async def _send(
        self, node: str, method: str, path: str, params: Mapping[str, str], body: bytes | None
    ) -> _Sent:
        try:
            response = await self._cluster.call(
                node,
                method,
                path,
                params=params or None,
                body=body,
                content_type=JSON if body is not None else None,
                timeout_ms=self._cluster.config.timeouts.node_write_ms,
            )
        except NodeError as e:
            return _Sent(None, _unreachable(node, e.reason))
        if response.status == 202:
            try:
                return _Sent(int(response.json()["taskUid"]), None)
            except (NodeError, KeyError, TypeError, ValueError):
                return _Sent(None, _unreachable(node, "the enqueue answer has no taskUid"))
        error = _error_of(response) or _unreachable(node, f"HTTP {response.status}")
        if response.is_node_failure or response.status < 400:
            return _Sent(None, error)
        return _Sent(None, error, response)

    async def _failed(self, job: _Job, error: MiroirError) -> WriteResult:
        return WriteResult(
            await self._registry.enqueue_failed(
                job.index_uid, job.type, error, details=job.details, extra=job.extra
            )
        )


def route_batch(
    layout: Layout,
    documents: list[dict[str, Any]],
    ids: list[DocumentId],
    shards: int,
    stamp: int | None = None,
) -> dict[str, _Target]:
    """Each document tagged with its shard (by `ids`, already validated) and its write
    time, and serialized into the body of every node that replicates the shard, in every
    group."""
    return shard_targets(layout, shards, _by_shard(documents, ids, shards, stamp))


def _ids_by_shard(ids: Sequence[DocumentId], shards: int) -> dict[int, list[Any]]:
    by_shard: dict[int, list[Any]] = {}
    for doc_id, shard in zip(ids, shards_of(ids, shards), strict=True):
        by_shard.setdefault(shard, []).append(doc_id)
    return by_shard


def _every_node(layout: Layout, shards: int, body: bytes | None) -> dict[str, _Target]:
    """Every node of every group, each answering for the shards it holds."""
    targets: dict[str, _Target] = {}
    for group in layout.topology.groups:
        held = layout.placement(group, shards).holdings
        for node in group.nodes:
            targets[node.id] = _Target(group.id, sorted(held.get(node.id, ())), body)
    return targets


def shard_targets(
    layout: Layout, shards: int, by_shard: Mapping[int, list[Any]]
) -> dict[str, _Target]:
    """One JSON array per node, holding the items of every shard it replicates."""
    targets: dict[str, _Target] = {}
    for group in layout.topology.groups:
        replicas = layout.placement(group, shards).writes
        for shard in by_shard:
            for node_id in replicas[shard]:
                target = targets.get(node_id)
                if target is None:
                    targets[node_id] = _Target(group.id, [shard])
                else:
                    target.shards.append(shard)
    # One orjson call per distinct shard set: nodes holding the same shards (with RF
    # equal to the group size, every node) share one body, and serializing a list in
    # one call costs a fraction of serializing its items one by one.
    bodies: dict[tuple[int, ...], bytes] = {}
    for target in targets.values():
        target.shards.sort()
        key = tuple(target.shards)
        body = bodies.get(key)
        if body is None:
            items = list(chain.from_iterable(by_shard[s] for s in key))
            body = bodies[key] = orjson.dumps(items)
        target.body = body
    return targets


def write_stamp() -> int:
    return time.time_ns() // 1_000_000


def document_ids(documents: list[dict[str, Any]], pk: str) -> list[DocumentId]:
    """Every document's id under `pk`, validated; raises Meilisearch's error for the first
    document without a valid one."""
    ids: list[DocumentId] = []
    append = ids.append
    if "." in pk:
        for document in documents:
            append(extract_id(document, pk))
        return ids
    for document in documents:
        value = document.get(pk)
        # The common cases inline; `extract_id` renders the exact error otherwise.
        if type(value) is int or (type(value) is str and _plain(value)):
            append(value)
        else:
            append(extract_id(document, pk))
    return ids


_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _plain(value: str) -> bool:
    return (
        0 < len(value) <= MAX_ID_BYTES
        and value.isascii()
        and (value.isalnum() or set(value) <= _ID_CHARS)
    )


def _by_shard(
    documents: list[dict[str, Any]], ids: list[DocumentId], shards: int, stamp: int | None
) -> dict[int, list[dict[str, Any]]]:
    """Each document tagged with its shard and write time, grouped by shard."""
    by_shard: dict[int, list[dict[str, Any]]] = {}
    if stamp is None:
        stamp = write_stamp()
    for document, shard in zip(documents, shards_of(ids, shards), strict=True):
        document[SHARD_FIELD] = shard
        document[UPDATED_FIELD] = stamp
        bucket = by_shard.get(shard)
        if bucket is None:
            by_shard[shard] = [document]
        else:
            bucket.append(document)
    return by_shard


def _ref_status(sent: _Sent, recorded: bool) -> str:
    if sent.uid is not None:
        return "enqueued"
    return HINTED if recorded else "failed"


def _unreachable(node: str, reason: str) -> dict[str, Any]:
    return node_error(
        "miroir_node_unavailable", f"Node `{node}` did not accept the write: {reason}."
    )


def _error_of(response: NodeResponse) -> dict[str, Any] | None:
    try:
        body = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(body, dict) and {"message", "code", "type", "link"} <= body.keys():
        return {k: body[k] for k in ("message", "code", "type", "link")}
    return None


def ids_of(values: Iterable[Any]) -> list[DocumentId]:
    """Validated ids of a `delete-batch` body."""
    return [validate_document_id(v) for v in values]
