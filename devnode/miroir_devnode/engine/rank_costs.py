"""Cost arithmetic of the proximity and wordPosition rules: distance -> cost tables, the
proximity cost of two terms within a field, and documents by summed per-term costs.

`cheapest_sums` enumerates cost totals lazily with set algebra, so a rule that only needs
its first buckets never computes a cost per document.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

MAX_PROXIMITY_COST = 7
MAX_POSITION_COST = 10
Bucket = set[int]


def cost_from_distance(distance: int) -> int:
    for limit, cost in ((0, 0), (1, 1), (4, 2), (7, 3), (11, 4), (16, 5), (24, 6), (64, 7)):
        if distance <= limit:
            return cost
    return 8 if distance <= 256 else 9 if distance <= 1024 else 10


_COST_TABLE = [cost_from_distance(d) for d in range(1100)]
DISTANCES_BY_COST = [
    (0, 0), (1, 1), (2, 4), (5, 7), (8, 11), (12, 16), (17, 24), (25, 64), (65, 256), (257, 1024),
    (1025, 1 << 31),
]  # fmt: skip


def position_cost(distance: int, width: int) -> int:
    table = _COST_TABLE
    return sum(
        table[d] if d < 1100 else MAX_POSITION_COST for d in range(distance, distance + width)
    )


def cheapest_sums(
    classes: list[dict[int, Bucket]], max_cost: int, size: int
) -> Iterator[tuple[int, Bucket]]:
    """Documents by the sum of their per-term costs, cheapest first, computed lazily."""

    def docs_with(total: int, term: int, docs: Bucket | None) -> Bucket:
        if term == len(classes) - 1:
            members = classes[term].get(total)
            if not members:
                return set()
            return set(members) if docs is None else docs & members
        found: Bucket = set()
        for cost, members in classes[term].items():
            if cost <= total:
                narrowed = members if docs is None else docs & members
                if narrowed:
                    found |= docs_with(total - cost, term + 1, narrowed)
        return found

    for total in range(max_cost + 1):
        docs = docs_with(total, 0, None)
        if docs:
            yield total, docs
            size -= len(docs)
            if not size:
                return


def pair_cost(left: dict[int, list[int]], right: dict[int, list[int]], left_width: int) -> int:
    """Smallest proximity cost between two terms in one field (7 when never close)."""
    best = MAX_PROXIMITY_COST
    for field_id, lefts in left.items():
        rights = right.get(field_id)
        if not rights:
            continue
        for start in lefts:
            end = start + left_width - 1
            after = bisect_right(rights, end)
            if after < len(rights):
                best = min(best, rights[after] - end - 1)
            if after:
                # the right term before (or on) the left one costs one more
                best = min(best, end - rights[after - 1])
            if best == 0:
                return 0
    return best
