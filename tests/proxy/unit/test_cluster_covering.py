"""`Cluster.covering`: cached coverings are exactly the ones computed afresh, and follow
node health."""

from __future__ import annotations

from typing import Any

import pytest

from miroir_proxy.config import MiroirConfig
from miroir_proxy.core.covering import Covering, covering_set
from miroir_proxy.dispatch.cluster import Cluster, topology_from_config


class FakeHealth:
    def __init__(self) -> None:
        self.down: set[str] = set()

    def is_healthy(self, node_id: str) -> bool:
        return node_id not in self.down


def cluster(groups: int, nodes_per_group: int, rf: int) -> tuple[Cluster, FakeHealth]:
    config = MiroirConfig.model_validate(
        {
            "replication_factor": rf,
            "replica_groups": [
                {
                    "id": f"g{g}",
                    "nodes": [
                        {"id": f"n{g}-{i}", "url": f"http://127.0.0.1:{7700 + 10 * g + i}"}
                        for i in range(nodes_per_group)
                    ],
                }
                for g in range(groups)
            ],
        }
    )
    health = FakeHealth()
    nodes: Any = None  # coverings never call a node
    return Cluster(config, topology_from_config(config), nodes, health), health  # type: ignore[arg-type]


def fresh_covering(subject: Cluster, health: FakeHealth, turn: int) -> Covering:
    """What `covering()` computes on its `turn`-th call, without any cache: one draw of the
    round-robin counter gives both the first group and the replica rotation."""
    groups = list(subject.topology.search_groups())
    start = turn % len(groups)
    ordered = groups[start:] + groups[:start]
    return covering_set(
        [(g.id, subject.placement(g, 16)) for g in ordered],
        health.is_healthy,
        rotation=turn // len(groups),
    )


@pytest.mark.parametrize(("groups", "nodes", "rf"), [(1, 3, 1), (2, 3, 2), (3, 2, 2), (2, 4, 3)])
def test_cached_coverings_equal_fresh_ones(groups: int, nodes: int, rf: int) -> None:
    subject, health = cluster(groups=groups, nodes_per_group=nodes, rf=rf)
    for turn in range(36):
        if turn == 12:
            health.down.add("n0-1")
        if turn == 24:
            health.down.clear()
        assert subject.covering(16) == fresh_covering(subject, health, turn), turn


def test_a_node_going_down_changes_the_next_covering() -> None:
    subject, health = cluster(groups=1, nodes_per_group=3, rf=2)
    assert {a.node_id for a in subject.covering(16).assignments} == {"n0-0", "n0-1", "n0-2"}
    health.down.add("n0-1")
    for _ in range(6):
        covering = subject.covering(16)
        assert {a.node_id for a in covering.assignments} == {"n0-0", "n0-2"}
        assert sorted(s for a in covering.assignments for s in a.shards) == list(range(16))
    health.down.clear()
    assert {a.node_id for a in subject.covering(16).assignments} == {"n0-0", "n0-1", "n0-2"}


def test_pinned_shards_are_covered_alone() -> None:
    subject, _ = cluster(groups=1, nodes_per_group=3, rf=1)
    for _ in range(3):
        covering = subject.covering(16, [3, 9])
        assert sorted(s for a in covering.assignments for s in a.shards) == [3, 9]
        assert all(a.restrict for a in covering.assignments)


@pytest.mark.parametrize("groups", [2, 3])
def test_consecutive_searches_spread_over_groups_and_replicas(groups: int) -> None:
    subject, _ = cluster(groups=groups, nodes_per_group=3, rf=2)
    served = [{a.group_id for a in subject.covering(16).assignments} for _ in range(4 * groups)]
    assert all(len(s) == 1 for s in served)  # every group healthy: one group per search
    firsts = [next(iter(s)) for s in served]
    assert firsts == [f"g{i % groups}" for i in range(4 * groups)]
    # Within a group the replica rotation moves too: a shard is not always read from the
    # same replica.
    layouts = set()
    for _ in range(4 * groups):
        covering = subject.covering(16)
        layouts.add(frozenset((a.node_id, a.shards) for a in covering.assignments))
    assert len(layouts) > groups
