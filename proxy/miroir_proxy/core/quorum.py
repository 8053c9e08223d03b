"""Write quorum arithmetic.

Per group a shard needs ``floor(RF/2) + 1`` acknowledgements from its replicas; a write
succeeds when, for every shard it touched, at least one group that serves searches
(``active``) reached that quorum. Groups that are initializing, syncing or draining
receive every write too, but their acknowledgements alone cannot make a write succeed:
no search reads from them. Every replica that did not acknowledge is listed as degraded
so anti-entropy can repair it and ``X-Miroir-Degraded`` can name it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.placement import Layout


def quorum_size(replicas: int) -> int:
    return replicas // 2 + 1


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class MissedReplica:
    group_id: str
    shard: int
    node_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class WriteVerdict:
    no_quorum_shards: tuple[int, ...]
    degraded: tuple[MissedReplica, ...]

    @property
    def succeeded(self) -> bool:
        return not self.no_quorum_shards

    def no_quorum_error(self) -> MiroirError:
        shards = ", ".join(str(s) for s in self.no_quorum_shards)
        return MiroirError(
            "miroir_no_quorum",
            f"No replica group acknowledged the write with a quorum for shards [{shards}].",
        )

    def degraded_header(self) -> str:
        """Value for ``X-Miroir-Degraded``: ``group/shard/node`` items, comma-separated."""
        return ",".join(f"{m.group_id}/{m.shard}/{m.node_id}" for m in self.degraded)


def judge_write(
    layout: Layout,
    shards: Iterable[int],
    acked: Collection[str],
    *,
    index_shards: int | None = None,
) -> WriteVerdict:
    """Verdict of a write that touched ``shards`` once the nodes in ``acked`` confirmed it.

    A node acknowledges its whole batch or nothing, so acknowledgements are per node.
    Quorum is counted over a shard's actual replicas, which differ from RF only while a
    group has fewer nodes than RF. ``index_shards`` is the index's own shard count
    (``topology.shards`` is only the default for new indexes). ``layout`` must be the one
    the write was routed with.
    """
    acked_set = acked if isinstance(acked, frozenset | set) else frozenset(acked)
    count = index_shards or layout.topology.shards
    placements = [(group, layout.placement(group, count)) for group in layout.topology.groups]
    no_quorum: list[int] = []
    degraded: list[MissedReplica] = []
    for shard in sorted(set(shards)):
        reached = False
        for group, placement in placements:
            replicas = placement.replicas[shard]
            acks = 0
            for node_id in replicas:
                if node_id in acked_set:
                    acks += 1
                else:
                    degraded.append(MissedReplica(group.id, shard, node_id))
            # A replica being filled serves searches after the cut-over with whatever it
            # has, so a write it missed must not count as made in its group.
            filled = True
            for node_id in placement.incoming[shard]:
                if node_id not in acked_set:
                    filled = False
                    degraded.append(MissedReplica(group.id, shard, node_id))
            if group.serves_searches and replicas and filled and acks >= quorum_size(len(replicas)):
                reached = True
        if not reached:
            no_quorum.append(shard)
    return WriteVerdict(tuple(no_quorum), tuple(degraded))
