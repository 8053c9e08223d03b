"""Topology changes as typed values: what each one does and what it refuses."""

from __future__ import annotations

import pytest

from miroir_proxy.core.assignment import loads, plan
from miroir_proxy.core.changes import (
    AddGroup,
    AddNode,
    DrainNode,
    Rebalance,
    RemoveGroup,
    RemoveNode,
    ReplaceLayout,
    SetGroupState,
    apply,
)
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import (
    GroupState,
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


def test_a_new_node_takes_its_share_and_nothing_moves_between_old_nodes() -> None:
    current = start()
    grown = apply(current, AddNode("g0", Node("d", "http://d:7700")))
    for s, table in grown.group("g0").tables.items():
        before = current.group("g0").tables[s]
        assert loads(table)["d"] in (len(table) * 2 // 4, -(-len(table) * 2 // 4))
        for old, new in zip(before, table, strict=True):
            assert set(old) - set(new) <= set(old)  # only replicas handed to `d` go
            assert set(new) - set(old) <= {"d"}


def test_a_draining_node_gives_every_replica_away_and_then_can_be_removed() -> None:
    current = start()
    refused(current, RemoveNode("a"), "miroir_node_not_drained", "still holds")
    drained = apply(current, DrainNode("a"))
    assert drained.group("g0").nodes[0].draining is True
    for table in drained.group("g0").tables.values():
        assert all("a" not in row for row in table)
    assert from_document(drained.epoch, to_document(drained)) == drained
    removed = apply(drained, RemoveNode("a"))
    assert removed.group("g0").node_ids == ("b", "c")
    refused(removed, DrainNode("b"), "miroir_invalid_topology", "not draining")
    refused(current, RemoveNode("zz"), "miroir_node_not_found", "`zz`")


def test_a_dead_node_is_removed_with_force_and_its_replicas_planned_elsewhere() -> None:
    current = start().with_group(start().group("g0").with_node(Node("d", "http://d")))
    current = apply(current, Rebalance("g0"))
    gone = apply(current, RemoveNode("d", force=True))
    for table in gone.group("g0").tables.values():
        assert all(len(row) == 2 and "d" not in row for row in table)
