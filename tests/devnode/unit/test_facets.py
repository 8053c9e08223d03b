"""Facet index: flattening, attribute patterns, facetDistribution and facetStats."""

from __future__ import annotations

from typing import Any

import pytest

from miroir_devnode.engine.facets import FacetIndex, format_number, normalize_facet
from miroir_devnode.engine.patterns import (
    filter_rule_match,
    filterable_patterns,
    flatten,
    matches_pattern,
    wildcard_match,
)


@pytest.mark.parametrize(
    ("field", "pattern", "expected"),
    [
        ("test", "*", True),
        ("test", "test*", True),
        ("testa", "test*", True),
        ("atest", "*test", True),
        ("atesta", "*test*", True),
        ("test", "test*test", False),
        ("testa", "*test", False),
        ("atest", "test*", False),
        ("a.b", "a", True),
        ("a.b.c", "a.b", True),
        ("ab", "a", False),
        ("a", "a.b", False),
    ],
)
def test_matches_pattern(field: str, pattern: str, expected: bool) -> None:
    assert matches_pattern(field, pattern) is expected


def test_filter_rules_differ_between_legacy_strings_and_patterns() -> None:
    assert filter_rule_match("a", "a.b")
    assert not filter_rule_match("a*", "ab")  # a legacy string is not a wildcard
    assert filter_rule_match({"attributePatterns": ["a*"]}, "ab")
    assert not filter_rule_match({"attributePatterns": ["a"]}, "a.b")
    assert not wildcard_match("a.b", "a")
    rules: list[Any] = [
        "b",
        {"attributePatterns": ["a", "c*"]},
        {"attributePatterns": ["z"], "features": {"filter": {"equality": False}}},
    ]
    assert filterable_patterns(rules) == ["a", "b", "c*"]


def test_flatten() -> None:
    doc = {
        "id": 1,
        "title": "T",
        "tags": ["a", ["b", None]],
        "info": {"maker": {"name": "Acme"}, "year": 2001},
        "variants": [{"size": 1}, {"size": 2, "color": "red"}],
        "empty": [],
        "nothing": None,
        "obj": {},
    }
    assert flatten(doc) == {
        "id": [1],
        "title": ["T"],
        "tags": ["a", "b", None],
        "info.maker.name": ["Acme"],
        "info.year": [2001],
        "variants.size": [1, 2],
        "variants.color": ["red"],
        "empty": [],
        "nothing": [None],
        "obj": [],
    }


def test_number_and_string_rendering() -> None:
    assert [format_number(x) for x in (1.0, 2.5, -0.0, 1e21, 1e-7, 100.0, -3.25)] == [
        "1",
        "2.5",
        "-0",
        "1000000000000000000000",
        "0.0000001",
        "100",
        "-3.25",
    ]
    assert normalize_facet("  Éclair ") == normalize_facet("E\u0301CLAIR")
    assert normalize_facet("Éclair") != "eclair"


DOCS: list[dict[str, Any]] = [
    {"genre": "Horror", "year": 2001, "rating": 4.5, "tags": ["b", "a"], "ok": True},
    {"genre": "comedy", "year": 2001, "rating": 3, "tags": ["a"], "ok": False},
    {"genre": "horror", "year": 1999, "rating": "n/a", "tags": ["c", "a"], "ok": True},
    {"genre": "Drama", "year": 2020.0, "tags": [], "ok": True},
    {"genre": ["comedy", "Drama"], "year": "2001"},
]


@pytest.fixture
def facets() -> FacetIndex:
    index = FacetIndex(lambda field: field != "ignored")
    for doc_id, doc in enumerate(DOCS):
        index.add(doc_id, doc)
    return index


ALL = frozenset(range(len(DOCS)))


def test_alpha_distribution_uses_normalized_order_and_original_spelling(facets: FacetIndex) -> None:
    assert facets.distribution("genre", ALL, max_values=100, sort_by="alpha") == {
        "comedy": 2,
        "Drama": 2,
        "Horror": 2,
    }
    assert facets.distribution("genre", {2, 4}, max_values=100, sort_by="alpha") == {
        "comedy": 1,
        "Drama": 1,
        "horror": 1,
    }


def test_numbers_come_first_then_strings(facets: FacetIndex) -> None:
    # The string "2001" renders like the number 2001 and, as in Meilisearch, overwrites its count.
    assert facets.distribution("year", ALL, max_values=100, sort_by="alpha") == {
        "1999": 1,
        "2001": 1,
        "2020": 1,
    }
    assert facets.distribution("year", {0, 1, 2}, max_values=100, sort_by="count") == {
        "2001": 2,
        "1999": 1,
    }
    assert facets.distribution("rating", ALL, max_values=100, sort_by="alpha") == {
        "3": 1,
        "4.5": 1,
        "n/a": 1,
    }
    assert facets.distribution("rating", ALL, max_values=2, sort_by="alpha") == {"3": 1, "4.5": 1}
    assert facets.distribution("ok", ALL, max_values=100, sort_by="alpha") == {
        "false": 1,
        "true": 3,
    }


def test_count_sort_and_truncation(facets: FacetIndex) -> None:
    assert list(facets.distribution("tags", ALL, max_values=100, sort_by="count").items()) == [
        ("a", 3),
        ("b", 1),
        ("c", 1),
    ]
    assert facets.distribution("tags", ALL, max_values=2, sort_by="count") == {"a": 3, "b": 1}
    assert facets.distribution("tags", ALL, max_values=1, sort_by="alpha") == {"a": 3}
    assert facets.distribution("tags", ALL, max_values=0, sort_by="alpha") == {}


def test_distribution_counts_only_candidates(facets: FacetIndex) -> None:
    assert facets.distribution("tags", {1, 2}, max_values=100, sort_by="alpha") == {"a": 2, "c": 1}
    assert facets.distribution("tags", set(), max_values=100, sort_by="alpha") == {}
    assert facets.distribution("unknown", ALL, max_values=100, sort_by="alpha") == {}


def test_stats_cover_numeric_values_of_candidates(facets: FacetIndex) -> None:
    assert facets.stats("year", ALL) == (1999.0, 2020.0)
    assert facets.stats("year", {0, 1}) == (2001.0, 2001.0)
    assert facets.stats("rating", {2}) is None
    assert facets.stats("genre", ALL) is None
    assert facets.stats("year", {4}) is None


def test_removal_updates_distribution_stats_and_spelling(facets: FacetIndex) -> None:
    facets.remove(0, DOCS[0])
    assert facets.distribution("genre", ALL, max_values=100, sort_by="alpha") == {
        "comedy": 2,
        "Drama": 2,
        "horror": 1,
    }
    facets.remove(2, DOCS[2])
    assert "horror" not in facets.distribution("genre", ALL, max_values=100, sort_by="alpha")
    assert facets.stats("year", ALL) == (2001.0, 2020.0)
    for doc_id in (1, 3, 4):
        facets.remove(doc_id, DOCS[doc_id])
    assert facets.fields() == set()
    assert facets.distribution("year", ALL, max_values=100, sort_by="alpha") == {}
    facets.add(7, {"year": 1950})
    assert facets.stats("year", ALL | {7}) == (1950.0, 1950.0)


def test_fields_lists_indexed_leaf_paths() -> None:
    index = FacetIndex(lambda field: field != "ignored")
    index.add(0, {"a": {"b": 1, "c": []}, "ignored": 2, "d": None})
    assert index.fields() == {"a.b", "a.c", "d"}
