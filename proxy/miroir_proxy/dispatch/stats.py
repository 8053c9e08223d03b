"""Index and instance statistics with logical counts: a document stored RG x RF times
counts once.

How each figure is counted:
- `numberOfDocuments` is exact: every shard is counted once, on one live replica of a
  covering set (`POST .../documents/fetch {"limit": 0}` with the `_miroir_shard IN [...]`
  restriction when the node holds more than it serves). A dead replica is replaced by
  another replica or another active group, as for searches; shards nobody can serve are
  returned as `degraded` and count 0. Groups that are syncing are never read.
- `fieldDistribution`, sizes and embedding counts cannot be asked per shard, so they come
  from one group: the sum over its nodes divided by the copies each shard has there
  (`min(RF, nodes)`), which is exact while the group's replicas agree. The sum is then
  scaled by `numberOfDocuments / (summed documents / copies)`, which is 1 in steady state
  and corrects for a dead or lagging node. A group with every node healthy is preferred.
- `_miroir_*` fields never appear in `fieldDistribution`.
- `showInternalDatabaseSizes` adds each index's `internalDatabaseSizes`, merged like its
  `rawDocumentDbSize`; with `sizeFormat=human` every size is rendered once merged
  (`human_sizes`), since rendered sizes cannot be added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from miroir_proxy.core.covering import NodeAssignment
from miroir_proxy.core.planner import shard_restriction
from miroir_proxy.core.sizes import human_size
from miroir_proxy.core.topology import ReplicaGroup
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import IndexMeta

from .broadcast import NodeRefused
from .cluster import Cluster
from .scatter import gather

RESERVED_PREFIX = "_miroir_"
_SCALED = ("numberOfEmbeddings", "numberOfEmbeddedDocuments")


@dataclass(frozen=True, slots=True)
class Counted:
    documents: int
    degraded: tuple[int, ...]


def _count_body(assignment: NodeAssignment) -> bytes:
    body: dict[str, Any] = {"limit": 0}
    if assignment.restrict:
        body["filter"] = shard_restriction(assignment.shards)
    return orjson.dumps(body)


async def count_documents(cluster: Cluster, meta: IndexMeta) -> Counted:
    gathered = await gather(
        cluster,
        shards=meta.shards,
        method="POST",
        path=f"/indexes/{meta.uid}/documents/fetch",
        body_for=_count_body,
    )
    total = sum(int(answer.get("total", 0)) for answer in gathered.answers)
    return Counted(total, gathered.degraded)


async def _count_if_present(cluster: Cluster, meta: IndexMeta) -> Counted:
    # An index whose creation the nodes have not processed yet has no documents.
    try:
        return await count_documents(cluster, meta)
    except NodeRefused:
        return Counted(0, ())


def stats_group(cluster: Cluster) -> ReplicaGroup | None:
    groups = cluster.search_groups()
    for group in groups:
        if all(cluster.is_healthy(n.id) for n in group.nodes):
            return group
    return groups[0] if groups else None


def stats_nodes(cluster: Cluster) -> tuple[list[str], int]:
    """The live nodes of the stats group, and the copies each shard has there."""
    group = stats_group(cluster)
    if group is None:
        return [], 1
    live = [n.id for n in group.nodes if cluster.is_healthy(n.id)]
    return live, min(cluster.topology.replication_factor, len(group.nodes))


async def get_each(
    cluster: Cluster, node_ids: Sequence[str], path: str, *, internal: bool = False
) -> dict[str, Any]:
    """`GET path` on each node in parallel: node id -> JSON answer, for nodes that gave one."""
    timeout = cluster.config.timeouts.node_read_ms
    params = {"showInternalDatabaseSizes": "true"} if internal else None

    async def one(node_id: str) -> Any:
        try:
            response = await cluster.call(node_id, "GET", path, params=params, timeout_ms=timeout)
        except NodeError:
            return None
        return response.json() if response.ok else None

    async with asyncio.TaskGroup() as tasks:
        calls = {node_id: tasks.create_task(one(node_id)) for node_id in node_ids}
    return {n: answer for n, call in calls.items() if (answer := call.result()) is not None}


def merge_index_stats(
    per_node: Sequence[dict[str, Any]], copies: int, exact: int
) -> dict[str, Any]:
    """One index's stats from its per-node stats in one group (see the module doc)."""
    summed_docs = sum(int(s.get("numberOfDocuments", 0)) for s in per_node)
    estimate = summed_docs / copies
    scale = exact / estimate if estimate else 1.0
    fields: dict[str, float] = {}
    for stats in per_node:
        for name, count in (stats.get("fieldDistribution") or {}).items():
            if not name.startswith(RESERVED_PREFIX):
                fields[name] = fields.get(name, 0) + count
    raw_size = round(sum(int(s.get("rawDocumentDbSize", 0)) for s in per_node) / copies)
    merged: dict[str, Any] = {
        "numberOfDocuments": exact,
        "rawDocumentDbSize": raw_size,
        "avgDocumentSize": raw_size // exact if exact else 0,
        "isIndexing": any(bool(s.get("isIndexing")) for s in per_node),
    }
    for key in _SCALED:
        if any(key in s for s in per_node):
            merged[key] = round(sum(int(s.get(key, 0)) for s in per_node) / copies * scale)
    merged["fieldDistribution"] = {
        name: min(exact, round(total / copies * scale)) for name, total in sorted(fields.items())
    }
    internal: dict[str, float] = {}
    for stats in per_node:
        for name, size in (stats.get("internalDatabaseSizes") or {}).items():
            if isinstance(size, int):
                internal[name] = internal.get(name, 0) + size
    if any("internalDatabaseSizes" in s for s in per_node):
        merged["internalDatabaseSizes"] = {n: round(s / copies) for n, s in internal.items()}
    return merged


_SIZES = ("databaseSize", "usedDatabaseSize", "rawDocumentDbSize", "avgDocumentSize")


def human_sizes(stats: dict[str, Any]) -> dict[str, Any]:
    """Index or instance stats with every size rendered for people (`sizeFormat=human`)."""
    out = dict(stats)
    for key in _SIZES:
        if isinstance(out.get(key), int):
            out[key] = human_size(out[key])
    if isinstance(out.get("internalDatabaseSizes"), dict):
        out["internalDatabaseSizes"] = {
            name: human_size(size) if isinstance(size, int) else size
            for name, size in out["internalDatabaseSizes"].items()
        }
    if isinstance(out.get("indexes"), dict):
        out["indexes"] = {uid: human_sizes(s) for uid, s in out["indexes"].items()}
    return out


async def index_stats(
    cluster: Cluster, meta: IndexMeta, *, internal: bool = False
) -> tuple[dict[str, Any], Counted]:
    nodes, copies = stats_nodes(cluster)
    counted, answers = await asyncio.gather(
        count_documents(cluster, meta),
        get_each(cluster, nodes, f"/indexes/{meta.uid}/stats", internal=internal),
    )
    return merge_index_stats(list(answers.values()), copies, counted.documents), counted


async def instance_stats(
    cluster: Cluster, metas: Sequence[IndexMeta], *, internal: bool = False
) -> tuple[dict[str, Any], tuple[int, ...]]:
    """`GET /stats` over the given indexes; sizes are the fleet's physical totals."""
    nodes, copies = stats_nodes(cluster)
    counted, everyone = await asyncio.gather(
        asyncio.gather(*(_count_if_present(cluster, m) for m in metas)),
        get_each(cluster, [n.id for n in cluster.all_nodes()], "/stats", internal=internal),
    )
    group = [everyone[n] for n in nodes if n in everyone]
    indexes = {
        meta.uid: merge_index_stats(
            [a["indexes"][meta.uid] for a in group if meta.uid in a.get("indexes", {})],
            copies,
            count.documents,
        )
        for meta, count in zip(metas, counted, strict=True)
    }
    answers = list(everyone.values())
    updates = [a["lastUpdate"] for a in answers if a.get("lastUpdate")]
    body = {
        "databaseSize": sum(int(a.get("databaseSize", 0)) for a in answers),
        "usedDatabaseSize": sum(int(a.get("usedDatabaseSize", 0)) for a in answers),
        "lastUpdate": max(updates) if updates else None,
        "indexes": indexes,
    }
    degraded = sorted({s for count in counted for s in count.degraded})
    return body, tuple(degraded)
