"""Topology values: nodes, replica groups, their assignment tables and the versioned layout.

Values are frozen; a topology change builds a new ``Topology`` with a higher epoch (see
``core.changes``) and the holder swaps the reference atomically, so a request always sees
one consistent layout.

Every check of what a valid layout is lives here (node ids and URLs, unique ids, tables
that only name the group's nodes), so the configuration file, the stored document and
the admin API reject the same things with the same words.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping
from typing import Any

from miroir_proxy.core.assignment import Table, rendezvous_table

NODE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
MAX_SHARDS = 4096


class GroupState(enum.StrEnum):
    ACTIVE = "active"
    INITIALIZING = "initializing"
    SYNCING = "syncing"
    DRAINING = "draining"


class MovePhase(enum.StrEnum):
    """Where a group is in moving replicas from one set of tables to another.

    `DUAL`: `tables` serve; writes also reach `Move.tables` (the target), whose new
    replicas must acknowledge a write for it to count. `CUTOVER`: `tables` (the target)
    serve; writes still reach `Move.tables` (the source), so a pod still reading the source
    misses nothing. `CLEANUP`: only `tables` take writes; `Move.tables`' nodes may still
    hold documents of shards they lost (searches filter them out) until the cleanup
    deleted them.
    """

    DUAL = "dual"
    CUTOVER = "cutover"
    CLEANUP = "cleanup"


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    phase: MovePhase
    tables: Mapping[int, Table]


def check_node_id(value: object) -> str:
    if not isinstance(value, str) or not value or not set(value) <= NODE_ID_CHARS:
        raise ValueError(f"node id {value!r} must be non-empty [A-Za-z0-9._-]")
    return value


def check_node_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"node url {value!r} must start with http:// or https://")
    return value.rstrip("/")


def check_group_id(value: object) -> str:
    if not isinstance(value, str) or not value or not set(value) <= NODE_ID_CHARS:
        raise ValueError(f"group id {value!r} must be non-empty [A-Za-z0-9._-]")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    id: str
    url: str
    # A draining node keeps serving what its group's tables still give it, but the
    # planner gives it nothing new and moves its replicas away.
    draining: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaGroup:
    """A group of nodes that together hold every shard once per replica.

    ``tables`` maps a shard count S to the group's assignment table for indexes with S
    shards; ``table[s]`` lists the nodes holding shard ``s``. An S without a table gets
    the planner's first table for the group's nodes (``Layout`` computes it), so the
    same inputs give every pod the same placement.
    """

    id: str
    nodes: tuple[Node, ...]
    state: GroupState = GroupState.ACTIVE
    tables: Mapping[int, Table] = dataclasses.field(default_factory=dict)
    # Replicas on their way from one set of tables to another (node add, drain, removal).
    move: Move | None = None

    def __post_init__(self) -> None:
        ids = [node.id for node in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"group {self.id!r} lists a node twice")
        members = set(ids)
        moving = self.move.tables if self.move is not None else {}
        for shards, table in (*self.tables.items(), *moving.items()):
            if len(table) != shards:
                raise ValueError(
                    f"group {self.id!r}: the table for S={shards} has {len(table)} rows"
                )
            # A row may be empty: a shard whose only replicas in this group were on a node
            # removed by force has none here until the move that follows refills it.
            for replicas in table:
                if len(set(replicas)) != len(replicas) or not members >= set(replicas):
                    raise ValueError(
                        f"group {self.id!r}: the table for S={shards} names a node twice "
                        "or one outside the group"
                    )

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(node.id for node in self.nodes)

    @property
    def placeable_ids(self) -> tuple[str, ...]:
        """The nodes the planner may give replicas to (all but the draining ones)."""
        return tuple(node.id for node in self.nodes if not node.draining)

    @property
    def serves_searches(self) -> bool:
        return self.state is GroupState.ACTIVE

    def with_state(self, state: GroupState) -> ReplicaGroup:
        return dataclasses.replace(self, state=state)

    def with_node(self, node: Node) -> ReplicaGroup:
        return dataclasses.replace(self, nodes=(*self.nodes, node))

    def without_node(self, node_id: str) -> ReplicaGroup:
        """The group without the node, and without tables (they named it: replan them)."""
        nodes = tuple(n for n in self.nodes if n.id != node_id)
        return dataclasses.replace(self, nodes=nodes, tables={}, move=None)

    def with_tables(self, tables: Mapping[int, Table]) -> ReplicaGroup:
        return dataclasses.replace(self, tables=dict(tables))

    def with_move(self, move: Move | None) -> ReplicaGroup:
        return dataclasses.replace(self, move=move)


@dataclasses.dataclass(frozen=True, slots=True)
class AliasFlip:
    """One change of an alias: `target` None when it was removed, `previous` None when new."""

    alias: str
    previous: str | None
    target: str | None
    at: str


ALIAS_HISTORY = 50  # flips kept, newest last


class ReshardPhase(enum.StrEnum):
    """Where an online reshard of one index is.

    `DUAL`: the client's name still means `source`; writes reach `source` and `target`.
    `FLIPPED`: the name means `target`; writes still reach `source`, kept for a rollback
    until the reshard ends (then it is deleted).
    """

    DUAL = "dual"
    FLIPPED = "flipped"


@dataclasses.dataclass(frozen=True, slots=True)
class Reshard:
    """An index (the client's name) being copied from concrete index `source` with
    `source_shards` shards to a hidden one, `target`, with `target_shards`."""

    source: str
    source_shards: int
    target: str
    target_shards: int
    phase: ReshardPhase = ReshardPhase.DUAL

    @property
    def serving(self) -> str:
        return self.source if self.phase is ReshardPhase.DUAL else self.target

    @property
    def hidden(self) -> str:
        """The concrete index no client name means (but every write reaches)."""
        return self.target if self.phase is ReshardPhase.DUAL else self.source


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    epoch: int
    shards: int
    replication_factor: int
    groups: tuple[ReplicaGroup, ...]
    # Alias name -> the index it names. Part of the epoch, so a flip reaches every pod
    # the way a layout change does, and a request resolves a name once, with its layout.
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    alias_history: tuple[AliasFlip, ...] = ()
    # Client index name -> the concrete index (the uid on the nodes) it means, where they
    # differ: an index resharded online lives on under a hidden uid. Clients never see it.
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Client index name -> its online reshard in progress.
    reshards: Mapping[str, Reshard] = dataclasses.field(default_factory=dict)
    # Concrete indexes a reshard stopped writing (deleted next) -> the client's name: a
    # write that resolved its index just before goes to what the name means now.
    retired: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"an index needs from 1 to {MAX_SHARDS} shards")
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

    def concrete(self, name: str) -> str:
        """The uid on the nodes of the index a client calls `name`."""
        return self.names.get(name, name)

    def client_name(self, concrete: str) -> str | None:
        """The name clients know the concrete index by; None when it is hidden (a shadow
        being filled, or an old copy kept for a rollback)."""
        for name, reshard in self.reshards.items():
            if concrete == reshard.hidden:
                return None
            if concrete == reshard.serving:
                return name
        for name, uid in self.names.items():
            if uid == concrete:
                return name
        return None if concrete in self.names or concrete in self.retired else concrete

    def moved(self, concrete: str) -> str | None:
        """The concrete index that replaced `concrete`, if a reshard retired it."""
        name = self.retired.get(concrete)
        if name is None or self.concrete(name) == concrete:
            return None
        return self.concrete(name)

    def also_written(self, concrete: str) -> tuple[tuple[str, int], ...]:
        """The other concrete indexes (uid, shard count) a write to `concrete` must reach.

        Either side of a reshard gets the other one, whatever the phase: a request that
        resolved its index name just before a flip still writes both."""
        for reshard in self.reshards.values():
            if concrete == reshard.source:
                return ((reshard.target, reshard.target_shards),)
            if concrete == reshard.target:
                return ((reshard.source, reshard.source_shards),)
        return ()

    def group(self, group_id: str) -> ReplicaGroup:
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(group_id)

    def has_group(self, group_id: str) -> bool:
        return any(group.id == group_id for group in self.groups)

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

    def shard_counts(self) -> frozenset[int]:
        """Every S some group keeps a table for, and the default S for new indexes."""
        return frozenset({self.shards, *(s for g in self.groups for s in g.tables)})

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


def to_document(topology: Topology, *, tables: bool = True) -> dict[str, Any]:
    """The JSON form kept in the state store (the epoch is stored beside it)."""
    aliases: dict[str, Any] = {}
    if topology.aliases or topology.alias_history:
        aliases = {
            "aliases": dict(topology.aliases),
            "aliasHistory": [
                {"alias": f.alias, "previous": f.previous, "target": f.target, "at": f.at}
                for f in topology.alias_history
            ],
        }
    renamed: dict[str, Any] = {}
    if topology.names:
        renamed["names"] = dict(topology.names)
    if topology.retired:
        renamed["retired"] = dict(topology.retired)
    if topology.reshards:
        renamed["reshards"] = {
            name: {
                "source": r.source,
                "sourceShards": r.source_shards,
                "target": r.target,
                "targetShards": r.target_shards,
                "phase": r.phase.value,
            }
            for name, r in topology.reshards.items()
        }
    return {
        **aliases,
        **renamed,
        "shards": topology.shards,
        "replicationFactor": topology.replication_factor,
        "groups": [
            {
                "id": group.id,
                "state": group.state.value,
                "nodes": [
                    {
                        "id": node.id,
                        "url": node.url,
                        **({"draining": True} if node.draining else {}),
                    }
                    for node in group.nodes
                ],
                **({"tables": _tables_document(group.tables)} if tables else {}),
                **(
                    {
                        "move": {
                            "phase": group.move.phase.value,
                            **({"tables": _tables_document(group.move.tables)} if tables else {}),
                        }
                    }
                    if group.move is not None
                    else {}
                ),
            }
            for group in topology.groups
        ],
    }


def _tables_document(tables: Mapping[int, Table]) -> dict[str, list[list[str]]]:
    return {str(s): [list(r) for r in table] for s, table in tables.items()}


def _tables(stored: Mapping[str, Any]) -> dict[int, Table]:
    return {int(s): tuple(tuple(r) for r in rows) for s, rows in stored.items()}


def from_document(epoch: int, document: Mapping[str, Any]) -> Topology:
    """A validated topology from its JSON form; raises ValueError naming what is wrong.

    A group stored before assignment tables existed keeps the rendezvous placement it was
    routed with, as its table for the default S: upgrading moves no data.
    """
    try:
        shards = document["shards"]
        replication_factor = document["replicationFactor"]
        groups = document["groups"]
        if type(shards) is not int or type(replication_factor) is not int:
            raise ValueError("`shards` and `replicationFactor` must be integers")
        if not isinstance(groups, list):
            raise ValueError("`groups` must be an array")
        aliases = document.get("aliases") or {}
        history = document.get("aliasHistory") or []
        names = document.get("names") or {}
        reshards = document.get("reshards") or {}
        retired = document.get("retired") or {}
        return Topology(
            epoch=epoch,
            shards=shards,
            replication_factor=replication_factor,
            groups=tuple(_group(g, shards, replication_factor) for g in groups),
            aliases={str(k): str(v) for k, v in aliases.items()},
            alias_history=tuple(
                AliasFlip(str(f["alias"]), f.get("previous"), f.get("target"), str(f["at"]))
                for f in history
            ),
            names={str(k): str(v) for k, v in names.items()},
            retired={str(k): str(v) for k, v in retired.items()},
            reshards={
                str(k): Reshard(
                    str(r["source"]),
                    int(r["sourceShards"]),
                    str(r["target"]),
                    int(r["targetShards"]),
                    ReshardPhase(r["phase"]),
                )
                for k, r in reshards.items()
            },
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"the topology document is malformed: {e!r}") from e


def _group(document: Any, shards: int, rf: int) -> ReplicaGroup:
    if not isinstance(document, Mapping):
        raise ValueError("every group is an object with `id` and `nodes`")
    group_id = check_group_id(document.get("id"))
    nodes = document.get("nodes")
    if not isinstance(nodes, list):
        raise ValueError(f"group {group_id!r}: `nodes` must be an array")
    members = tuple(
        Node(check_node_id(n.get("id")), check_node_url(n.get("url")), n.get("draining") is True)
        if isinstance(n, Mapping)
        else _not_a_node(group_id)
        for n in nodes
    )
    state = document.get("state", GroupState.ACTIVE.value)
    if state not in {s.value for s in GroupState}:
        states = ", ".join(f"`{s.value}`" for s in GroupState)
        raise ValueError(f"group {group_id!r}: `state` must be one of {states}")
    stored = document.get("tables")
    if stored is None:
        tables = {shards: rendezvous_table([n.id for n in members], rf, shards)} if members else {}
    else:
        tables = _tables(stored)
    move = None
    stored_move = document.get("move")
    if stored_move is not None:
        phases = {p.value for p in MovePhase}
        if stored_move.get("phase") not in phases:
            raise ValueError(f"group {group_id!r}: `move.phase` must be one of {sorted(phases)}")
        move = Move(MovePhase(stored_move["phase"]), _tables(stored_move["tables"]))
    return ReplicaGroup(group_id, members, GroupState(state), tables, move)


def _not_a_node(group_id: str) -> Node:
    raise ValueError(f"group {group_id!r}: every node is an object with `id` and `url`")
