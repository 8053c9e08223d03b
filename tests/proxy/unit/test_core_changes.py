"""Topology changes as typed values: what each one does and what it refuses."""

from __future__ import annotations

import pytest

from miroir_proxy.core.assignment import loads, plan
from miroir_proxy.core.changes import (
    AbortMove,
    AddGroup,
    AddNode,
    BeginMove,
    CutOver,
    DrainNode,
    FinishMove,
    Rebalance,
    RemoveGroup,
    RemoveNode,
    ReplaceLayout,
    Retire,
    SetGroupState,
    apply,
)
from miroir_proxy.core.covering import covering_set
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.placement import Layout, Placement
from miroir_proxy.core.quorum import judge_write
from miroir_proxy.core.topology import (
    GroupState,
    MovePhase,
    Node,
    ReplicaGroup,
    Topology,
    from_document,
    to_document,
)


def nodes(*ids: str) -> tuple[Node, ...]:
    return tuple(Node(i, f"http://{i}:7700") for i in ids)


def start() -> Topology:
    g0 = ReplicaGroup("g0", nodes("a", "b", "c"))
    g0 = g0.with_tables({16: plan(None, g0.node_ids, 2, 16), 4: plan(None, g0.node_ids, 2, 4)})
    return Topology(7, 16, 2, (g0,))


def refused(topology: Topology, change: object, code: str, words: str) -> None:
    with pytest.raises(MiroirError) as raised:
        apply(topology, change)  # type: ignore[arg-type]
    assert raised.value.code == code
    assert words in raised.value.message


def test_adding_a_group_plans_a_table_for_every_shard_count_in_use() -> None:
    after = apply(start(), AddGroup("g1", nodes("x", "y")))
    assert after.epoch == 8
    g1 = after.group("g1")
    assert g1.state is GroupState.INITIALIZING
    assert g1.tables == {16: plan(None, ["x", "y"], 2, 16), 4: plan(None, ["x", "y"], 2, 4)}
    assert after.group("g0") == start().group("g0")
    assert [g.id for g in after.search_groups()] == ["g0"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (AddGroup("g0", nodes("x", "y")), "already exists"),
        (AddGroup("g1", nodes("x", "a")), "Node `a` already belongs"),
        (AddGroup("g1", nodes("x")), "at least `replicationFactor` (2)"),
        (AddGroup("g1", (Node("x", "http://x"), Node("x", "http://y"))), "twice"),
        (RemoveGroup("g0"), "last active group"),
    ],
)
def test_a_change_that_does_not_fit_is_refused_with_the_reason(change: object, words: str) -> None:
    refused(start(), change, "miroir_invalid_topology", words)


@pytest.mark.parametrize(
    "change", [RemoveGroup("nope"), SetGroupState("nope", GroupState.ACTIVE), Rebalance("nope")]
)
def test_an_unknown_group_is_not_found(change: object) -> None:
    refused(start(), change, "miroir_group_not_found", "`nope`")


def test_group_states_move_and_a_group_that_is_not_the_last_active_can_go() -> None:
    grown = apply(start(), AddGroup("g1", nodes("x", "y")))
    active = apply(grown, SetGroupState("g1", GroupState.ACTIVE))
    assert [g.id for g in active.search_groups()] == ["g0", "g1"]
    assert [g.id for g in apply(active, RemoveGroup("g0")).groups] == ["g1"]
    assert apply(grown, RemoveGroup("g1")).groups == start().groups


def test_replacing_the_layout_keeps_the_tables_of_unchanged_groups() -> None:
    current = start()
    same = apply(current, ReplaceLayout(16, 2, (ReplicaGroup("g0", nodes("a", "b", "c")),)))
    assert same.group("g0").tables == current.group("g0").tables
    grown = apply(
        current,
        ReplaceLayout(
            16, 2, (ReplicaGroup("g0", nodes("a", "b", "c")), ReplicaGroup("g1", nodes("d", "e")))
        ),
    )
    assert grown.group("g0").tables == current.group("g0").tables
    assert set(grown.group("g1").tables) == {4, 16}
    with pytest.raises(MiroirError, match="needs at least"):
        apply(current, ReplaceLayout(16, 3, (ReplicaGroup("g0", nodes("a", "b")),)))


def test_a_rebalanced_group_keeps_replicas_on_its_nodes() -> None:
    current = start()
    again = apply(current, Rebalance("g0"))
    for s, table in current.group("g0").tables.items():
        for row, new in zip(table, again.group("g0").tables[s], strict=True):
            assert set(row) == set(new)


def _moved(topology: Topology) -> Topology:
    """`topology` after a whole move of g0: begin, cut-over, retire, finish."""
    for change in (BeginMove("g0"), CutOver("g0"), Retire("g0"), FinishMove("g0")):
        topology = apply(topology, change)
    return topology


def test_a_new_node_holds_nothing_until_the_move_gives_it_its_share() -> None:
    current = start()
    joined = apply(current, AddNode("g0", Node("d", "http://d:7700"), frozenset({7})))
    assert joined.group("g0").tables[16] == current.group("g0").tables[16]
    # An index with S=7 had no table: it is written down from the group before `d` joined.
    assert joined.group("g0").tables[7] == plan(None, ["a", "b", "c"], 2, 7)
    grown = _moved(joined)
    for s, table in grown.group("g0").tables.items():
        before = joined.group("g0").tables[s]
        assert loads(table)["d"] in (len(table) * 2 // 4, -(-len(table) * 2 // 4))
        for old, new in zip(before, table, strict=True):
            assert set(new) - set(old) <= {"d"}  # nothing moves between old nodes
    assert grown.group("g0").move is None


def test_each_phase_of_a_move_routes_reads_and_writes_as_documented() -> None:
    joined = apply(start(), AddNode("g0", Node("d", "http://d:7700")))
    old = joined.group("g0").tables[16]
    dual = apply(joined, BeginMove("g0"))
    target = dual.group("g0").move.tables[16]  # type: ignore[union-attr]
    moving = [s for s in range(16) if set(old[s]) != set(target[s])]
    assert moving and all("d" in target[s] for s in moving)
    s = moving[0]

    def view(topology: Topology) -> Placement:
        return Layout(topology).placement(topology.group("g0"), 16)

    placement = view(dual)
    assert placement.replicas[s] == old[s] and "d" in placement.writes[s]
    assert placement.incoming[s] == ("d",)
    assert s in placement.holdings["d"] and s not in placement.node_shards["d"]
    # The new replica must acknowledge: the old ones alone do not make the write.
    assert not judge_write(Layout(dual), [s], old[s], index_shards=16).succeeded
    assert judge_write(Layout(dual), [s], [*old[s], "d"], index_shards=16).succeeded
    refused(dual, BeginMove("g0"), "miroir_invalid_topology", "moving replicas")
    refused(dual, RemoveNode("d", force=True), "miroir_invalid_topology", "moving replicas")

    cut = apply(dual, CutOver("g0"))
    placement = view(cut)
    assert placement.replicas[s] == target[s] and set(placement.writes[s]) >= set(old[s])
    assert placement.incoming[s] == ()
    assert judge_write(Layout(cut), [s], target[s], index_shards=16).succeeded

    retired = apply(cut, Retire("g0"))
    placement = view(retired)
    gone = (set(old[s]) - set(target[s])).pop()
    assert gone not in placement.writes[s] and s in placement.holdings[gone]
    assert from_document(retired.epoch, to_document(retired)) == retired
    done = apply(retired, FinishMove("g0"))
    assert s not in view(done).holdings[gone]
    refused(done, CutOver("g0"), "miroir_invalid_topology", "no move")


def test_an_aborted_move_keeps_the_old_tables_and_cleans_the_new_replicas() -> None:
    dual = apply(apply(start(), AddNode("g0", Node("d", "http://d:7700"))), BeginMove("g0"))
    aborted = apply(dual, AbortMove("g0"))
    group = aborted.group("g0")
    assert group.tables == start().group("g0").tables
    assert group.move is not None and group.move.phase is MovePhase.CLEANUP
    assert not Layout(aborted).placement(group, 16).node_shards["d"]


def test_a_draining_node_gives_every_replica_away_and_then_can_be_removed() -> None:
    current = start()
    refused(current, RemoveNode("a"), "miroir_node_not_drained", "still holds")
    marked = apply(current, DrainNode("a"))
    assert marked.group("g0").nodes[0].draining is True
    assert marked.group("g0").tables == current.group("g0").tables
    drained = _moved(marked)
    for table in drained.group("g0").tables.values():
        assert all("a" not in row for row in table)
    assert from_document(drained.epoch, to_document(drained)) == drained
    removed = apply(drained, RemoveNode("a"))
    assert removed.group("g0").node_ids == ("b", "c")
    refused(removed, DrainNode("b"), "miroir_invalid_topology", "not draining")
    refused(current, RemoveNode("zz"), "miroir_node_not_found", "`zz`")


def test_a_dead_node_is_removed_with_force_and_the_move_refills_its_rows() -> None:
    current = _moved(apply(start(), AddNode("g0", Node("d", "http://d"))))
    gone = apply(current, RemoveNode("d", force=True))
    held = current.group("g0").tables[16]
    assert gone.group("g0").tables[16] == tuple(tuple(n for n in row if n != "d") for row in held)
    refilled = _moved(gone)
    for table in refilled.group("g0").tables.values():
        assert all(len(row) == 2 and "d" not in row for row in table)


def test_a_node_filling_a_replica_is_told_to_filter_it_out_of_searches() -> None:
    # RF=1: each node serves every shard it holds, so searches send it no shard filter,
    # until a drain starts copying shards onto it that it does not serve yet.
    g0 = ReplicaGroup("g0", nodes("a", "b", "c"))
    current = Topology(1, 8, 1, (g0.with_tables({8: plan(None, g0.node_ids, 1, 8)}),))
    settled = covering_set([("g0", Layout(current).placement(current.groups[0], 8))], "abc")
    assert not any(a.restrict for a in settled.assignments)
    dual = apply(apply(current, DrainNode("a")), BeginMove("g0"))
    placement = Layout(dual).placement(dual.groups[0], 8)
    covering = covering_set([("g0", placement)], "abc")
    filling = {n for row in placement.incoming for n in row}
    assert filling and all(a.restrict for a in covering.assignments if a.node_id in filling)
