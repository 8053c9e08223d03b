"""Covering sets: which replica answers for which shard in one search.

A search reads every shard exactly once. Per group, each shard is given to one live
replica, choosing the replica with the fewest shards assigned so far and breaking ties by
a rotation counter, so consecutive queries land on different replicas and one query
spreads over as many nodes as RF allows. A replica known to be `behind` (it missed
acknowledged writes: hints not replayed yet, or past its hint bound) serves a shard only
when no other live replica of the group can. Shards with no live replica in the first group
are looked up in the next groups; only what no group can serve is reported uncovered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from miroir_proxy.core.placement import Placement

Healthy = Callable[[str], bool] | Collection[str]


@dataclasses.dataclass(frozen=True, slots=True)
class NodeAssignment:
    node_id: str
    group_id: str
    shards: tuple[int, ...]
    # False when the node holds exactly these shards, so no `_miroir_shard` filter is needed.
    restrict: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Covering:
    assignments: tuple[NodeAssignment, ...]
    uncovered: tuple[int, ...]

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups that serve some shard, in preference order."""
        return tuple(dict.fromkeys(a.group_id for a in self.assignments))

    @property
    def complete(self) -> bool:
        return not self.uncovered

    def shards_by_node(self) -> dict[str, tuple[int, ...]]:
        return {a.node_id: a.shards for a in self.assignments}


def _is_healthy(healthy: Healthy) -> Callable[[str], bool]:
    if callable(healthy):
        return healthy
    live = healthy if isinstance(healthy, frozenset | set) else frozenset(healthy)
    return live.__contains__


def assign_shards(
    placement: Placement,
    shards: Iterable[int],
    healthy: Healthy,
    rotation: int = 0,
    behind: Collection[str] = (),
) -> tuple[dict[str, list[int]], list[int]]:
    """One live replica per shard within one group: (node -> shards, unserved shards)."""
    is_live = _is_healthy(healthy)
    live_cache: dict[str, bool] = {}
    load: dict[str, int] = {}
    chosen: dict[str, list[int]] = {}
    unserved: list[int] = []
    for shard in shards:
        replicas = placement.replicas[shard]
        width = len(replicas)
        best: str | None = None
        best_key = (False, 0, 0)
        for rank, node_id in enumerate(replicas):
            alive = live_cache.get(node_id)
            if alive is None:
                alive = live_cache[node_id] = is_live(node_id)
            if not alive:
                continue
            key = (node_id in behind, load.get(node_id, 0), (rank - rotation) % width)
            if best is None or key < best_key:
                best, best_key = node_id, key
        if best is None:
            unserved.append(shard)
            continue
        load[best] = best_key[1] + 1
        chosen.setdefault(best, []).append(shard)
    return chosen, unserved


def needs_shard_filter(held: Collection[int], served: Collection[int]) -> bool:
    """Whether a node must be told `_miroir_shard IN [...]` for this query.

    Left out only when the node holds exactly the shards it serves; otherwise the extra
    shards it holds would double hits, facet counts and totals.
    """
    return len(held) != len(served) or set(held) != set(served)


def covering_set(
    groups: Sequence[tuple[str, Placement]],
    healthy: Healthy,
    rotation: int = 0,
    shards: Iterable[int] | None = None,
    behind: Collection[str] = (),
) -> Covering:
    """Cover ``shards`` (default: all) from the first group, falling back group by group.

    ``groups`` is ordered by preference: the group picked for this search first, then the
    other active groups. ``shards`` narrows the query when the planner pinned primary keys.
    """
    if not groups:
        return Covering((), tuple(sorted(shards or ())))
    pending = sorted(set(range(groups[0][1].shards) if shards is None else shards))
    assignments: list[NodeAssignment] = []
    for group_id, group_placement in groups:
        if not pending:
            break
        chosen, pending = assign_shards(group_placement, pending, healthy, rotation, behind)
        held: Mapping[str, frozenset[int]] = group_placement.holdings
        for node_id, served in chosen.items():
            assignments.append(
                NodeAssignment(
                    node_id,
                    group_id,
                    tuple(served),
                    needs_shard_filter(held[node_id], served),
                )
            )
    return Covering(tuple(assignments), tuple(pending))
