"""Write quorum arithmetic.

Per group a shard needs ``floor(RF/2) + 1`` acknowledgements from its replicas; a write
succeeds when, for every shard it touched, at least one group that serves searches
(``active``) reached that quorum. Groups that are initializing, syncing or draining
receive every write too, but their acknowledgements alone cannot make a write succeed:
no search reads from them. Every replica that did not acknowledge is listed as degraded
so anti-entropy can repair it and ``X-Miroir-Degraded`` can name it.

Hinted handoff relaxes the majority: in a group, a shard also counts as written when at
least one replica acknowledged and every other replica of the shard (and every replica
being filled) either acknowledged or has its missed batch stored as a hint (``hinted``).
Without a single live acknowledgement a hint alone never makes a write.
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
    hinted: bool = False


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

    def degraded_header(self, overflowed: Collection[str] = ()) -> str:
        """Value for ``X-Miroir-Degraded``: ``group/shard/node`` items, comma-separated, with
        ``:anti-entropy`` after a replica in ``overflowed`` (past its hint bound) and
        ``:hinted`` after another replica whose batch was stored as a hint."""

        def mark(m: MissedReplica) -> str:
            if m.node_id in overflowed:
                return ":anti-entropy"
            return ":hinted" if m.hinted else ""

        return ",".join(f"{m.group_id}/{m.shard}/{m.node_id}{mark(m)}" for m in self.degraded)


def judge_write(
    layout: Layout,
    shards: Iterable[int],
    acked: Collection[str],
    *,
    index_shards: int | None = None,
    hinted: Collection[str] = (),
) -> WriteVerdict:
    """Verdict of a write that touched ``shards`` once the nodes in ``acked`` confirmed it.

    A node acknowledges its whole batch or nothing, so acknowledgements are per node.
    Quorum is counted over a shard's actual replicas, which differ from RF only while a
    group has fewer nodes than RF. ``index_shards`` is the index's own shard count
    (``topology.shards`` is only the default for new indexes). ``layout`` must be the one
    the write was routed with. ``hinted``: nodes whose missed batch is stored as a hint.
    """
    acked_set = acked if isinstance(acked, frozenset | set) else frozenset(acked)
    hinted_set = frozenset(hinted)
    count = index_shards or layout.topology.shards
    placements = [(group, layout.placement(group, count)) for group in layout.topology.groups]
    no_quorum: list[int] = []
    degraded: list[MissedReplica] = []
    for shard in sorted(set(shards)):
        reached = False
        for group, placement in placements:
            replicas = placement.replicas[shard]
            acks = hints = 0
            for node_id in replicas:
                if node_id in acked_set:
                    acks += 1
                else:
                    hint = node_id in hinted_set
                    hints += hint
                    degraded.append(MissedReplica(group.id, shard, node_id, hint))
            # A replica being filled serves searches after the cut-over with whatever it
            # has, so a write it missed must not count as made in its group (a hint will
            # bring it there).
            filled = True
            for node_id in placement.incoming[shard]:
                if node_id not in acked_set:
                    hint = node_id in hinted_set
                    filled = filled and hint
                    degraded.append(MissedReplica(group.id, shard, node_id, hint))
            majority = acks >= quorum_size(len(replicas))
            handed_off = acks >= 1 and acks + hints == len(replicas)
            if group.serves_searches and replicas and filled and (majority or handed_off):
                reached = True
        if not reached:
            no_quorum.append(shard)
    return WriteVerdict(tuple(no_quorum), tuple(degraded))
