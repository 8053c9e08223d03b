"""Where shards live in one topology epoch.

A group's assignment table for S (``ReplicaGroup.tables``, computed by the planner in
``core.assignment`` and published with the topology) is the only source of placement:
pods never recompute it on their own. ``Layout`` wraps one ``Topology`` with the views
the request paths need, built once per (group, S) and cached for the epoch's lifetime.
A request takes one ``Layout`` when it starts and routes with it to the end, so write
targets and the quorum judgement always come from the same epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from miroir_proxy.core.assignment import Table, plan
from miroir_proxy.core.topology import Move, MovePhase, ReplicaGroup, Topology

ShardReplicas = tuple[tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Placement:
    """Where one group keeps its shards.

    ``replicas[s]`` lists the nodes that serve shard ``s`` (searches, lookups, quorum);
    ``node_shards`` is the inverse view (every node of the group, possibly with no shard).
    While the group moves replicas (``topology.Move``), ``writes[s]`` adds the nodes a write
    must also reach, ``incoming[s]`` the new replicas that must acknowledge it, and
    ``holdings`` every shard whose documents a node may hold, served or not (searches
    filter the others out). Compared by identity: instances are cached.
    """

    replicas: ShardReplicas
    node_shards: Mapping[str, frozenset[int]]
    writes: ShardReplicas
    incoming: ShardReplicas
    holdings: Mapping[str, frozenset[int]]

    @property
    def shards(self) -> int:
        return len(self.replicas)

    @classmethod
    def of(cls, table: Table, node_ids: tuple[str, ...], move: Move | None = None) -> Placement:
        other = None if move is None else move.tables.get(len(table))
        node_shards = _inverse(table, node_ids)
        if move is None or other is None:
            return cls(table, node_shards, table, ((),) * len(table), node_shards)
        writes = table
        if move.phase is not MovePhase.CLEANUP:
            writes = tuple(_union(mine, theirs) for mine, theirs in zip(table, other, strict=True))
        incoming: ShardReplicas = ((),) * len(table)
        if move.phase is MovePhase.DUAL:
            incoming = tuple(
                tuple(n for n in theirs if n not in mine)
                for mine, theirs in zip(table, other, strict=True)
            )
        both = tuple(_union(mine, theirs) for mine, theirs in zip(table, other, strict=True))
        return cls(table, node_shards, writes, incoming, _inverse(both, node_ids))


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return first + tuple(n for n in second if n not in first)


def _inverse(table: Table, node_ids: tuple[str, ...]) -> Mapping[str, frozenset[int]]:
    held: dict[str, set[int]] = {node_id: set() for node_id in node_ids}
    for shard, replicas in enumerate(table):
        for node_id in replicas:
            held[node_id].add(shard)
    return {node_id: frozenset(s) for node_id, s in held.items()}


def group_table(group: ReplicaGroup, shards: int, rf: int) -> Table:
    """The group's table for S: the published one, or the planner's first table."""
    table = group.tables.get(shards)
    if table is None:
        nodes = group.placeable_ids
        table = plan(None, nodes, rf, shards) if nodes else ((),) * shards
    return table


class Layout:
    """One topology epoch with its placements; what a request routes with, start to end."""

    __slots__ = ("_placements", "topology")

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._placements: dict[tuple[str, int], Placement] = {}

    @property
    def epoch(self) -> int:
        return self.topology.epoch

    def placement(self, group: ReplicaGroup, shards: int) -> Placement:
        key = (group.id, shards)
        found = self._placements.get(key)
        if found is None:
            table = group_table(group, shards, self.topology.replication_factor)
            found = self._placements[key] = Placement.of(table, group.node_ids, group.move)
        return found
