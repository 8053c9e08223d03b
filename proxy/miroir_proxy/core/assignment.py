"""Assignment tables: which nodes of a group hold each shard (placeholder planner).

Replaced by the balanced planner; this version keeps the interface only.
"""

from __future__ import annotations

from collections.abc import Sequence

from xxhash import xxh3_64_intdigest

Table = tuple[tuple[str, ...], ...]


def _score(shard: int, node_id: str) -> int:
    return int(xxh3_64_intdigest(f"{shard}:{node_id}".encode()))


def rendezvous_table(node_ids: Sequence[str], rf: int, shards: int) -> Table:
    keep = min(rf, len(node_ids))
    return tuple(
        tuple(sorted(node_ids, key=lambda n: (-_score(s, n), n))[:keep]) for s in range(shards)
    )


def plan(previous: Table | None, node_ids: Sequence[str], rf: int, shards: int) -> Table:
    first = rendezvous_table(sorted(node_ids), rf, shards)
    if previous is None:
        return first
    keep = min(rf, len(node_ids))
    allowed = set(node_ids)
    table = []
    for shard in range(shards):
        kept = [n for n in previous[shard] if n in allowed][:keep]
        for n in first[shard]:
            if len(kept) >= keep:
                break
            if n not in kept:
                kept.append(n)
        table.append(tuple(kept))
    return tuple(table)


def loads(table: Table) -> dict[str, int]:
    counts: dict[str, int] = {}
    for replicas in table:
        for node_id in replicas:
            counts[node_id] = counts.get(node_id, 0) + 1
    return counts
