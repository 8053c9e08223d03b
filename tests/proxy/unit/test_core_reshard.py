"""Reshard changes of the topology: which concrete index a client's name means, which ones
a write reaches, which ones clients see, in every phase."""

from __future__ import annotations

import pytest

from miroir_proxy.core.assignment import plan
from miroir_proxy.core.changes import (
    BeginReshard,
    EndReshard,
    FlipReshard,
    ForgetName,
    UnflipReshard,
    apply,
)
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.core.topology import (
    Node,
    ReplicaGroup,
    ReshardPhase,
    Topology,
    from_document,
    to_document,
)
from miroir_proxy.operations.reshard import shard_classes


def start() -> Topology:
    members = tuple(Node(i, f"http://{i}:7700") for i in ("a", "b", "c"))
    g0 = ReplicaGroup("g0", members).with_tables({16: plan(None, ("a", "b", "c"), 2, 16)})
    return Topology(3, 16, 2, (g0,))


def roundtrip(topology: Topology) -> Topology:
    again = from_document(topology.epoch, to_document(topology))
    assert again == topology
    return again


def test_a_reshard_writes_both_serves_the_source_then_the_target_and_ends() -> None:
    before = start()
    assert before.concrete("books") == "books"
    assert before.also_written("books") == ()

    dual = roundtrip(apply(before, BeginReshard("books", "books", 16, "shadow", 32)))
    assert dual.epoch == 4
    assert dual.group("g0").tables[32] == plan(None, ("a", "b", "c"), 2, 32)
    assert dual.concrete("books") == "books"
    assert dual.also_written("books") == (("shadow", 32),)
    assert dual.also_written("shadow") == (("books", 16),)
    assert (dual.client_name("books"), dual.client_name("shadow")) == ("books", None)

    flipped = roundtrip(apply(dual, FlipReshard("books")))
    assert flipped.reshards["books"].phase is ReshardPhase.FLIPPED
    assert flipped.concrete("books") == "shadow"
    assert flipped.also_written("shadow") == (("books", 16),)
    assert (flipped.client_name("shadow"), flipped.client_name("books")) == ("books", None)

    back = apply(flipped, UnflipReshard("books"))
    assert back.concrete("books") == "books" and back.names == {}

    done = roundtrip(apply(flipped, EndReshard("books")))
    assert done.reshards == {} and done.concrete("books") == "shadow"
    assert done.also_written("shadow") == ()
    assert done.client_name("shadow") == "books"
    assert done.client_name("books") is None  # the old uid means nothing to clients now
    # A write that resolved the name just before the end goes to what it means now.
    assert done.moved("books") == "shadow" and done.moved("shadow") is None
    freed = apply(done, ForgetName("books"))
    assert freed.concrete("books") == "books" and freed.client_name("books") == "books"
    assert freed.moved("books") is None  # a new index of that name is its own


def test_an_aborted_reshard_retires_its_shadow_towards_the_source() -> None:
    dual = apply(start(), BeginReshard("books", "books", 16, "shadow", 32))
    back = apply(apply(dual, FlipReshard("books")), UnflipReshard("books"))
    for before in (dual, back):
        aborted = roundtrip(apply(before, EndReshard("books")))
        assert aborted.concrete("books") == "books" and aborted.moved("shadow") == "books"
        assert aborted.client_name("shadow") is None and aborted.client_name("books") == "books"


def test_a_second_reshard_of_a_resharded_index_flips_between_hidden_uids() -> None:
    done = apply(
        apply(apply(start(), BeginReshard("books", "books", 16, "s1", 32)), FlipReshard("books")),
        EndReshard("books"),
    )
    again = apply(apply(done, BeginReshard("books", "s1", 32, "s2", 8)), FlipReshard("books"))
    assert again.concrete("books") == "s2"
    assert again.client_name("s2") == "books" and again.client_name("s1") is None


@pytest.mark.parametrize(
    "change",
    [FlipReshard("books"), UnflipReshard("books"), EndReshard("books")],
)
def test_a_phase_change_of_no_reshard_is_refused(change: object) -> None:
    with pytest.raises(MiroirError) as raised:
        apply(start(), change)  # type: ignore[arg-type]
    assert raised.value.code == "miroir_invalid_topology"


def test_one_reshard_per_index_at_a_time() -> None:
    dual = apply(start(), BeginReshard("books", "books", 16, "shadow", 32))
    with pytest.raises(MiroirError):
        apply(dual, BeginReshard("books", "books", 16, "other", 8))
    with pytest.raises(MiroirError):
        apply(dual, UnflipReshard("books"))


@pytest.mark.parametrize(
    ("source", "target", "classes"), [(16, 32, 16), (32, 16, 16), (16, 24, 8), (16, 17, 1)]
)
def test_verification_classes_hold_the_same_documents_on_both_sides(
    source: int, target: int, classes: int
) -> None:
    assert shard_classes(source, target) == classes
    for key in range(2_000):
        # Shard s of S1 and t of S2 share a document only when s = t (mod classes).
        assert shard_of(key, source) % classes == shard_of(key, target) % classes
