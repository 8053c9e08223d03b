"""Adding, draining and removing nodes of a replica group (`node-add`, `node-drain`,
`node-remove`): the group's replicas move to its new balanced tables.

Each kind first changes the group's members without moving anything (`AddNode`,
`DrainNode`, `RemoveNode`: the tables stay as they were), then runs the same move, each
phase committed before the next starts and every epoch acknowledged by every live pod:
1. `begin`: publish the balanced target tables (`BeginMove`). Writes now reach old and new
   replicas, and a write counts in the group only once its new replicas acknowledged it.
2. `copy`: one Mode C chunk per (index, shard) that gains a replica copies it from the
   group's current replicas (other groups' replicas after them).
3. `verify`: the same chunks compare every new replica with a source and repair it.
4. `cutover`: searches read the new tables; writes still reach the old replicas too, so a
   pod still on the previous epoch reads everything written.
5. `retire`: writes stop reaching the old replicas.
6. `cleanup`: each node deletes the shards it no longer serves (`_miroir_shard IN [...]`,
   waited for), then the move ends (`FinishMove`). Until then searches filter them out.
A cancel or failure before the cut-over aborts the move (the old tables keep serving; the
cleanup deletes what was copied) and undoes the member change where it can; from the
cut-over on, the rollback completes the move instead (going back would copy again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from miroir_proxy.config import MiroirConfig
from miroir_proxy.coordination.queueing import ChunkContext, Handler
from miroir_proxy.core.changes import (
    AbortMove,
    AddNode,
    BeginMove,
    Change,
    CutOver,
    DrainNode,
    FinishMove,
    RemoveNode,
    Retire,
    UndrainNode,
)
from miroir_proxy.core.placement import Layout
from miroir_proxy.core.topology import MovePhase, Node, ReplicaGroup, Topology
from miroir_proxy.dispatch.catalog import SHARD_FIELD
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import Store

from .copying import (
    Abandoned,
    CopyFailed,
    ShardIO,
    ShardRef,
    copy_shard,
    fresh_sources,
    verify_shard,
)
from .engine import OperationContext, StepFn
from .groups import (
    RECORD_TTL_S,
    chunk_record_key,
    copy_settings,
    delete_indexes,
    prepare_nodes,
    run_chunks,
    settle_chunks,
)

log = logging.getLogger(__name__)

ADD = "node-add"
DRAIN = "node-drain"
REMOVE = "node-remove"
MOVE_JOB = "node-move"


def node_params(node_id: str, group_id: str, **extra: Any) -> dict[str, Any]:
    return {"node": node_id, "group": group_id, **extra}


async def _counts(ctx: OperationContext) -> frozenset[int]:
    """The shard counts of every index: each needs its table written down."""
    return frozenset(meta.shards for meta in await ctx.store.list_indexes())


async def _publish(ctx: OperationContext, change: Change, needed: bool) -> None:
    """Publish `change` if `needed` (a re-run step may find it done), then wait until every
    live pod routes with the stored epoch."""
    topology = await ctx.epochs.publish(change) if needed else await ctx.epochs.stored()
    await ctx.epochs.wait_acknowledged(topology.epoch, ctx.ack_timeout_s)


def _group(topology: Topology, data: Mapping[str, Any]) -> ReplicaGroup:
    return topology.group(str(data["group"]))


def _phase(topology: Topology, data: Mapping[str, Any]) -> MovePhase | None:
    move = _group(topology, data).move
    return None if move is None else move.phase


class _Move:
    """The move every node kind ends with, and its rollback."""

    def move_steps(self) -> list[tuple[str, StepFn]]:
        return [
            ("begin", self._begin),
            ("copy", self._copy),
            ("verify", self._verify),
            ("cutover", self._cutover),
            ("retire", self._retire),
            ("cleanup", self._cleanup),
        ]

    async def _begin(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        group_id = str(data["group"])
        phase = _phase(await ctx.epochs.stored(), data)
        if phase is MovePhase.CLEANUP:  # what an earlier move left: finish it first
            await _clean(ctx, data)
            phase = None
        await _publish(ctx, BeginMove(group_id, await _counts(ctx)), phase is None)

    async def _copy(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        await _run_move_job(ctx, data, "copy")

    async def _verify(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        await _run_move_job(ctx, data, "verify")

    async def _cutover(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        phase = _phase(await ctx.epochs.stored(), data)
        await _publish(ctx, CutOver(str(data["group"])), phase is MovePhase.DUAL)

    async def _retire(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        phase = _phase(await ctx.epochs.stored(), data)
        await _publish(ctx, Retire(str(data["group"])), phase is MovePhase.CUTOVER)

    async def _cleanup(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        await _clean(ctx, data)

    async def unwind(self, ctx: OperationContext, data: dict[str, Any]) -> bool:
        """End the move the operation started: abort it before the cut-over, complete it
        after. True when the move was completed (the member change stands)."""
        group_id = str(data["group"])
        topology = await ctx.epochs.stored()
        if not topology.has_group(group_id):
            return False
        phase = _phase(topology, data)
        completed = phase in (MovePhase.CUTOVER, MovePhase.CLEANUP)
        if phase is MovePhase.DUAL:
            await _publish(ctx, AbortMove(group_id), True)
            await settle_chunks(ctx)  # no chunk writes to the aborted replicas any more
        elif phase is MovePhase.CUTOVER:
            await _publish(ctx, Retire(group_id), True)
        if phase is not None:
            await _clean(ctx, data)
        return completed


async def _clean(ctx: OperationContext, data: Mapping[str, Any]) -> None:
    """Delete on each node the shards the group holds there but no longer serves, then end
    the move. Runs only while the move is in its cleanup phase: nothing writes there."""
    topology = await ctx.epochs.stored()
    group = _group(topology, data)
    if group.move is None or group.move.phase is not MovePhase.CLEANUP:
        return
    layout = Layout(topology)
    io = ShardIO(ctx.cluster, copy_settings(ctx.config))

    async def delete(uid: str, node: str, shards: list[int], serves_others: bool) -> None:
        body = {"filter": f"{SHARD_FIELD} IN [{', '.join(map(str, shards))}]"}
        try:
            await io.change(node, "POST", f"/indexes/{uid}/documents/delete", body)
        except (NodeError, CopyFailed) as e:
            if "index_not_found" in str(e):
                return
            if serves_others:
                raise  # what it keeps would be searched
            # A drained node that died: nothing reads from it any more.
            log.warning("cleanup: %s keeps shards %s of %s: %s", node, shards, uid, e)

    # Every node deletes at once (one task per node and index, each waited for).
    async with asyncio.TaskGroup() as tasks:
        for meta in await ctx.store.list_indexes():
            placement = layout.placement(group, meta.shards)
            for node in group.node_ids:
                extra = sorted(placement.holdings[node] - placement.node_shards[node])
                if extra:
                    serves = bool(placement.node_shards[node])
                    tasks.create_task(delete(meta.uid, node, extra, serves))
    await _publish(ctx, FinishMove(group.id), True)


async def _run_move_job(ctx: OperationContext, data: dict[str, Any], mode: str) -> None:
    """One chunk per (index, shard) that gains a replica in the group."""
    layout = Layout(await ctx.epochs.stored())
    group = _group(layout.topology, data)
    if group.move is None or group.move.phase is not MovePhase.DUAL:
        return  # balanced already (nothing to move), or past this step
    chunks: list[dict[str, Any]] = []
    for meta in await ctx.store.list_indexes():
        if meta.primary_key is None:
            continue
        incoming = layout.placement(group, meta.shards).incoming
        chunks.extend(
            {"index": meta.uid, "shard": s, "shards": meta.shards, "primaryKey": meta.primary_key}
            for s in range(meta.shards)
            if incoming[s]
        )
    payload = {"operation": ctx.record.id, "group": group.id, "mode": mode}
    await run_chunks(ctx, MOVE_JOB, chunks, payload)


def move_sources(layout: Layout, group: ReplicaGroup, shards: int, shard: int) -> list[str]:
    """Where a moving shard is read from: the group's serving replicas, then the replicas
    of the other active groups."""
    found = list(layout.placement(group, shards).replicas[shard])
    for other in layout.topology.search_groups():
        if other.id != group.id:
            found.extend(layout.placement(other, shards).replicas[shard])
    return found


def move_handler(store: Store, cluster: Cluster, config: MiroirConfig) -> Handler:
    """The Mode C handler of `node-move` chunks: fill or verify a shard's new replicas."""
    settings = copy_settings(config)

    async def handle(ctx: ChunkContext) -> None:
        record = await store.get_operation(str(ctx.payload["operation"]))
        if record is None or record.finished or record.cancel_requested:
            return
        group_id = str(ctx.payload["group"])

        def wanted() -> bool:
            topology = cluster.topology
            if not topology.has_group(group_id):
                return False
            move = topology.group(group_id).move
            return move is not None and move.phase is MovePhase.DUAL

        if not wanted():
            return
        layout = cluster.layout
        group = layout.topology.group(group_id)
        chunk = ctx.chunk
        ref = ShardRef(str(chunk["index"]), str(chunk["primaryKey"]), int(chunk["shard"]))
        shards = int(chunk["shards"])
        destinations = layout.placement(group, shards).incoming[ref.shard]
        sources = fresh_sources(
            store,
            lambda: sorted(
                move_sources(cluster.layout, group, shards, ref.shard),
                key=lambda node: not cluster.is_healthy(node),
            ),
        )
        io = ShardIO(cluster, settings)
        try:
            if ctx.payload["mode"] == "copy":
                cursor = await copy_shard(
                    io, ref, sources, destinations, ctx.cursor or {}, ctx.checkpoint, wanted
                )
                documents = int(cursor["copied"])
            else:
                documents = 0
                for destination in destinations:
                    repair = await verify_shard(
                        io,
                        ref,
                        sources,
                        destination,
                        wanted,
                        max_passes=config.operations.verify_passes,
                    )
                    documents += repair.copied + repair.deleted
        except Abandoned:
            return
        value = orjson.dumps({"documents": documents})
        await store.kv_set(chunk_record_key(ctx.job_id, ctx.index), value, RECORD_TTL_S)

    return handle


class AddNodeOperation(_Move):
    name = ADD

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [("register", self._register), ("prepare", self._prepare), *self.move_steps()]

    async def _register(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        node = Node(str(data["node"]), str(data["url"]))
        topology = await ctx.epochs.stored()
        joined = node.id in _group(topology, data).node_ids
        await _publish(ctx, AddNode(str(data["group"]), node, await _counts(ctx)), not joined)

    async def _prepare(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        await prepare_nodes(ctx, [str(data["node"])])

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        if await self.unwind(ctx, data):
            return  # the node serves its share now
        topology = await ctx.epochs.stored()
        node = Node(str(data["node"]), str(data["url"]))
        if topology.has_group(str(data["group"])) and node.id in _group(topology, data).node_ids:
            await _publish(ctx, RemoveNode(node.id), True)
        await delete_indexes(ctx, [node])


class DrainNodeOperation(_Move):
    name = DRAIN

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [("mark", self._mark), *self.move_steps()]

    async def _mark(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        node_id = str(data["node"])
        draining = ctx.cluster.topology.node(node_id).draining
        await _publish(ctx, DrainNode(node_id, await _counts(ctx)), not draining)

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        if await self.unwind(ctx, data):
            return
        node_id = str(data["node"])
        topology = await ctx.epochs.stored()
        if any(n.id == node_id and n.draining for n in topology.nodes()):
            await _publish(ctx, UndrainNode(node_id), True)


class RemoveNodeOperation(_Move):
    """Forget a drained node, or (`force`) a dead one and re-replicate what it held."""

    name = REMOVE

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [("remove", self._remove), *self.move_steps()]

    async def _remove(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        node_id = str(data["node"])
        present = node_id in _group(await ctx.epochs.stored(), data).node_ids
        await _publish(ctx, RemoveNode(node_id, force=bool(data.get("force"))), present)

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        # The node is gone either way; an aborted refill leaves its rows short until the
        # next move of the group (any node operation, or `miroir node remove` again).
        await self.unwind(ctx, data)
