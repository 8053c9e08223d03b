import dataclasses

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from xxhash import xxh3_64_intdigest

from miroir_proxy.core.hashing import pk_text, shard_of, shards_of
from miroir_proxy.core.placement import (
    node_shard_sets,
    place,
    placement,
    rendezvous_score,
    route_documents,
    write_nodes,
    write_targets,
)
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


def owners(node_ids: list[str], shards: int) -> list[str]:
    return [replicas[0] for replicas in place(node_ids, 1, shards).replicas]


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


# --- placement -------------------------------------------------------------------------


def test_placement_follows_the_rendezvous_rule() -> None:
    nodes = ["node-0", "node-1", "node-2", "node-3"]
    replicas = place(nodes, 2, 16).replicas
    for shard, chosen in enumerate(replicas):
        ranked = sorted(nodes, key=lambda n: (-rendezvous_score(shard, n), n))
        assert chosen == tuple(ranked[:2])
    assert rendezvous_score(5, "node-1") == xxh3_64_intdigest(b"5:node-1")


def test_placement_is_deterministic_and_ignores_node_order_and_group_name() -> None:
    a = placement(group("g0", "node-0", "node-1", "node-2"), 64, 2)
    b = placement(group("other", "node-2", "node-0", "node-1"), 64, 2)
    assert a == b
    assert place(["x", "y", "z"], 1, 64).replicas == place(["z", "y", "x"], 1, 64).replicas


def test_64_shards_over_3_nodes_are_balanced() -> None:
    counts = {
        n: len(s) for n, s in place(["node-0", "node-1", "node-2"], 1, 64).node_shards.items()
    }
    assert sum(counts.values()) == 64
    assert all(18 <= c <= 26 for c in counts.values()), counts


def test_balance_is_statistical_for_arbitrary_names() -> None:
    # Rendezvous hashing balances in expectation only: over many random 3-node groups the
    # mean share is S/3 and the spread is binomial (sd ~ 3.8 shards at S=64).
    totals = [0, 0, 0]
    for trial in range(300):
        names = [f"t{trial}-n{i}" for i in range(3)]
        for i, name in enumerate(names):
            totals[i] += len(place(names, 1, 64).node_shards[name])
    assert all(abs(t / 300 - 64 / 3) < 1.0 for t in totals)


def test_adding_a_fourth_node_moves_only_shards_that_now_prefer_it() -> None:
    old = owners(["node-0", "node-1", "node-2"], 64)
    new = owners(["node-0", "node-1", "node-2", "node-3"], 64)
    moved = [s for s in range(64) if old[s] != new[s]]
    assert all(new[s] == "node-3" for s in moved)
    assert moved == [s for s in range(64) if new[s] == "node-3"]
    assert 8 <= len(moved) <= 26  # about S/4


@settings(max_examples=60)
@given(st.sets(node_names, min_size=2, max_size=6), node_names, st.integers(1, 3))
def test_adding_a_node_never_moves_a_copy_between_old_nodes(
    nodes: set[str], newcomer: str, rf: int
) -> None:
    nodes.discard(newcomer)
    assume(len(nodes) >= rf)
    before = place(sorted(nodes), rf, 32).replicas
    after = place([*sorted(nodes), newcomer], rf, 32).replicas
    for shard in range(32):
        lost = set(before[shard]) - set(after[shard])
        gained = set(after[shard]) - set(before[shard])
        assert gained <= {newcomer}
        assert len(lost) == len(gained)


@settings(max_examples=60)
@given(st.sets(node_names, min_size=2, max_size=6), st.integers(1, 3), st.data())
def test_removing_a_node_moves_only_its_shards(
    nodes: set[str], rf: int, data: st.DataObject
) -> None:
    ordered = sorted(nodes)
    gone = data.draw(st.sampled_from(ordered))
    before = place(ordered, rf, 32).replicas
    after = place([n for n in ordered if n != gone], rf, 32).replicas
    for shard in range(32):
        if gone not in before[shard]:
            assert after[shard] == before[shard]
        else:
            assert set(before[shard]) - {gone} <= set(after[shard])


@given(st.sets(node_names, min_size=1, max_size=7), st.integers(1, 4), st.integers(1, 80))
def test_replicas_are_distinct_nodes_and_views_agree(nodes: set[str], rf: int, shards: int) -> None:
    result = place(sorted(nodes), rf, shards)
    assert len(result.replicas) == shards
    for shard, replicas in enumerate(result.replicas):
        assert len(replicas) == min(rf, len(nodes)) == len(set(replicas))
        assert all(shard in result.node_shards[n] for n in replicas)
    assert sum(len(s) for s in result.node_shards.values()) == shards * min(rf, len(nodes))


def test_groups_never_share_a_shard_copy_and_writes_reach_every_group() -> None:
    topo = Topology(
        1,
        16,
        2,
        (
            group("g0", "a0", "a1", "a2"),
            group("g1", "b0", "b1", "b2", state=GroupState.SYNCING),
        ),
    )
    for shard in range(16):
        targets = dict(write_targets(topo, shard))
        assert set(targets) == {"g0", "g1"}
        assert not set(targets["g0"]) & set(targets["g1"])
        assert write_nodes(topo, shard) == targets["g0"] + targets["g1"]
    sets = node_shard_sets(topo.group("g0"), 16, 2)
    assert sum(len(s) for s in sets.values()) == 32


def test_route_documents_sends_each_document_to_its_replicas_in_every_group() -> None:
    topo = Topology(1, 64, 2, (group("g0", "a0", "a1", "a2"), group("g1", "b0", "b1")))
    pks: list[str | int] = [f"doc-{i}" for i in range(500)] + list(range(500))
    shard_per_doc = shards_of(pks, 64)
    routed = route_documents(shard_per_doc, topo)
    received: dict[int, set[str]] = {}
    for node_id, indices in routed.items():
        for i in indices:
            received.setdefault(i, set()).add(node_id)
    for i, shard in enumerate(shard_per_doc):
        assert received[i] == set(write_nodes(topo, shard))
    # Within one shard the batch order is kept, so a later version of a document wins.
    for indices in routed.values():
        for shard in {shard_per_doc[i] for i in indices}:
            same_shard = [i for i in indices if shard_per_doc[i] == shard]
            assert same_shard == sorted(same_shard)


def test_a_group_smaller_than_rf_keeps_every_shard_on_every_node() -> None:
    result = place(["solo", "duo"], 3, 8)
    assert all(set(r) == {"solo", "duo"} for r in result.replicas)
    grown = place(["solo", "duo", "trio"], 3, 8)
    assert all(set(r) == {"solo", "duo", "trio"} for r in grown.replicas)


def test_invalid_placement_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        place(["a"], 0, 8)


def test_routing_10000_keys_sends_each_key_to_its_shards_replica() -> None:
    # How fast this is belongs to `make bench` (route_10k_ms), never to a test.
    topo = Topology(1, 64, 1, (group("g0", "node-0", "node-1", "node-2"),))
    pks = [f"doc-{i}" for i in range(10_000)]
    shards = shards_of(pks, 64)
    routed = route_documents(shards, topo)
    assert sum(len(v) for v in routed.values()) == 10_000
    replicas = place(["node-0", "node-1", "node-2"], 1, 64).replicas
    for node, indexes in routed.items():
        assert all(node in replicas[shards[i]] for i in indexes)


def test_topology_document_round_trip() -> None:
    topo = Topology(
        epoch=3,
        shards=16,
        replication_factor=2,
        groups=(
            ReplicaGroup("g0", (Node("a", "http://a"), Node("b", "http://b"))),
            ReplicaGroup("g1", (Node("c", "http://c"),), GroupState.SYNCING),
        ),
    )
    assert from_document(3, to_document(topo)) == topo
