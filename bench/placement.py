"""Placement simulator: how balanced the assignment planner's tables are, and how much it
moves, against pure rendezvous hashing on the same shapes. Pure computation, no nodes.

Shapes: N in {3, 10, 30, 100} nodes, S in {16, 64, 256, 4096} shards with S >= N
(below that a node holds zero or one replica and max/mean says nothing), RF in {1, 2, 3}.
Each shape then goes through a fixed sequence of changes (add a node, add two, remove a
node, remove two, from the table the previous change produced).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from miroir_proxy.core.assignment import (
    Table,
    loads,
    minimum_moves,
    moves,
    plan,
    rendezvous_table,
)

from .measure import cpu_ms_per_call, median

Shape = tuple[int, int, int]  # (nodes, shards, rf)

SHAPES: tuple[Shape, ...] = tuple(
    (nodes, shards, rf)
    for nodes in (3, 10, 30, 100)
    for shards in (16, 64, 256, 4096)
    for rf in (1, 2, 3)
    if shards >= nodes
)
SMOKE_SHAPES: tuple[Shape, ...] = ((3, 16, 1), (10, 64, 2), (30, 256, 3))


def _ids(count: int, start: int = 0) -> list[str]:
    return [f"meili-{i}" for i in range(start, start + count)]


def _max_over_mean(table: Table, node_ids: Sequence[str]) -> float:
    per_node = loads(table)
    mean = sum(per_node.values()) / len(node_ids)
    return max(per_node.get(node, 0) for node in node_ids) / mean


# Add one node, add two, remove the first node, remove the next two (one if only 3 left).
CHANGES: tuple[Callable[[list[str]], list[str]], ...] = (
    lambda ids: [*ids, *_ids(1, 1000)],
    lambda ids: [*ids, *_ids(2, 2000)],
    lambda ids: ids[1:],
    lambda ids: ids[2:] if len(ids) > 3 else ids[1:],
)


def simulate(shapes: Sequence[Shape] = SHAPES) -> dict[str, float]:
    planned_worst = rendezvous_worst = ceiling_worst = 0.0
    moved = rendezvous_moved = ideal = 0
    for nodes, shards, rf in shapes:
        ids = _ids(nodes)
        table = plan(None, ids, rf, shards)
        rendezvous = rendezvous_table(ids, rf, shards)
        mean = shards * min(rf, nodes) / nodes
        planned_worst = max(planned_worst, _max_over_mean(table, ids))
        rendezvous_worst = max(rendezvous_worst, _max_over_mean(rendezvous, ids))
        ceiling_worst = max(ceiling_worst, math.ceil(mean) / mean)
        for change in CHANGES:
            ids = change(ids)
            needed = minimum_moves(table, ids, rf, shards)
            following = plan(table, ids, rf, shards)
            following_rendezvous = rendezvous_table(ids, rf, shards)
            ideal += needed
            moved += moves(table, following)
            rendezvous_moved += moves(rendezvous, following_rendezvous)
            table, rendezvous = following, following_rendezvous
    return {
        "placement_max_over_mean": planned_worst,
        "placement_rendezvous_max_over_mean": rendezvous_worst,
        "placement_best_max_over_mean": ceiling_worst,
        "placement_moved_over_ideal": moved / ideal,
        "placement_rendezvous_moved_over_ideal": rendezvous_moved / ideal,
    }


def plan_ms(repeat: int = 5) -> dict[str, float]:
    """CPU time of plan() at N=100, S=4096, RF=3: a new group's first table, and the
    table after adding one node to it."""
    ids = _ids(100)
    first = plan(None, ids, 3, 4096)
    grown = [*ids, *_ids(1, 1000)]
    return {
        "placement_first_table_ms": median(
            cpu_ms_per_call(lambda: plan(None, ids, 3, 4096), repeat=repeat)
        ),
        "placement_add_node_ms": median(
            cpu_ms_per_call(lambda: plan(first, grown, 3, 4096), repeat=repeat)
        ),
    }
