"""Adding a replica group online (`group-add`), and removing one (`group-remove`).

`group-add` phases, each committed before the next starts:
1. `register`: publish the epoch that adds the group as `initializing` (balanced tables of
   its own) and wait until every live pod routes with it. From here on every client write
   reaches the new group too, so nothing written during the sync is missed; its nodes'
   acknowledgements never decide a write (only active groups make quorum).
2. `prepare`: create every index on the new nodes with its primary key and the settings of
   an active node, and copy the API keys with their uids (equal uids, equal key values).
3. `sync`: state `syncing`; one Mode C chunk per (index, shard) copies the shard from the
   active groups (sources spread round robin by shard) with a cursor.
4. `verify`: one chunk per (index, shard) compares the new group's replicas with a source by
   content digest and repairs them (`copying.verify_shard`).
5. `activate`: the new nodes get an active node's settings where they differ (a change
   they missed while down never failed the client's request), then state `active`;
   searches use the group from this epoch on.
Cancel or failure before `activate` removes the group from the topology, waits for every
pod, and deletes the indexes the operation created on its nodes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from miroir_proxy.config import MiroirConfig
from miroir_proxy.coordination.queueing import ChunkContext, Handler
from miroir_proxy.core.changes import AddGroup, RemoveGroup, SetGroupState
from miroir_proxy.core.placement import Layout
from miroir_proxy.core.topology import GroupState, Node
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import Store

from .copying import (
    Abandoned,
    CopyFailed,
    CopySettings,
    ShardIO,
    ShardRef,
    copy_shard,
    fresh_sources,
    verify_shard,
)
from .engine import OperationContext, StepFn

log = logging.getLogger(__name__)

ADD = "group-add"
REMOVE = "group-remove"
SYNC_JOB = "group-sync"
RECORD_TTL_S = 30 * 86_400
# Rounds of chunks a sync queues before giving up (each chunk is claimed up to five times
# per round, its claim expiring after `job_claim_ttl_ms`).
MAX_ROUNDS = 20
JOB_POLL_S = 0.1


def group_params(group_id: str, nodes: Sequence[Node]) -> dict[str, Any]:
    return {"group": group_id, "nodes": [{"id": n.id, "url": n.url} for n in nodes]}


def _nodes(params: Mapping[str, Any]) -> tuple[Node, ...]:
    return tuple(Node(str(n["id"]), str(n["url"])) for n in params["nodes"])


def copy_settings(config: MiroirConfig) -> CopySettings:
    ops, timeouts = config.operations, config.timeouts
    return CopySettings(
        page_size=ops.copy_page_size,
        docs_per_s=ops.copy_docs_per_s,
        read_timeout_ms=timeouts.node_read_ms,
        write_timeout_ms=timeouts.node_write_ms,
        task_timeout_ms=ops.node_task_timeout_ms,
    )


def chunk_record_key(job_id: str, index: int) -> str:
    return f"{job_id}:chunk:{index}"


class AddGroupOperation:
    name = ADD

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [
            ("register", self._register),
            ("prepare", self._prepare),
            ("sync", self._sync),
            ("verify", self._verify),
            ("activate", self._activate),
        ]

    async def _register(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        group_id = data["group"]
        current = await ctx.epochs.publish_if(
            lambda topology: not topology.has_group(group_id),
            AddGroup(group_id, _nodes(data)),
        )
        await ctx.epochs.wait_acknowledged(current.epoch, ctx.ack_timeout_s)

    async def _prepare(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        await prepare_nodes(ctx, [n.id for n in _nodes(data)])

    async def _sync(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        await _set_state(ctx, data["group"], GroupState.SYNCING)
        await _run_job(ctx, data, "copy")

    async def _verify(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        await _run_job(ctx, data, "verify")

    async def _activate(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        await _align_settings(ctx, [n.id for n in _nodes(data)])
        await _set_state(ctx, data["group"], GroupState.ACTIVE)

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        group_id = data["group"]
        topology = await ctx.epochs.stored()
        if topology.has_group(group_id):
            if topology.group(group_id).serves_searches:
                return  # activated: nothing to undo
            removed = await ctx.epochs.publish(RemoveGroup(group_id))
            await ctx.epochs.wait_acknowledged(removed.epoch, ctx.ack_timeout_s)
        await settle_chunks(ctx)
        # Every pod routes without the group now and no chunk writes to it any more: what
        # the operation created on its nodes can go (by URL: a pod that never saw the
        # group may be the one rolling back).
        await delete_indexes(ctx, _nodes(data))


async def delete_indexes(ctx: OperationContext, nodes: Sequence[Node]) -> None:
    """Delete every index on `nodes` (by URL: they may have left the topology already)."""
    io = ShardIO(ctx.cluster, copy_settings(ctx.config))
    for meta in await ctx.store.list_indexes():
        for node in nodes:
            try:
                await io.change(node, "DELETE", f"/indexes/{meta.uid}")
            except (NodeError, CopyFailed) as e:
                if "index_not_found" not in str(e):
                    log.warning("%s: %s keeps %s: %s", ctx.record.kind, node.id, meta.uid, e)


async def prepare_nodes(ctx: OperationContext, nodes: Sequence[str]) -> None:
    """Create every index on `nodes` with its primary key and the settings of an active
    node, and copy the API keys with their uids (equal uids, equal key values)."""
    io = ShardIO(ctx.cluster, copy_settings(ctx.config))
    keys = await _read_any(ctx.cluster, "/keys", {"limit": "10000"})
    for meta in await ctx.store.list_indexes():
        settings = await _read_any(ctx.cluster, f"/indexes/{meta.uid}/settings", None)
        for node in nodes:
            await _create_index(io, node, meta.uid, meta.primary_key)
            await io.change(node, "PATCH", f"/indexes/{meta.uid}/settings", settings)
    for key in keys.get("results", []):
        wanted = {k: key.get(k) for k in ("uid", "name", "description", "actions")}
        wanted |= {"indexes": key.get("indexes"), "expiresAt": key.get("expiresAt")}
        for node in nodes:
            await _create_key(ctx.cluster, node, wanted)


async def settle_chunks(ctx: OperationContext, modes: Sequence[str] = ("copy", "verify")) -> None:
    """Wait until the operation's chunks (job rounds `<operation>:<mode>:<n>`) are all done
    (each stops at its next page once told to), at most a few claim TTLs: a dead pod's
    claim must expire."""
    bound_s = 3 * ctx.config.coordination.job_claim_ttl_ms / 1000 + 10
    try:
        async with asyncio.timeout(bound_s):
            for mode in modes:
                for round_ in range(MAX_ROUNDS):
                    job_id = f"{ctx.record.id}:{mode}:{round_}"
                    while True:
                        progress = await ctx.store.job_progress(job_id)
                        if progress is None or progress.finished:
                            break
                        await asyncio.sleep(JOB_POLL_S)
                    if progress is None:
                        break
    except TimeoutError:
        log.warning(
            "%s: chunks still running after %.0f s; cleaning up anyway", ctx.record.id, bound_s
        )


class RemoveGroupOperation:
    name = REMOVE

    def steps(self) -> Sequence[tuple[str, StepFn]]:
        return [("remove", self._remove)]

    async def _remove(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        group_id = data["group"]
        current = await ctx.epochs.publish_if(
            lambda topology: topology.has_group(group_id), RemoveGroup(group_id)
        )
        await ctx.epochs.wait_acknowledged(current.epoch, ctx.ack_timeout_s)

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        return None


async def _align_settings(ctx: OperationContext, nodes: Sequence[str]) -> None:
    """Give every new node the settings of an active node where they differ: a client's
    settings change that a new node missed while syncing (it never fails the client's
    request, see `operations.settingsync`) must not reach searches."""
    io = ShardIO(ctx.cluster, copy_settings(ctx.config))
    timeout = ctx.config.timeouts.node_read_ms
    for meta in await ctx.store.list_indexes():
        path = f"/indexes/{meta.uid}/settings"
        wanted = await _read_any(ctx.cluster, path, None)
        for node in nodes:
            response = await ctx.cluster.call(node, "GET", path, timeout_ms=timeout)
            if response.ok and orjson.loads(response.body) == wanted:
                continue
            log.info("group-add: settings of %s on %s aligned", meta.uid, node)
            await io.change(node, "PATCH", path, wanted)


async def _set_state(ctx: OperationContext, group_id: str, state: GroupState) -> None:
    current = await ctx.epochs.publish_if(
        lambda topology: topology.group(group_id).state is not state,
        SetGroupState(group_id, state),
    )
    await ctx.epochs.wait_acknowledged(current.epoch, ctx.ack_timeout_s)


async def _run_job(ctx: OperationContext, data: dict[str, Any], mode: str) -> None:
    chunks: list[dict[str, Any]] = [
        {"index": meta.uid, "shard": shard, "shards": meta.shards, "primaryKey": meta.primary_key}
        for meta in await ctx.store.list_indexes()
        if meta.primary_key is not None
        for shard in range(meta.shards)
    ]
    payload = {"operation": ctx.record.id, "group": data["group"], "mode": mode}
    await run_chunks(ctx, SYNC_JOB, chunks, payload)


async def run_chunks(
    ctx: OperationContext, kind: str, chunks: Sequence[dict[str, Any]], payload: dict[str, Any]
) -> None:
    """Queue one chunk per (index, shard) and follow them to the end, reporting progress.

    A chunk the queue gave up on (its handler failed on every claim, e.g. while no source
    replica answered) leaves no record; the chunks without one are queued again as the
    next round, so a shard is never counted as done unless it was. Rounds are numbered,
    so a new lease holder re-running this step follows the rounds already queued.
    """
    mode = str(payload["mode"])
    unit = "shards verified" if mode == "verify" else "shards"
    total = len(chunks)
    documents: dict[tuple[str, int], int] = {}
    for round_ in range(MAX_ROUNDS):
        pending = [c for c in chunks if (c["index"], c["shard"]) not in documents]
        if not pending:
            break
        job_id = f"{ctx.record.id}:{mode}:{round_}"
        await ctx.pod.queue.enqueue(job_id, kind, pending, payload)
        while True:
            await ctx.check_canceled()
            progress = await ctx.store.job_progress(job_id)
            if progress is None:
                raise RuntimeError(f"job {job_id} vanished")
            for index, chunk in enumerate(pending):
                key = (chunk["index"], chunk["shard"])
                if key not in documents:
                    raw = await ctx.store.kv_get(chunk_record_key(job_id, index))
                    if raw is not None:
                        documents[key] = int(orjson.loads(raw)["documents"])
            extra: dict[str, Any] = {}
            if mode == "copy":
                extra["documentsCopied"] = sum(documents.values())
            await ctx.report(None, done=len(documents), total=total, unit=unit, **extra)
            if progress.finished:
                break
            await asyncio.sleep(JOB_POLL_S)
        if len(documents) < total:
            log.warning("%s: %d chunks failed; queued again", job_id, total - len(documents))
    if len(documents) < total:
        missing = total - len(documents)
        raise CopyFailed(f"{missing} shards could not be copied in {MAX_ROUNDS} rounds")
    await ctx.report(None, done=total, total=total, unit=unit)


def source_order(layout: Layout, shards: int, shard: int, cluster: Cluster) -> list[str]:
    """Replicas of `shard` in the active groups, spread round robin by shard, live first."""
    groups = layout.topology.search_groups()
    if not groups:
        return []
    turn = shard % len(groups)
    ordered = [
        node
        for group in (*groups[turn:], *groups[:turn])
        for node in _rotated(layout.placement(group, shards).replicas[shard], shard)
    ]
    return sorted(ordered, key=lambda node: not cluster.is_healthy(node))


def _rotated(replicas: tuple[str, ...], turn: int) -> tuple[str, ...]:
    if not replicas:
        return replicas
    turn %= len(replicas)
    return replicas[turn:] + replicas[:turn]


def sync_handler(store: Store, cluster: Cluster, config: MiroirConfig) -> Handler:
    """The Mode C handler of `group-sync` chunks: copy or verify one shard."""
    settings = copy_settings(config)

    async def handle(ctx: ChunkContext) -> None:
        record = await store.get_operation(str(ctx.payload["operation"]))
        if record is None or record.finished or record.cancel_requested:
            return  # nothing left to do for a canceled or finished operation
        layout = cluster.layout
        group_id = str(ctx.payload["group"])
        if not layout.topology.has_group(group_id):
            return
        chunk = ctx.chunk
        ref = ShardRef(str(chunk["index"]), str(chunk["primaryKey"]), int(chunk["shard"]))
        shards = int(chunk["shards"])
        group = layout.topology.group(group_id)
        destinations = layout.placement(group, shards).replicas[ref.shard]
        sources = fresh_sources(
            store, lambda: source_order(cluster.layout, shards, ref.shard, cluster)
        )
        io = ShardIO(cluster, settings)

        def wanted() -> bool:
            return cluster.topology.has_group(group_id)

        try:
            if ctx.payload["mode"] == "copy":
                cursor = await copy_shard(
                    io, ref, sources, destinations, ctx.cursor or {}, ctx.checkpoint, wanted
                )
                documents = int(cursor["copied"])
            else:
                documents = 0
                passes = config.operations.verify_passes
                for destination in destinations:
                    repair = await verify_shard(
                        io, ref, sources, destination, wanted, max_passes=passes
                    )
                    documents += repair.copied + repair.deleted
        except Abandoned:
            return  # the group was removed (canceled): no record, nothing more written
        record_value = orjson.dumps({"documents": documents})
        await store.kv_set(chunk_record_key(ctx.job_id, ctx.index), record_value, RECORD_TTL_S)

    return handle


async def _read_any(cluster: Cluster, path: str, params: Mapping[str, str] | None) -> Any:
    """A node's answer for `path` from the first live node of an active group."""
    layout = cluster.layout
    reasons = []
    for group in layout.topology.search_groups():
        for node in group.node_ids:
            if not cluster.is_healthy(node):
                continue
            try:
                response = await cluster.call(
                    node,
                    "GET",
                    path,
                    params=params,
                    timeout_ms=cluster.config.timeouts.node_read_ms,
                )
            except NodeError as e:
                reasons.append(f"{node}: {e}")
                continue
            if response.ok:
                return orjson.loads(response.body)
            reasons.append(f"{node}: HTTP {response.status}")
    raise CopyFailed(f"no active node answered {path}: {'; '.join(reasons) or 'none live'}")


async def _create_index(io: ShardIO, node: str, uid: str, primary_key: str | None) -> None:
    body: dict[str, Any] = {"uid": uid}
    if primary_key is not None:
        body["primaryKey"] = primary_key
    try:
        await io.change(node, "POST", "/indexes", body)
    except CopyFailed as e:
        if "index_already_exists" not in str(e):
            raise


async def _create_key(cluster: Cluster, node: str, key: dict[str, Any]) -> None:
    response = await cluster.call(
        node, "POST", "/keys", json_body=key, timeout_ms=cluster.config.timeouts.node_write_ms
    )
    if response.status not in (201, 409) and b"api_key_already_exists" not in response.body:
        raise CopyFailed(f"node {node} refused key {key.get('uid')}: {response.body[:300]!r}")
