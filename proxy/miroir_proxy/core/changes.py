"""Topology changes as typed values, validated and applied in one place.

Every way the layout changes (the admin API's raw `PUT /_miroir/topology`, the operations
engine's steps) is one of these values; `apply(topology, change)` checks it against the
current topology and returns the next epoch, with every group's assignment tables
recomputed by the planner from their previous version (so only what the change forces
moves). Because a change is a value applied to whatever epoch is current, a publisher that
lost a compare-and-set race simply applies it again to the newer epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from miroir_proxy.core.assignment import Table, plan
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.placement import group_table
from miroir_proxy.core.topology import (
    ALIAS_HISTORY,
    AliasFlip,
    GroupState,
    Move,
    MovePhase,
    Node,
    ReplicaGroup,
    Reshard,
    ReshardPhase,
    Topology,
)

# Retired concrete indexes remembered (a write can only be in flight for seconds).
RETIRED_KEPT = 50


def invalid(message: str) -> MiroirError:
    return MiroirError("miroir_invalid_topology", message)


def group_not_found(group_id: str) -> MiroirError:
    return MiroirError("miroir_group_not_found", f"Replica group `{group_id}` not found.")


@dataclasses.dataclass(frozen=True, slots=True)
class AddGroup:
    """A new replica group; it receives writes from this epoch on, searches once active."""

    group_id: str
    nodes: tuple[Node, ...]
    state: GroupState = GroupState.INITIALIZING


@dataclasses.dataclass(frozen=True, slots=True)
class RemoveGroup:
    group_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class SetGroupState:
    group_id: str
    state: GroupState


@dataclasses.dataclass(frozen=True, slots=True)
class Rebalance:
    """New assignment tables for the group's current nodes (balanced, minimal moves)."""

    group_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class AddNode:
    """A node joins a group holding nothing yet; `BeginMove` gives it its balanced share.

    `counts` are the shard counts of existing indexes: their tables are written down from
    the group as it was, so no placement changes before data has moved."""

    group_id: str
    node: Node
    counts: frozenset[int] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class DrainNode:
    """Mark the node draining: it keeps what it holds until `BeginMove` plans it away, and
    the planner gives it nothing new."""

    node_id: str
    counts: frozenset[int] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class UndrainNode:
    """A canceled drain: the node may take replicas again."""

    node_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class RemoveNode:
    """Forget a node. It must hold no replica any more (drained) unless `force`: a dead
    node then simply leaves every row it was in, and a move refills them."""

    node_id: str
    force: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class BeginMove:
    """Plan the group's balanced tables (fewest moves) and start dual-writing to them."""

    group_id: str
    counts: frozenset[int] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class CutOver:
    """Searches switch to the new tables; writes still reach the old ones too."""

    group_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Retire:
    """Writes stop reaching the old replicas; they are deleted next."""

    group_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class AbortMove:
    """Give up a move before its cut-over: the old tables keep serving, and the partly
    filled new replicas are left to the cleanup."""

    group_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class FinishMove:
    """The cleanup deleted every replica the group no longer serves."""

    group_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class SetAlias:
    """Point `alias` at index `target` (creating the alias or flipping it); `at` is the
    time recorded in the history."""

    alias: str
    target: str
    at: str


@dataclasses.dataclass(frozen=True, slots=True)
class RemoveAlias:
    alias: str
    at: str


@dataclasses.dataclass(frozen=True, slots=True)
class BeginReshard:
    """Start writing index `name` to `target` too (dual writes); every group gets its
    table for the target's shard count written down."""

    name: str
    source: str
    source_shards: int
    target: str
    target_shards: int


@dataclasses.dataclass(frozen=True, slots=True)
class FlipReshard:
    """The name now means the target; writes still reach the source."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class UnflipReshard:
    """A rollback after the flip: the name means the source again; dual writes go on."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class EndReshard:
    """Writes stop reaching the index the name no longer means (the shadow of an aborted
    reshard, or the source of a finished one); it is deleted next."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class ForgetName:
    """The index a resharded name meant was deleted: the name is free again."""

    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class ReplaceLayout:
    """A whole layout as `PUT /_miroir/topology` gives it: groups keep their tables where
    their nodes allow; nothing is copied (an expert's tool: data does not follow)."""

    shards: int
    replication_factor: int
    groups: tuple[ReplicaGroup, ...]


Change = (
    AddGroup | RemoveGroup | SetGroupState | Rebalance | AddNode | DrainNode | UndrainNode
    | RemoveNode
    | BeginMove | CutOver | Retire | AbortMove | FinishMove | SetAlias | RemoveAlias
    | BeginReshard | FlipReshard | UnflipReshard | EndReshard | ForgetName
    | ReplaceLayout
)  # fmt: skip


def apply(topology: Topology, change: Change) -> Topology:
    """The topology after `change`, at the next epoch; `MiroirError` if it does not apply."""
    try:
        return _apply(topology, change)
    except ValueError as e:  # a rule only the new combination of values breaks
        raise invalid(str(e)) from e


def _apply(topology: Topology, change: Change) -> Topology:
    match change:
        case AddGroup(group_id, nodes, state):
            if topology.has_group(group_id):
                raise invalid(f"Replica group `{group_id}` already exists.")
            taken = {node.id for node in topology.nodes()} & {node.id for node in nodes}
            if taken:
                raise invalid(f"Node `{sorted(taken)[0]}` already belongs to a replica group.")
            group = ReplicaGroup(group_id, nodes, state)
            _check_size(group, topology.replication_factor)
            tables = _tables(None, group, topology.replication_factor, topology.shard_counts())
            return topology.with_group(group.with_tables(tables))
        case RemoveGroup(group_id):
            group = _group(topology, group_id)
            others = [g for g in topology.search_groups() if g.id != group_id]
            if group.serves_searches and not others:
                raise invalid(f"Replica group `{group_id}` is the last active group.")
            return topology.without_group(group_id)
        case SetGroupState(group_id, state):
            return topology.with_group(_group(topology, group_id).with_state(state))
        case Rebalance(group_id):
            group = _group(topology, group_id)
            return _replanned(topology, group, group)
        case AddNode(group_id, node, counts):
            if any(n.id == node.id for n in topology.nodes()):
                raise invalid(f"Node `{node.id}` already belongs to a replica group.")
            group = _settled(topology, group_id, counts)
            return topology.with_group(group.with_node(node))
        case DrainNode(node_id, counts):
            group = _settled(topology, _group_of(topology, node_id).id, counts)
            nodes = tuple(
                dataclasses.replace(n, draining=n.draining or n.id == node_id) for n in group.nodes
            )
            drained = dataclasses.replace(group, nodes=nodes)
            _check_size(drained, topology.replication_factor, placeable=True)
            return topology.with_group(drained)
        case UndrainNode(node_id):
            group = _group_of(topology, node_id)
            nodes = tuple(
                dataclasses.replace(n, draining=False) if n.id == node_id else n
                for n in group.nodes
            )
            return topology.with_group(dataclasses.replace(group, nodes=nodes))
        case RemoveNode(node_id, force):
            group = _group_of(topology, node_id)
            tables = {**(group.move.tables if group.move else {}), **group.tables}
            held = sum(node_id in row for table in tables.values() for row in table)
            if held and not force:
                raise MiroirError(
                    "miroir_node_not_drained",
                    f"Node `{node_id}` still holds {held} replicas: drain it first, or remove "
                    "it with `force` if it is dead.",
                )
            if group.move is not None:
                raise _moving(group)
            smaller = group.without_node(node_id).with_tables(
                {s: tuple(_without(row, node_id) for row in t) for s, t in group.tables.items()}
            )
            return topology.with_group(smaller)
        case BeginMove(group_id, counts):
            group = _settled(topology, group_id, counts)
            if group.move is not None:
                raise _moving(group)
            rf = topology.replication_factor
            _check_size(group, rf, placeable=True)
            target = {s: plan(t, group.placeable_ids, rf, s) for s, t in group.tables.items()}
            if target == group.tables:  # balanced already: nothing moves
                return topology.with_group(group)
            return topology.with_group(group.with_move(Move(MovePhase.DUAL, target)))
        case CutOver(group_id):
            group = _moving_group(topology, group_id, MovePhase.DUAL)
            assert group.move is not None
            old = group.tables
            moved = group.with_tables(group.move.tables)
            return topology.with_group(moved.with_move(Move(MovePhase.CUTOVER, old)))
        case Retire(group_id):
            group = _moving_group(topology, group_id, MovePhase.CUTOVER)
            assert group.move is not None
            return topology.with_group(group.with_move(Move(MovePhase.CLEANUP, group.move.tables)))
        case AbortMove(group_id):
            group = _moving_group(topology, group_id, MovePhase.DUAL)
            assert group.move is not None
            return topology.with_group(group.with_move(Move(MovePhase.CLEANUP, group.move.tables)))
        case FinishMove(group_id):
            _moving_group(topology, group_id, MovePhase.CLEANUP)
            return topology.with_group(_group(topology, group_id).with_move(None))
        case SetAlias(alias, target, at):
            if target in topology.aliases:
                raise invalid(f"`{target}` is an alias: an alias names an index.")
            return _aliased(topology, alias, target, at)
        case RemoveAlias(alias, at):
            if alias not in topology.aliases:
                raise alias_not_found(alias)
            return _aliased(topology, alias, None, at)
        case BeginReshard(name, source, source_shards, target, target_shards):
            if name in topology.reshards:
                raise invalid(f"Index `{name}` is being resharded already.")
            reshard = Reshard(source, source_shards, target, target_shards)
            settled = topology
            for group in topology.groups:
                settled = dataclasses.replace(
                    settled.with_group(_settled(settled, group.id, {target_shards})),
                    epoch=topology.epoch,
                )
            return _resharded(settled, name, reshard)
        case FlipReshard(name):
            reshard = _reshard(topology, name, ReshardPhase.DUAL)
            flipped = dataclasses.replace(reshard, phase=ReshardPhase.FLIPPED)
            return _resharded(topology, name, flipped, meaning=reshard.target)
        case UnflipReshard(name):
            reshard = _reshard(topology, name, ReshardPhase.FLIPPED)
            back = dataclasses.replace(reshard, phase=ReshardPhase.DUAL)
            return _resharded(topology, name, back, meaning=reshard.source)
        case EndReshard(name):
            hidden = _reshard(topology, name, None).hidden
            retired = {k: v for k, v in topology.retired.items() if k != hidden}
            retired[hidden] = name
            kept = dict(list(retired.items())[-RETIRED_KEPT:])
            return dataclasses.replace(_resharded(topology, name, None), retired=kept)
        case ForgetName(name):
            names = {k: v for k, v in topology.names.items() if k != name}
            retired = {k: v for k, v in topology.retired.items() if v != name}
            return dataclasses.replace(
                topology, epoch=topology.epoch + 1, names=names, retired=retired
            )
        case ReplaceLayout(shards, replication_factor, groups):
            return _replace(topology, shards, replication_factor, groups)
    raise TypeError(f"not a topology change: {change!r}")


def _group(topology: Topology, group_id: str) -> ReplicaGroup:
    try:
        return topology.group(group_id)
    except KeyError:
        raise group_not_found(group_id) from None


def _group_of(topology: Topology, node_id: str) -> ReplicaGroup:
    for group in topology.groups:
        if node_id in group.node_ids:
            return group
    raise MiroirError("miroir_node_not_found", f"Node `{node_id}` not found.")


def alias_not_found(alias: str) -> MiroirError:
    return MiroirError("miroir_alias_not_found", f"Alias `{alias}` not found.")


def _aliased(topology: Topology, alias: str, target: str | None, at: str) -> Topology:
    aliases = {k: v for k, v in topology.aliases.items() if k != alias}
    if target is not None:
        aliases[alias] = target
    flip = AliasFlip(alias, topology.aliases.get(alias), target, at)
    history = (*topology.alias_history, flip)[-ALIAS_HISTORY:]
    return dataclasses.replace(
        topology, epoch=topology.epoch + 1, aliases=aliases, alias_history=history
    )


def _reshard(topology: Topology, name: str, phase: ReshardPhase | None) -> Reshard:
    reshard = topology.reshards.get(name)
    if reshard is None or (phase is not None and reshard.phase is not phase):
        now = "no reshard" if reshard is None else f"a reshard in phase `{reshard.phase}`"
        raise invalid(f"Index `{name}` has {now}, not one in phase `{phase}`.")
    return reshard


def _resharded(
    topology: Topology, name: str, reshard: Reshard | None, *, meaning: str | None = None
) -> Topology:
    """`topology` with `name`'s reshard set (None: ended) and, with `meaning`, the name
    pointed at that concrete index, in the next epoch."""
    reshards = {k: v for k, v in topology.reshards.items() if k != name}
    if reshard is not None:
        reshards[name] = reshard
    names = dict(topology.names)
    if meaning is not None:
        names.pop(name, None)
        if meaning != name:
            names[name] = meaning
    return dataclasses.replace(topology, epoch=topology.epoch + 1, reshards=reshards, names=names)


def _settled(topology: Topology, group_id: str, counts: Iterable[int]) -> ReplicaGroup:
    """The group with a table written down for every shard count in use, so that a change
    of its nodes moves nothing by itself."""
    group = _group(topology, group_id)
    rf = topology.replication_factor
    wanted = {*topology.shard_counts(), *counts}
    missing = {s: group_table(group, s, rf) for s in wanted if s not in group.tables}
    return group.with_tables({**group.tables, **missing}) if missing else group


def _without(row: tuple[str, ...], node_id: str) -> tuple[str, ...]:
    return tuple(n for n in row if n != node_id)


def _moving(group: ReplicaGroup) -> MiroirError:
    return invalid(f"Replica group `{group.id}` is moving replicas; wait for that to finish.")


def _moving_group(topology: Topology, group_id: str, phase: MovePhase) -> ReplicaGroup:
    group = _group(topology, group_id)
    if group.move is None or group.move.phase is not phase:
        now = "no move" if group.move is None else f"a move in phase `{group.move.phase}`"
        raise invalid(f"Replica group `{group_id}` has {now}, not one in phase `{phase}`.")
    return group


def _check_size(group: ReplicaGroup, rf: int, *, placeable: bool = False) -> None:
    count = len(group.placeable_ids if placeable else group.nodes)
    if count < rf:
        kind = "nodes that are not draining" if placeable else "nodes"
        raise invalid(
            f"Replica group `{group.id}` needs at least `replicationFactor` ({rf}) {kind}."
        )


def _replanned(topology: Topology, before: ReplicaGroup, after: ReplicaGroup) -> Topology:
    """`after` with its tables planned from `before`'s, in the next epoch."""
    tables = _tables(before, after, topology.replication_factor, topology.shard_counts())
    return topology.with_group(after.with_tables(tables))


def _tables(
    previous: ReplicaGroup | None, group: ReplicaGroup, rf: int, counts: Iterable[int]
) -> dict[int, Table]:
    """`group`'s table for every S, each planned from `previous`'s table for that S."""
    nodes: Sequence[str] = group.placeable_ids
    before = {} if previous is None else previous.tables
    return {s: plan(before.get(s), nodes, rf, s) for s in sorted(counts)}


def _replace(
    topology: Topology, shards: int, rf: int, groups: tuple[ReplicaGroup, ...]
) -> Topology:
    if not groups:
        raise invalid("`groups` must be a non-empty array.")
    draft = dataclasses.replace(topology, shards=shards, replication_factor=rf, groups=())
    counts = {*topology.shard_counts(), shards}
    planned = []
    for group in groups:
        _check_size(group, rf)
        before = topology.group(group.id) if topology.has_group(group.id) else None
        if before is not None and topology.replication_factor != rf:
            before = None  # a new RF means new tables throughout
        planned.append(group.with_tables(_tables(before, group, rf, counts)))
    return dataclasses.replace(draft, epoch=topology.epoch + 1, groups=tuple(planned))
