import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xxhash import xxh3_64_intdigest

from miroir_proxy.core.assignment import plan, rendezvous_table
from miroir_proxy.core.hashing import pk_text, shard_of, shards_of
from miroir_proxy.core.placement import Layout
from miroir_proxy.core.topology import (
    GroupState,
    Node,
    ReplicaGroup,
    Topology,
    from_document,
    to_document,
)

node_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


def group(group_id: str, *node_ids: str, state: GroupState = GroupState.ACTIVE) -> ReplicaGroup:
    return ReplicaGroup(group_id, tuple(Node(n, f"http://{n}:7700") for n in node_ids), state)


def node_doc(node_id: str) -> dict[str, str]:
    return {"id": node_id, "url": f"http://{node_id}:7700"}


# --- hashing ---------------------------------------------------------------------------


def test_shard_is_xxh3_of_the_utf8_key_modulo_shards() -> None:
    assert shard_of("movie-42", 64) == xxh3_64_intdigest(b"movie-42") % 64
    assert shard_of("café", 7) == xxh3_64_intdigest("café".encode()) % 7


def test_integer_keys_hash_their_decimal_text() -> None:
    assert shard_of(123456, 64) == shard_of("123456", 64)
    assert shard_of(-5, 64) == shard_of("-5", 64)
    assert pk_text(7) == "7"


def test_booleans_are_not_keys() -> None:
    with pytest.raises(TypeError):
        shard_of(True, 8)


@given(st.lists(st.one_of(st.integers(), node_names), max_size=50), st.integers(1, 300))
def test_batch_hashing_matches_single_hashing(pks: list[str | int], shards: int) -> None:
    assert shards_of(pks, shards) == [shard_of(pk, shards) for pk in pks]
    assert all(0 <= s < shards for s in shards_of(pks, shards))


# --- topology values -------------------------------------------------------------------


def test_topology_values_are_frozen_and_changes_bump_the_epoch() -> None:
    topo = Topology(3, 64, 2, (group("g0", "a", "b"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.epoch = 4  # type: ignore[misc]
    grown = topo.with_group(group("g1", "c", "d", state=GroupState.SYNCING))
    assert (grown.epoch, [g.id for g in grown.groups]) == (4, ["g0", "g1"])
    replaced = grown.with_group(grown.group("g1").with_state(GroupState.ACTIVE))
    assert [g.id for g in replaced.groups] == ["g0", "g1"]
    assert [g.id for g in replaced.search_groups()] == ["g0", "g1"]
    assert [g.id for g in grown.search_groups()] == ["g0"]
    assert replaced.without_group("g0").groups == (replaced.group("g1"),)
    assert topo.node("b").url == "http://b:7700"
    assert grown.group("g0").with_node(Node("e", "u")).without_node("a").node_ids == ("b", "e")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Topology(1, 0, 1, ()), "shard"),
        (lambda: Topology(1, 8, 0, ()), "replication"),
        (lambda: Topology(1, 8, 1, (group("g", "a"), group("g", "b"))), "share an id"),
        (lambda: Topology(1, 8, 1, (group("g0", "a"), group("g1", "a"))), "more than one"),
        (lambda: group("g", "a", "a"), "twice"),
    ],
)
def test_invalid_topologies_are_rejected(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


# --- placement: assignment tables per (group, S) ------------------------------------


def test_the_rendezvous_table_follows_the_rendezvous_rule() -> None:
    nodes = ["node-0", "node-1", "node-2", "node-3"]
    table = rendezvous_table(nodes, 2, 16)
    for shard, chosen in enumerate(table):
        ranked = sorted(nodes, key=lambda n: (-xxh3_64_intdigest(f"{shard}:{n}".encode()), n))
        assert chosen == tuple(ranked[:2])
    assert rendezvous_table(["x", "y", "z"], 1, 64) == rendezvous_table(["z", "y", "x"], 1, 64)


def test_a_stored_document_without_tables_keeps_its_rendezvous_placement() -> None:
    # Clusters stored before assignment tables existed: upgrading moves no data.
    legacy = {
        "shards": 16,
        "replicationFactor": 2,
        "groups": [{"id": "g0", "state": "active", "nodes": [node_doc(n) for n in "abc"]}],
    }
    topo = from_document(5, legacy)
    assert topo.group("g0").tables == {16: rendezvous_table(["a", "b", "c"], 2, 16)}
    assert Layout(topo).placement(topo.group("g0"), 16).replicas == topo.group("g0").tables[16]


def test_a_layout_routes_with_the_published_table_and_plans_other_shard_counts() -> None:
    table = tuple(("a", "b") if s % 2 else ("b", "c") for s in range(4))
    g0 = group("g0", "a", "b", "c").with_tables({4: table})
    layout = Layout(Topology(1, 4, 2, (g0,)))
    placement = layout.placement(g0, 4)
    assert placement.replicas == table
    assert placement.node_shards == {
        "a": frozenset({1, 3}),
        "b": frozenset(range(4)),
        "c": frozenset({0, 2}),
    }
    assert layout.placement(g0, 4) is placement  # built once per epoch
    assert layout.placement(g0, 8).replicas == plan(None, ["a", "b", "c"], 2, 8)


def test_groups_never_share_a_shard_copy() -> None:
    topo = Topology(
        1,
        16,
        2,
        (
            group("g0", "a0", "a1", "a2"),
            group("g1", "b0", "b1", "b2", state=GroupState.SYNCING),
        ),
    )
    layout = Layout(topo)
    for shard in range(16):
        g0, g1 = (layout.placement(g, 16).replicas[shard] for g in topo.groups)
        assert len(g0) == len(g1) == 2
        assert not set(g0) & set(g1)
    assert sum(len(s) for s in layout.placement(topo.groups[0], 16).node_shards.values()) == 32


@pytest.mark.parametrize(
    "table",
    [
        (("a",),),  # one row for S=2
        (("a",), ("a", "a")),  # a node twice
        (("a",), ("z",)),  # not in the group
    ],
)
def test_a_table_must_name_each_shard_on_distinct_nodes_of_its_group(
    table: tuple[tuple[str, ...], ...],
) -> None:
    with pytest.raises(ValueError, match="table"):
        group("g0", "a", "b").with_tables({2: table})


def test_a_group_smaller_than_rf_keeps_every_shard_on_every_node() -> None:
    assert all(set(r) == {"solo", "duo"} for r in plan(None, ["solo", "duo"], 3, 8))


def test_topology_document_round_trip_keeps_the_tables() -> None:
    topo = Topology(
        epoch=3,
        shards=16,
        replication_factor=2,
        groups=(
            ReplicaGroup(
                "g0",
                (Node("a", "http://a"), Node("b", "http://b")),
                tables={16: plan(None, ["a", "b"], 2, 16), 4: plan(None, ["a", "b"], 2, 4)},
            ),
            ReplicaGroup("g1", (Node("c", "http://c"),), GroupState.SYNCING, {}),
        ),
    )
    assert from_document(3, to_document(topo)) == topo
    assert "tables" not in to_document(topo, tables=False)["groups"][0]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"shards": "16", "replicationFactor": 1, "groups": []}, "integers"),
        ({"shards": 16, "replicationFactor": 1, "groups": {}}, "array"),
        (
            {"shards": 16, "replicationFactor": 1, "groups": [{"id": "g 0", "nodes": []}]},
            "group id",
        ),
        ({"shards": 16, "replicationFactor": 1, "groups": [{"id": "g", "nodes": [1]}]}, "object"),
        ({"shards": 16, "replicationFactor": 1}, "malformed"),
    ],
)
def test_an_unreadable_document_is_refused_with_the_reason(
    document: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        from_document(1, document)
