from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miroir_proxy.core.filters import (
    And,
    Equals,
    FilterSyntax,
    In,
    Not,
    Or,
    Other,
    parse_filter,
    parse_filter_param,
)
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.core.planner import and_filters, node_filter, pinned_shards, shard_restriction

S = 64


def shards(*ids: str | int) -> frozenset[int]:
    return frozenset(shard_of(i, S) for i in ids)


def test_parser_respects_precedence_and_keeps_conditions_opaque() -> None:
    assert parse_filter("a = 1 OR b = 2 AND NOT c = 3") == Or(
        (Equals("a", "1"), And((Equals("b", "2"), Not(Equals("c", "3")))))
    )
    assert parse_filter("(id = 'x y') AND genres IN [a, \"b c\"]") == And(
        (Equals("id", "x y"), In("genres", ("a", "b c")))
    )
    assert parse_filter("price 10 TO 20") == Other()
    assert parse_filter("_geoRadius(45.4, 2.1, 2000) AND id != 3") == And((Other(), Other()))
    assert parse_filter("tag NOT IN [a, b]") == Other()
    assert parse_filter("title = 'it\\'s'") == Equals("title", "it's")


@pytest.mark.parametrize("text", ["(a = 1", "a = 1)", "AND", "a = 1 OR", "'open"])
def test_broken_filters_raise(text: str) -> None:
    with pytest.raises(FilterSyntax):
        parse_filter(text)


def test_array_form_is_an_and_of_ors() -> None:
    assert parse_filter_param([["g = a", "g = b"], "d = x"]) == And(
        (Or((Equals("g", "a"), Equals("g", "b"))), Equals("d", "x"))
    )
    assert parse_filter_param([]) is None
    assert parse_filter_param("  ") is None
    with pytest.raises(FilterSyntax):
        parse_filter_param([1])
    with pytest.raises(FilterSyntax):
        parse_filter_param(True)


@pytest.mark.parametrize(
    ("filter_param", "expected"),
    [
        ("id = 42", shards(42)),
        ("id = '42'", shards("42")),
        ("id IN [a, b, 7]", shards("a", "b", 7)),
        ("id = a AND genre = drama", shards("a")),
        ("genre = drama AND (id = a OR id IN [b])", shards("a", "b")),
        ("id IN [a, b] AND id = b", shards("b")),
        ("id = a OR genre = drama", None),
        ("NOT id = a", None),
        ("id != a", None),
        ("genre = drama", None),
        ("other_id = 3", None),
        ("id = 1.0", None),
        ("id = 01", None),
        ("id = -0", None),
        ("id = 1e3", None),
        ("id = 99999999999999999999", None),
        ("id IN [a, 2.5]", None),
        ("id = a AND", None),
        (["id = a", "genre = x"], shards("a")),
        ([["id = a", "id = b"]], shards("a", "b")),
        ([["id = a", "genre = b"]], None),
        (None, None),
        ("", None),
    ],
)
def test_primary_key_pins(filter_param: Any, expected: frozenset[int] | None) -> None:
    assert pinned_shards(filter_param, "id", S) == expected


def test_pins_need_a_known_primary_key_and_never_come_back_empty() -> None:
    assert pinned_shards("id = a", None, S) is None
    assert pinned_shards("id IN []", "id", S) == frozenset({0})
    assert pinned_shards("a.b = x", "a.b", S) == shards("x")


# Unquoted ids that read as numbers or as filter keywords (`id = OR`) are not plain values.
_NOT_PLAIN = frozenset({"inf", "nan", "infinity", "and", "or", "not", "to", "in", "exists", "is"})
word_ids = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,11}", fullmatch=True).filter(
    lambda i: i.lower() not in _NOT_PLAIN
)


@given(st.lists(st.one_of(word_ids, st.integers(-(2**53), 2**53)), min_size=1, max_size=8))
def test_a_pin_covers_exactly_the_shards_of_the_listed_ids(ids: list[str | int]) -> None:
    text = f"id IN [{', '.join(str(i) for i in ids)}]"
    assert pinned_shards(text, "id", S) == shards(*ids)
    assert pinned_shards(f"genre = x AND id = {ids[0]}", "id", S) == shards(ids[0])


def test_node_filters_for_string_and_array_forms() -> None:
    assert shard_restriction([9, 2]) == "_miroir_shard IN [2, 9]"
    assert node_filter("a = 1 OR b = 2", [3]) == "(a = 1 OR b = 2) AND (_miroir_shard IN [3])"
    assert node_filter(["a = 1", ["b = 2", "c = 3"]], [1, 2]) == [
        "a = 1",
        ["b = 2", "c = 3"],
        "_miroir_shard IN [1, 2]",
    ]
    assert node_filter(None, [4]) == "_miroir_shard IN [4]"
    assert node_filter([], [4]) == "_miroir_shard IN [4]"
    assert node_filter("a = 1", None) == "a = 1"
    assert node_filter(" ", None) is None
    assert and_filters("t = 1", ["a = 1"]) == ["t = 1", "a = 1"]
    assert and_filters(None, "") is None
