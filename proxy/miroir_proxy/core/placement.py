"""Shard placement by rendezvous hashing.

Shard ``s`` lives on the top-RF nodes of a group by ``xxh3_64(f"{s}:{node_id}")``
(highest score first, ties broken by the smaller node id). Placement depends only on the
set of node ids, RF and S, never on node order or on the group's name, so every pod
computes the same answer and adding a node only moves shards that now prefer it.

Everything here is on the request path, so results are cached per (node ids, RF, S) and
per topology; the values returned are shared and must not be mutated.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

from xxhash import xxh3_64_intdigest

from miroir_proxy.core.topology import ReplicaGroup, Topology

ShardReplicas = tuple[tuple[str, ...], ...]


def rendezvous_score(shard: int, node_id: str) -> int:
    return int(xxh3_64_intdigest(f"{shard}:{node_id}".encode()))


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Placement:
    """Where one group keeps its shards.

    ``replicas[s]`` lists the nodes holding shard ``s``, best rendezvous score first;
    ``node_shards`` is the inverse view. Compared by identity: instances are cached.
    """

    replicas: ShardReplicas
    node_shards: Mapping[str, frozenset[int]]

    @property
    def shards(self) -> int:
        return len(self.replicas)


@functools.lru_cache(maxsize=512)
def _place(node_ids: tuple[str, ...], rf: int, shards: int) -> Placement:
    keep = min(rf, len(node_ids))
    replicas = []
    held: dict[str, set[int]] = {node_id: set() for node_id in node_ids}
    for shard in range(shards):
        ranked = sorted(node_ids, key=lambda n: (-rendezvous_score(shard, n), n))[:keep]
        replicas.append(tuple(ranked))
        for node_id in ranked:
            held[node_id].add(shard)
    node_shards = {node_id: frozenset(s) for node_id, s in held.items()}
    return Placement(tuple(replicas), node_shards)


def place(node_ids: Sequence[str], rf: int, shards: int) -> Placement:
    """Placement of ``shards`` shards at replication ``rf`` over ``node_ids``.

    A group smaller than RF keeps every shard on every node it has.
    """
    if rf < 1 or shards < 1:
        raise ValueError("rf and shards must be positive")
    return _place(tuple(sorted(node_ids)), rf, shards)


def group_placement(group: ReplicaGroup, shards: int, rf: int) -> Placement:
    return place(group.node_ids, rf, shards)


def placement(group: ReplicaGroup, shards: int, rf: int) -> ShardReplicas:
    return group_placement(group, shards, rf).replicas


def node_shard_sets(group: ReplicaGroup, shards: int, rf: int) -> Mapping[str, frozenset[int]]:
    return group_placement(group, shards, rf).node_shards


@functools.lru_cache(maxsize=64)
def _write_map(topology: Topology) -> tuple[tuple[str, ...], ...]:
    per_group = [
        group_placement(group, topology.shards, topology.replication_factor).replicas
        for group in topology.groups
    ]
    return tuple(
        tuple(node for replicas in per_group for node in replicas[shard])
        for shard in range(topology.shards)
    )


def write_nodes(topology: Topology, shard: int) -> tuple[str, ...]:
    """Every node that must receive a write to ``shard``: its replicas in every group."""
    return _write_map(topology)[shard]


def write_targets(topology: Topology, shard: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(group id, replica node ids)`` for every group; all groups receive writes."""
    return tuple(
        (group.id, placement(group, topology.shards, topology.replication_factor)[shard])
        for group in topology.groups
    )


def route_documents(shard_per_doc: Sequence[int], topology: Topology) -> dict[str, list[int]]:
    """Indices of the documents each node must receive.

    ``shard_per_doc`` comes from ``hashing.shards_of``. Documents are bucketed by shard
    first so the per-node fan-out works on shards, not on single documents. Order is kept
    within a shard only, which is all that matters: two versions of one document share a
    shard, so the later one still wins on the node.
    """
    by_shard: dict[int, list[int]] = {}
    for index, shard in enumerate(shard_per_doc):
        bucket = by_shard.get(shard)
        if bucket is None:
            by_shard[shard] = [index]
        else:
            bucket.append(index)
    targets = _write_map(topology)
    per_node: dict[str, list[int]] = {}
    for shard in sorted(by_shard):
        for node_id in targets[shard]:
            per_node.setdefault(node_id, []).extend(by_shard[shard])
    return per_node
