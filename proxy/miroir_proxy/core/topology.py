"""Topology values: nodes, replica groups and the versioned cluster layout.

Values are frozen; a topology change builds a new ``Topology`` with a higher epoch and the
holder swaps the reference atomically, so a request always sees one consistent layout.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping
from typing import Any


class GroupState(enum.StrEnum):
    ACTIVE = "active"
    INITIALIZING = "initializing"
    SYNCING = "syncing"
    DRAINING = "draining"


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    id: str
    url: str


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaGroup:
    id: str
    nodes: tuple[Node, ...]
    state: GroupState = GroupState.ACTIVE

    def __post_init__(self) -> None:
        ids = [node.id for node in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"group {self.id!r} lists a node twice")

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(node.id for node in self.nodes)

    @property
    def serves_searches(self) -> bool:
        return self.state is GroupState.ACTIVE

    def with_state(self, state: GroupState) -> ReplicaGroup:
        return dataclasses.replace(self, state=state)

    def with_node(self, node: Node) -> ReplicaGroup:
        return dataclasses.replace(self, nodes=(*self.nodes, node))

    def without_node(self, node_id: str) -> ReplicaGroup:
        return dataclasses.replace(self, nodes=tuple(n for n in self.nodes if n.id != node_id))


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    epoch: int
    shards: int
    replication_factor: int
    groups: tuple[ReplicaGroup, ...]

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError("an index needs at least one shard")
        if self.replication_factor < 1:
            raise ValueError("the replication factor must be at least 1")
        group_ids = [group.id for group in self.groups]
        if len(set(group_ids)) != len(group_ids):
            raise ValueError("two groups share an id")
        # A node in two groups would hold two copies of the same shard and break the
        # "one replica per shard" covering rule.
        node_ids = [node.id for group in self.groups for node in group.nodes]
        if len(set(node_ids)) != len(node_ids):
            raise ValueError("a node belongs to more than one group")

    def group(self, group_id: str) -> ReplicaGroup:
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(group_id)

    def nodes(self) -> Iterator[Node]:
        for group in self.groups:
            yield from group.nodes

    def node(self, node_id: str) -> Node:
        for node in self.nodes():
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def search_groups(self) -> tuple[ReplicaGroup, ...]:
        return tuple(group for group in self.groups if group.serves_searches)

    def with_group(self, group: ReplicaGroup) -> Topology:
        """Add ``group`` or replace the group with its id, in a new epoch."""
        groups = tuple(g for g in self.groups if g.id != group.id)
        if len(groups) == len(self.groups):
            groups = (*self.groups, group)
        else:
            groups = tuple(group if g.id == group.id else g for g in self.groups)
        return dataclasses.replace(self, epoch=self.epoch + 1, groups=groups)

    def without_group(self, group_id: str) -> Topology:
        groups = tuple(g for g in self.groups if g.id != group_id)
        return dataclasses.replace(self, epoch=self.epoch + 1, groups=groups)


def to_document(topology: Topology) -> dict[str, Any]:
    """The JSON form kept in the state store (the epoch is stored beside it)."""
    return {
        "shards": topology.shards,
        "replicationFactor": topology.replication_factor,
        "groups": [
            {
                "id": group.id,
                "state": group.state.value,
                "nodes": [{"id": node.id, "url": node.url} for node in group.nodes],
            }
            for group in topology.groups
        ],
    }


def from_document(epoch: int, document: Mapping[str, Any]) -> Topology:
    return Topology(
        epoch=epoch,
        shards=int(document["shards"]),
        replication_factor=int(document["replicationFactor"]),
        groups=tuple(
            ReplicaGroup(
                str(group["id"]),
                tuple(Node(str(n["id"]), str(n["url"])) for n in group["nodes"]),
                GroupState(group["state"]),
            )
            for group in document["groups"]
        ),
    )
