"""Online resharding (`reshard`): an index gets a new shard count while it serves.

The client's index name stays; what changes is the concrete index it means (the uid on the
nodes, `Topology.names`). Phases, each committed before the next, every epoch acknowledged
by every live pod before the next phase starts:
1. `prepare`: create the hidden shadow index on every node with the live index's primary
   key and node-side settings, and record its `IndexMeta` (the new shard count).
2. `dual`: publish `BeginReshard`. From this epoch on every write to either index reaches
   both, each routed and tagged (`_miroir_shard`) with its own shard count.
3. `backfill`: one Mode C chunk per live shard: pages of `_miroir_shard = s` read from a
   live replica, re-tagged with their new shard and written to the shadow's replicas in
   every group; the cursor (offset, documents copied) is checkpointed after each page,
   so a chunk whose pod died resumes on another pod.
4. `verify`: one chunk per class of shards that hold the same documents on both sides
   (shard `s` of S1 and shard `t` of S2 share documents only when `s = t mod gcd(S1, S2)`):
   primary-key sets and content digests of live and shadow compared, the shadow repaired.
5. `align`: the shadow's settings made equal to the live index's on every node.
6. `flip`: publish `FlipReshard`: the name means the shadow; writes still reach both.
7. `retain`: the old index is kept, still written, for `operations.reshard_retain_s`: a
   cancel in this phase flips back (nothing was lost either way).
8. `cleanup`: publish `EndReshard` (writes stop reaching the old index), then delete it.
A cancel or failure before the flip ends the dual writes and deletes the shadow on every
node: clients never saw it.

The ordering rule (why a backfill page cannot resurrect a deleted document or put an old
version back): a page is read, then written, and a client's delete or update reaching the
shadow in between is overwritten by it. Backfill therefore never decides; the verification
after it does. It reads both sides and repairs the shadow by `_miroir_updated_at`, the time
the proxy accepted each version (`copying.verify_shard`'s rule): a shadow document the live
index lacks is deleted unless it was written after the pass started (a new client write);
an older version is replaced, a newer one kept. Passes repeat until one finds nothing to
repair, and since every write from the dual epoch on reaches both indexes, they stay equal
from that clean pass to the flip.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from miroir_proxy.config import MiroirConfig
from miroir_proxy.coordination.queueing import ChunkContext, Handler
from miroir_proxy.core.changes import BeginReshard, EndReshard, FlipReshard, UnflipReshard
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.core.pk import document_id
from miroir_proxy.core.placement import Layout
from miroir_proxy.core.topology import ReshardPhase, Topology
from miroir_proxy.dispatch.catalog import SHARD_FIELD
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import IndexMeta, Store

from .copying import (
    Abandoned,
    Checkpoint,
    CopyFailed,
    ShardIO,
    ShardRef,
    Sources,
    Wanted,
    _compare,
    copy_pages,
    fresh_sources,
    read_documents,
    up_to_date,
)
from .engine import OperationContext, StepFn
from .groups import (
    RECORD_TTL_S,
    _create_index,
    _read_any,
    chunk_record_key,
    copy_settings,
    run_chunks,
    settle_chunks,
    source_order,
)

log = logging.getLogger(__name__)

RESHARD = "reshard"
RESHARD_JOB = "reshard-backfill"
_RETAIN_POLL_S = 0.5


def reshard_params(name: str, shards: int, target: str, retain_s: float) -> dict[str, Any]:
    return {"index": name, "shards": shards, "target": target, "retainS": retain_s}


def shard_classes(source_shards: int, target_shards: int) -> int:
    """How many independent classes of shards a verification can be cut into."""
    return math.gcd(source_shards, target_shards)


def _replicas(layout: Layout, shards: int, shard: int) -> list[str]:
    """Every node of every group a write of `shard` (of an index with `shards`) reaches."""
    return [
        node
        for group in layout.topology.groups
        for node in layout.placement(group, shards).writes[shard]
    ]


def _all_nodes(topology: Topology) -> list[str]:
    return [node.id for node in topology.nodes()]


class ReshardOperation:
    name = RESHARD

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [
            ("prepare", self._prepare),
            ("dual", self._dual),
            ("backfill", self._backfill),
            ("verify", self._verify),
            ("align", self._align),
            ("flip", self._flip),
            ("retain", self._retain),
            ("cleanup", self._cleanup),
        ]

    async def _prepare(self, ctx: OperationContext, data: dict[str, Any]) -> dict[str, Any]:
        name, target = str(data["index"]), str(data["target"])
        topology = await ctx.epochs.stored()
        reshard = topology.reshards.get(name)
        source = reshard.source if reshard is not None else topology.concrete(name)
        meta = await ctx.store.get_index(source)
        if meta is None:
            raise MiroirError("index_not_found", f"Index `{name}` not found.")
        if meta.primary_key is None:
            raise MiroirError(
                "bad_request", f"Index `{name}` has no primary key yet: there is nothing to move."
            )
        settings = await _read_any(ctx.cluster, f"/indexes/{source}/settings", None)
        io = ShardIO(ctx.cluster, copy_settings(ctx.config))
        primary_key = meta.primary_key

        async def create(node: str) -> None:
            await _create_index(io, node, target, primary_key)
            await io.change(node, "PATCH", f"/indexes/{target}/settings", settings)

        async with asyncio.TaskGroup() as tasks:
            for node in _all_nodes(topology):
                tasks.create_task(create(node))
        shadow = IndexMeta(target, int(data["shards"]), primary_key, meta.created_at)
        await ctx.store.put_index(shadow)
        return {**data, "source": source, "sourceShards": meta.shards, "primaryKey": primary_key}

    async def _dual(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        name = str(data["index"])
        change = BeginReshard(
            name,
            str(data["source"]),
            int(data["sourceShards"]),
            str(data["target"]),
            int(data["shards"]),
        )
        current = await ctx.epochs.publish_if(lambda t: name not in t.reshards, change)
        await ctx.epochs.wait_acknowledged(current.epoch, ctx.ack_timeout_s)
        # From here on the index cannot be deleted (409); before, a client could have.
        if await ctx.store.get_index(change.source) is None:
            raise MiroirError("index_not_found", f"Index `{name}` was deleted.")

    async def _backfill(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        chunks = [_chunk(data, s) for s in range(int(data["sourceShards"]))]
        await run_chunks(ctx, RESHARD_JOB, chunks, _payload(ctx, data, "copy"))

    async def _verify(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        classes = shard_classes(int(data["sourceShards"]), int(data["shards"]))
        chunks = [_chunk(data, r) for r in range(classes)]
        await run_chunks(ctx, RESHARD_JOB, chunks, _payload(ctx, data, "verify"))

    async def _align(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        """The shadow gets the live index's settings on every node where they differ (a
        client's settings change during the reshard reaches both, but a node may have
        missed one)."""
        source, target = str(data["source"]), str(data["target"])
        wanted = await _read_any(ctx.cluster, f"/indexes/{source}/settings", None)
        io = ShardIO(ctx.cluster, copy_settings(ctx.config))
        path = f"/indexes/{target}/settings"
        timeout = ctx.config.timeouts.node_read_ms
        for node in _all_nodes(ctx.cluster.topology):
            response = await ctx.cluster.call(node, "GET", path, timeout_ms=timeout)
            if response.ok and orjson.loads(response.body) == wanted:
                continue
            await io.change(node, "PATCH", path, wanted)
        # The fields a search may match: dual writes noted theirs for both indexes, the
        # fields seen before are the live index's.
        fields = await ctx.store.add_fields(source, ())
        await ctx.store.add_fields(target, fields.fields)

    async def _flip(self, ctx: OperationContext, data: dict[str, Any]) -> dict[str, Any]:
        name = str(data["index"])

        def dual(topology: Topology) -> bool:
            reshard = topology.reshards.get(name)
            return reshard is not None and reshard.phase is ReshardPhase.DUAL

        current = await ctx.epochs.publish_if(dual, FlipReshard(name))
        await ctx.epochs.wait_acknowledged(current.epoch, ctx.ack_timeout_s)
        return {**data, "flippedAt": data.get("flippedAt") or time.time()}

    async def _retain(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        until = float(data["flippedAt"]) + float(data["retainS"])
        shown = datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
        await ctx.report(None, retainedUntil=shown.replace("+00:00", "Z"))
        while (left := until - time.time()) > 0:
            await ctx.check_canceled()
            await asyncio.sleep(min(left, _RETAIN_POLL_S))

    async def _cleanup(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        name = str(data["index"])
        current = await ctx.epochs.publish_if(lambda t: name in t.reshards, EndReshard(name))
        await ctx.epochs.wait_acknowledged(current.epoch, ctx.ack_timeout_s)
        await _drop(ctx, str(data["source"]))

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        name, target = str(data["index"]), str(data["target"])
        topology = await ctx.epochs.stored()
        reshard = topology.reshards.get(name)
        if reshard is None and topology.concrete(name) == target:
            # Failed in its cleanup: the name means the shadow for good; finish it.
            await _drop(ctx, str(data["source"]))
            return
        if reshard is not None and reshard.phase is ReshardPhase.FLIPPED:
            back = await ctx.epochs.publish(UnflipReshard(name))
            await ctx.epochs.wait_acknowledged(back.epoch, ctx.ack_timeout_s)
        if reshard is not None:
            ended = await ctx.epochs.publish(EndReshard(name))
            await ctx.epochs.wait_acknowledged(ended.epoch, ctx.ack_timeout_s)
        await settle_chunks(ctx)  # no chunk writes to the shadow any more
        await _drop(ctx, target)


def _chunk(data: dict[str, Any], shard: int) -> dict[str, Any]:
    return {"index": str(data["source"]), "shard": shard}


def _payload(ctx: OperationContext, data: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "operation": ctx.record.id,
        "mode": mode,
        "name": data["index"],
        "source": data["source"],
        "sourceShards": data["sourceShards"],
        "target": data["target"],
        "targetShards": data["shards"],
        "primaryKey": data["primaryKey"],
    }


async def _drop(ctx: OperationContext, uid: str) -> None:
    """Delete concrete index `uid` on every node (waited for) and forget it."""
    io = ShardIO(ctx.cluster, copy_settings(ctx.config))

    async def delete(node: str) -> None:
        try:
            await io.change(node, "DELETE", f"/indexes/{uid}")
        except (NodeError, CopyFailed) as e:
            if "index_not_found" not in str(e):
                log.warning("reshard %s: %s keeps %s: %s", ctx.record.id, node, uid, e)

    async with asyncio.TaskGroup() as tasks:
        for node in _all_nodes(ctx.cluster.topology):
            tasks.create_task(delete(node))
    await ctx.store.delete_index(uid)


class _Spec:
    """One chunk's view of the reshard (from the job's payload)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.name = str(payload["name"])
        self.source = str(payload["source"])
        self.source_shards = int(payload["sourceShards"])
        self.target = str(payload["target"])
        self.target_shards = int(payload["targetShards"])
        self.primary_key = str(payload["primaryKey"])

    def new_shard(self, document: dict[str, Any]) -> int:
        return shard_of(document_id(document, self.primary_key), self.target_shards)


async def backfill_shard(
    io: ShardIO,
    store: Store,
    cluster: Cluster,
    spec: _Spec,
    shard: int,
    cursor: dict[str, Any],
    checkpoint: Checkpoint,
    wanted: Wanted,
) -> dict[str, Any]:
    """Copy live shard `shard` into the shadow from `cursor` (`{"offset", "copied"}`) on,
    each page re-tagged with its new shards; returns the final cursor."""
    ref = ShardRef(spec.source, spec.primary_key, shard)

    sources = _sources(store, cluster, spec, shard)

    async def send(page: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return await _send_retagged(io, cluster.layout, spec, page)

    return await copy_pages(io, ref, sources, send, cursor, checkpoint, wanted)


def _sources(store: Store, cluster: Cluster, spec: _Spec, shard: int) -> Sources:
    """Where live shard `shard` is read from: its up-to-date replicas."""
    return fresh_sources(
        store, lambda: source_order(cluster.layout, spec.source_shards, shard, cluster)
    )


async def _send_retagged(
    io: ShardIO, layout: Layout, spec: _Spec, page: list[dict[str, Any]]
) -> list[tuple[str, int]]:
    """Enqueue `page` on the shadow's replicas, each document tagged with its new shard."""
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for document in page:
        new = spec.new_shard(document)
        document[SHARD_FIELD] = new
        by_shard.setdefault(new, []).append(document)
    sent = await asyncio.gather(
        *(
            io.send(
                _replicas(layout, spec.target_shards, new),
                ShardRef(spec.target, spec.primary_key, new),
                documents,
            )
            for new, documents in by_shard.items()
        )
    )
    return [task for tasks in sent for task in tasks]


async def verify_class(
    io: ShardIO,
    store: Store,
    cluster: Cluster,
    spec: _Spec,
    remainder: int,
    wanted: Wanted,
    *,
    max_passes: int,
) -> int:
    """Make every shadow replica of the shards `= remainder (mod gcd)` hold exactly the
    live documents of that class (module docstring); returns the documents repaired."""
    classes = shard_classes(spec.source_shards, spec.target_shards)
    live_shards = range(remainder, spec.source_shards, classes)
    shadow_shards = range(remainder, spec.target_shards, classes)
    repaired = 0
    for _ in range(max_passes):
        started_ms = time.time_ns() // 1_000_000
        layout = cluster.layout
        holders = [(t, n) for t in shadow_shards for n in _replicas(layout, spec.target_shards, t)]
        backlogs = await store.hint_backlogs()
        sources = [
            up_to_date(backlogs, source_order(layout, spec.source_shards, s, cluster))
            for s in live_shards
        ]
        answers = await asyncio.gather(
            *(
                read_documents(io, nodes, ShardRef(spec.source, spec.primary_key, s))
                for s, nodes in zip(live_shards, sources, strict=True)
            ),
            *(io.documents(n, ShardRef(spec.target, spec.primary_key, t)) for t, n in holders),
        )
        expected: dict[int, dict[str, dict[str, Any]]] = {t: {} for t in shadow_shards}
        for documents in answers[: len(live_shards)]:
            for key, document in documents.items():
                expected[spec.new_shard(document)][key] = document
        if not wanted():
            raise Abandoned(spec.target)
        found = 0
        for (shard, node), held in zip(holders, answers[len(live_shards) :], strict=True):
            diff = _compare(expected[shard], held, spec.primary_key, started_ms)
            ref = ShardRef(spec.target, spec.primary_key, shard)
            if diff.copied:
                await io.write([node], ref, [{**d, SHARD_FIELD: shard} for d in diff.copied])
            if diff.deleted:
                await io.delete([node], ref, diff.deleted)
            found += len(diff.copied) + len(diff.deleted)
        repaired += found
        if not found:
            return repaired
    raise CopyFailed(
        f"shards {remainder} mod {classes} of `{spec.name}` still differ after {max_passes} passes"
    )


def reshard_handler(store: Store, cluster: Cluster, config: MiroirConfig) -> Handler:
    """The Mode C handler of `reshard-backfill` chunks: backfill one live shard, or verify
    one class of shards."""
    settings = copy_settings(config)

    async def handle(ctx: ChunkContext) -> None:
        record = await store.get_operation(str(ctx.payload["operation"]))
        if record is None or record.finished or record.cancel_requested:
            return
        spec = _Spec(ctx.payload)

        def wanted() -> bool:
            reshard = cluster.topology.reshards.get(spec.name)
            return (
                reshard is not None
                and reshard.target == spec.target
                and reshard.phase is ReshardPhase.DUAL
            )

        if not wanted():
            return
        io = ShardIO(cluster, settings)
        shard = int(ctx.chunk["shard"])
        try:
            if ctx.payload["mode"] == "copy":
                cursor = await backfill_shard(
                    io, store, cluster, spec, shard, ctx.cursor or {}, ctx.checkpoint, wanted
                )
                documents = int(cursor["copied"])
            else:
                passes = config.operations.verify_passes
                documents = await verify_class(
                    io, store, cluster, spec, shard, wanted, max_passes=passes
                )
        except Abandoned:
            return
        value = orjson.dumps({"documents": documents})
        await store.kv_set(chunk_record_key(ctx.job_id, ctx.index), value, RECORD_TTL_S)

    return handle
