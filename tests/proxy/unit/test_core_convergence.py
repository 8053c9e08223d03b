"""The version rule of anti-entropy and the bucket comparison (core.convergence)."""

import random

from hypothesis import given
from hypothesis import strategies as st

from miroir_proxy.core.convergence import (
    Copy,
    Fingerprint,
    Fix,
    content_digest,
    decide,
    differing_buckets,
    plan,
)

NOW = 1_000_000


def doc(pk: str, stamp: int | None = 100, **fields: object) -> dict[str, object]:
    out: dict[str, object] = {"id": pk, "_miroir_shard": 3, **fields}
    if stamp is not None:
        out["_miroir_updated_at"] = stamp
    return out


def fingerprint(*documents: dict[str, object]) -> Fingerprint:
    fp = Fingerprint()
    for d in documents:
        fp.add(str(d["id"]), Copy.of(d))
    return fp


def test_digest_ignores_bookkeeping_and_key_order_but_not_expiry() -> None:
    a = {"id": 1, "title": "x", "_miroir_shard": 1, "_miroir_updated_at": 5}
    b = {"title": "x", "id": 1, "_miroir_shard": 9, "_miroir_updated_at": 7}
    assert content_digest(a) == content_digest(b)
    assert content_digest(a) != content_digest({**a, "title": "y"})
    assert content_digest(a) != content_digest({**a, "_miroir_expires_at": 10})


def test_the_paging_summary_equals_the_plain_one() -> None:
    document = {"id": "a", "n": [1, {"b": 2}], "_miroir_shard": 2, "_miroir_updated_at": 9}
    document["_miroir_expires_at"] = 50
    assert Copy.taken(dict(document)) == Copy.of(document) == Copy(content_digest(document), 9, 50)
    assert Copy.of({"id": 1, "_miroir_updated_at": "x"}).stamp == 0


@given(st.lists(st.tuples(st.text(max_size=6), st.integers(0, 3)), max_size=30), st.randoms())
def test_bucket_sums_ignore_paging_order(
    entries: list[tuple[str, int]], rnd: random.Random
) -> None:
    documents = [doc(pk, title=str(v)) for pk, v in dict(entries).items()]
    shuffled = list(documents)
    rnd.shuffle(shuffled)
    assert differing_buckets([fingerprint(*documents), fingerprint(*shuffled)]) == set()


def test_a_document_paged_twice_counts_once() -> None:
    once = fingerprint(doc("1", title="a"), doc("2"))
    twice = fingerprint(doc("1", title="old"), doc("2"), doc("1", title="a"))
    assert differing_buckets([once, twice]) == set()


def test_identical_replicas_need_nothing() -> None:
    docs = [doc(str(i), title=f"t{i}") for i in range(50)]
    prints = {"a": fingerprint(*docs), "b": fingerprint(*reversed(docs))}
    assert plan(prints, tombstones={}, cleared_at=None, now_ms=NOW) == []


def test_a_missing_copy_is_restored_from_a_holder() -> None:
    docs = [doc(str(i)) for i in range(20)]
    prints = {"a": fingerprint(*docs), "b": fingerprint(*docs[1:]), "c": fingerprint(*docs)}
    assert plan(prints, tombstones={}, cleared_at=None, now_ms=NOW) == [
        Fix("0", "restore", ("b",), "a")
    ]


def test_an_altered_copy_with_the_same_stamp_is_outvoted() -> None:
    good, bad = doc("7", title="miroir"), doc("7", title="changed on the node")
    prints = {r: fingerprint(good) for r in ("a", "b", "c")} | {"d": fingerprint(bad)}
    assert plan(prints, tombstones={}, cleared_at=None, now_ms=NOW) == [
        Fix("7", "restore", ("d",), "a")
    ]


def test_a_tie_between_altered_copies_is_decided_the_same_everywhere_and_flagged() -> None:
    one, other = Copy(digest=5, stamp=100), Copy(digest=9, stamp=100)
    fix = decide("k", {"a": one, "b": other}, tombstone=None, cleared_at=None, now_ms=NOW)
    again = decide("k", {"b": other, "a": one}, tombstone=None, cleared_at=None, now_ms=NOW)
    assert fix == Fix("k", "restore", ("b",), "a", conflict=True)
    assert again is not None and (again.source, again.targets) == ("a", ("b",))


def test_the_newest_stamp_wins_even_against_a_majority() -> None:
    old, new = Copy(digest=1, stamp=100), Copy(digest=2, stamp=200)
    fix = decide("k", {"a": old, "b": old, "c": new}, tombstone=None, cleared_at=None, now_ms=NOW)
    assert fix == Fix("k", "restore", ("a", "b"), "c")


def test_an_unstamped_copy_loses_to_a_stamped_one() -> None:
    behind_our_back, stamped = Copy(digest=1, stamp=0), Copy(digest=2, stamp=1)
    fix = decide(
        "k",
        {"a": behind_our_back, "b": behind_our_back, "c": stamped},
        tombstone=None,
        cleared_at=None,
        now_ms=NOW,
    )
    assert fix == Fix("k", "restore", ("a", "b"), "c")


def test_a_tombstone_newer_than_every_copy_deletes_everywhere() -> None:
    copy = Copy(digest=1, stamp=100)
    fix = decide("k", {"a": copy, "b": None, "c": copy}, tombstone=100, cleared_at=None, now_ms=NOW)
    assert fix == Fix("k", "deleted", ("a", "c"))


def test_a_write_after_the_tombstone_survives_it() -> None:
    rewritten = Copy(digest=1, stamp=101)
    fix = decide("k", {"a": rewritten, "b": None}, tombstone=100, cleared_at=None, now_ms=NOW)
    assert fix == Fix("k", "restore", ("b",), "a")


def test_tombstones_reach_replicas_that_agree_on_a_deleted_document() -> None:
    # Every replica still holds it (the delete reached none): the buckets agree, the
    # tombstone decides.
    prints = {r: fingerprint(doc("1", stamp=100), doc("2", stamp=100)) for r in ("a", "b")}
    fixes = plan(prints, tombstones={"1": 150, "9": 150}, cleared_at=None, now_ms=NOW)
    assert fixes == [Fix("1", "deleted", ("a", "b"))]


def test_a_clear_all_deletes_what_was_written_before_it() -> None:
    prints = {
        "a": fingerprint(doc("old", stamp=100), doc("new", stamp=300)),
        "b": fingerprint(doc("new", stamp=300)),
    }
    assert plan(prints, tombstones={}, cleared_at=200, now_ms=NOW) == [
        Fix("old", "deleted", ("a",))
    ]


def test_an_expired_document_is_deleted_never_copied() -> None:
    expired = doc("1", _miroir_expires_at=NOW - 1)
    prints = {"a": fingerprint(expired), "b": fingerprint()}
    assert plan(prints, tombstones={}, cleared_at=None, now_ms=NOW) == [Fix("1", "expired", ("a",))]


def test_an_expired_old_version_is_replaced_by_a_newer_unexpiring_one() -> None:
    old = doc("1", stamp=100, _miroir_expires_at=NOW - 1)
    new = doc("1", stamp=200)
    prints = {"a": fingerprint(old), "b": fingerprint(new)}
    assert plan(prints, tombstones={}, cleared_at=None, now_ms=NOW) == [
        Fix("1", "restore", ("a",), "b")
    ]


@given(
    st.dictionaries(
        st.sampled_from("abcd"),
        st.one_of(st.none(), st.builds(Copy, st.integers(0, 3), st.integers(0, 3))),
        min_size=1,
    ),
    st.one_of(st.none(), st.integers(0, 4)),
)
def test_applying_a_fix_converges_every_replica(
    copies: dict[str, Copy | None], tombstone: int | None
) -> None:
    fix = decide("k", copies, tombstone=tombstone, cleared_at=None, now_ms=NOW)
    after = dict(copies)
    if fix is not None:
        for target in fix.targets:
            after[target] = None if fix.source is None else copies[fix.source]
    values = set(after.values())
    digests = {c.digest for c in after.values() if c is not None}
    assert len(digests) <= 1
    assert None not in values or len(values) == 1  # all hold it, or none does
    assert decide("k", after, tombstone=tombstone, cleared_at=None, now_ms=NOW) is None
