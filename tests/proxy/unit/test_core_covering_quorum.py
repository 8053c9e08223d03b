from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miroir_proxy.core.assignment import plan
from miroir_proxy.core.covering import covering_set, needs_shard_filter
from miroir_proxy.core.placement import Layout, Placement
from miroir_proxy.core.quorum import MissedReplica, judge_write, quorum_size
from miroir_proxy.core.topology import GroupState, Node, ReplicaGroup, Topology

NODES = ["node-0", "node-1", "node-2"]


def place(node_ids: list[str], rf: int, shards: int) -> Placement:
    return Placement.of(plan(None, node_ids, rf, shards), tuple(node_ids))


def group(group_id: str, *node_ids: str, state: GroupState = GroupState.ACTIVE) -> ReplicaGroup:
    return ReplicaGroup(group_id, tuple(Node(n, f"http://{n}") for n in node_ids), state)


# --- covering sets ---------------------------------------------------------------------


@given(st.integers(1, 3), st.integers(0, 50), st.sets(st.sampled_from(NODES)))
def test_every_shard_is_served_once_by_a_live_replica(
    rf: int, rotation: int, down: set[str]
) -> None:
    layout = place(NODES, rf, 64)
    cover = covering_set([("g0", layout)], lambda n: n not in down, rotation)
    served = [s for a in cover.assignments for s in a.shards]
    assert len(served) == len(set(served))
    for a in cover.assignments:
        assert a.node_id not in down
        assert all(a.node_id in layout.replicas[s] for s in a.shards)
        assert a.restrict == (set(a.shards) != layout.node_shards[a.node_id])
    unservable = {s for s in range(64) if set(layout.replicas[s]) <= down}
    assert set(cover.uncovered) == unservable
    assert set(served) | unservable == set(range(64))
    assert cover.complete == (not unservable)


def test_rf1_nodes_serve_exactly_what_they_hold_without_a_shard_filter() -> None:
    layout = place(NODES, 1, 64)
    cover = covering_set([("g0", layout)], frozenset(NODES))
    assert {a.node_id for a in cover.assignments} == set(NODES)
    assert not any(a.restrict for a in cover.assignments)


def test_replicas_share_the_load_and_rotation_moves_it() -> None:
    layout = place(NODES, 3, 64)  # every node holds every shard
    first = covering_set([("g0", layout)], NODES, rotation=0).shards_by_node()
    assert sorted(len(s) for s in first.values()) == [21, 21, 22]
    second = covering_set([("g0", layout)], NODES, rotation=1).shards_by_node()
    assert first != second
    served_over_time: Counter[str] = Counter()
    for rotation in range(30):
        cover = covering_set([("g0", layout)], NODES, rotation=rotation)
        assert all(a.restrict for a in cover.assignments)  # each holds 64, serves ~21
        for a in cover.assignments:
            served_over_time[a.node_id] += len(a.shards)
    assert max(served_over_time.values()) - min(served_over_time.values()) <= 30


@given(st.integers(0, 50), st.sampled_from(NODES), st.sampled_from([None, *NODES]))
def test_a_replica_behind_serves_only_shards_no_other_live_replica_can(
    rotation: int, behind: str, down: str | None
) -> None:
    layout = place(NODES, 2, 64)
    cover = covering_set([("g0", layout)], lambda n: n != down, rotation, behind={behind})
    assert cover.complete
    for a in cover.assignments:
        if a.node_id == behind:  # only where its fellow replica is down
            assert all(set(layout.replicas[s]) == {behind, down} for s in a.shards)


def test_missing_shards_fall_back_to_the_next_group() -> None:
    g0, g1 = group("g0", *NODES), group("g1", "b-0", "b-1")
    layout = Layout(Topology(1, 32, 1, (g0, g1)))
    layouts = [("g0", layout.placement(g0, 32)), ("g1", layout.placement(g1, 32))]
    dead = "node-1"
    cover = covering_set(layouts, lambda n: n != dead)
    assert cover.complete
    lost = sorted(layouts[0][1].node_shards[dead])
    from_g1 = sorted(s for a in cover.assignments if a.group_id == "g1" for s in a.shards)
    assert from_g1 == lost
    assert all(a.restrict for a in cover.assignments if a.group_id == "g1")
    alone = covering_set(layouts[:1], lambda n: n != dead)
    assert list(alone.uncovered) == lost


def test_pinned_shards_narrow_the_covering_set() -> None:
    layout = place(NODES, 1, 64)
    cover = covering_set([("g0", layout)], NODES, shards=[5, 9])
    assert sorted(s for a in cover.assignments for s in a.shards) == [5, 9]
    assert all(a.restrict for a in cover.assignments)
    assert covering_set([], NODES, shards=[1]).uncovered == (1,)


def test_shard_filter_is_left_out_only_for_an_exact_match() -> None:
    assert not needs_shard_filter(frozenset({1, 2}), [2, 1])
    assert needs_shard_filter(frozenset({1, 2, 3}), [1, 2])
    assert needs_shard_filter(frozenset({1, 2}), [1, 3])


# --- quorum ----------------------------------------------------------------------------


@pytest.mark.parametrize(("rf", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_quorum_is_a_strict_majority(rf: int, quorum: int) -> None:
    assert quorum_size(rf) == quorum


def topology(rf: int, second_state: GroupState = GroupState.ACTIVE) -> Topology:
    return Topology(
        1,
        8,
        rf,
        (group("g0", "a0", "a1", "a2"), group("g1", "b0", "b1", "b2", state=second_state)),
    )


def test_all_acks_succeed_without_degradation() -> None:
    topo = topology(3)
    verdict = judge_write(Layout(topo), range(8), [n.id for n in topo.nodes()])
    assert verdict.succeeded and verdict.degraded == () and verdict.degraded_header() == ""


def test_one_group_at_quorum_is_enough_and_misses_are_listed() -> None:
    topo = topology(3)
    verdict = judge_write(Layout(topo), [0, 3], ["a0", "a1"])
    assert verdict.succeeded
    assert MissedReplica("g0", 0, "a2") in verdict.degraded
    assert {m.node_id for m in verdict.degraded if m.group_id == "g1"} == {"b0", "b1", "b2"}
    assert "g0/0/a2" in verdict.degraded_header()


def test_no_group_at_quorum_fails_with_the_shards_named() -> None:
    topo = topology(3)
    verdict = judge_write(Layout(topo), [1, 2], ["a0", "b0"])
    assert not verdict.succeeded
    assert verdict.no_quorum_shards == (1, 2)
    error = verdict.no_quorum_error()
    assert (error.code, error.status) == ("miroir_no_quorum", 503)


def test_acks_from_a_syncing_group_do_not_make_a_write_succeed() -> None:
    topo = topology(3, GroupState.SYNCING)
    assert not judge_write(Layout(topo), [4], ["b0", "b1", "b2"]).succeeded
    assert judge_write(Layout(topo), [4], ["a0", "a1", "a2"]).succeeded


@given(st.integers(1, 3), st.sets(st.sampled_from(["a0", "a1", "a2", "b0", "b1", "b2"])))
def test_quorum_verdict_matches_the_definition(rf: int, acked: set[str]) -> None:
    topo = topology(rf)
    verdict = judge_write(Layout(topo), range(8), acked)
    for shard in range(8):
        reached = False
        for g in topo.groups:
            replicas = Layout(topo).placement(g, 8).replicas[shard]
            acks = sum(n in acked for n in replicas)
            reached |= acks >= rf // 2 + 1
            for n in replicas:
                assert (MissedReplica(g.id, shard, n) in verdict.degraded) == (n not in acked)
        assert (shard in verdict.no_quorum_shards) == (not reached)


def test_hinted_replicas_stand_in_for_the_majority_with_one_live_ack() -> None:
    topo = Topology(1, 8, 2, (group("g0", "a0", "a1", "a2"),))
    layout = Layout(topo)
    shard = 3
    first, second = layout.placement(topo.groups[0], 8).replicas[shard]
    assert not judge_write(layout, [shard], [first]).succeeded
    verdict = judge_write(layout, [shard], [first], hinted=[second])
    assert verdict.succeeded
    assert verdict.degraded == (MissedReplica("g0", shard, second, hinted=True),)
    assert verdict.degraded_header() == f"g0/{shard}/{second}:hinted"
    assert verdict.degraded_header(overflowed=[second]) == f"g0/{shard}/{second}:anti-entropy"
    # Without one live acknowledgement, hints make nothing.
    assert not judge_write(layout, [shard], [], hinted=[first, second]).succeeded
    # RF=3: one ack, one hint and one replica missing is not enough.
    topo3 = topology(3)
    replicas = Layout(topo3).placement(topo3.groups[0], 8).replicas[shard]
    half = judge_write(Layout(topo3), [shard], [replicas[0]], hinted=[replicas[1]])
    assert not half.succeeded
    full = judge_write(Layout(topo3), [shard], [replicas[0]], hinted=replicas[1:])
    assert full.succeeded
