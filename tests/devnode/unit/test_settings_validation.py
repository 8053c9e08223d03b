"""Settings: validation messages and codes, normalization, and how patches combine."""

from __future__ import annotations

from typing import Any

import pytest

from miroir_devnode.errors import MeiliError
from miroir_devnode.settings import (
    DEFAULTS,
    apply_patch,
    check_when_applied,
    defaults,
    reset_all,
    validate_patch,
    validate_value,
)


def _error(body: Any) -> MeiliError:
    with pytest.raises(MeiliError) as caught:
        validate_patch(body)
    return caught.value


def test_defaults_have_the_twenty_keys_in_meilisearch_order() -> None:
    assert list(DEFAULTS)[:4] == [
        "displayedAttributes", "searchableAttributes", "filterableAttributes", "sortableAttributes"
    ]  # fmt: skip
    assert len(DEFAULTS) == 20
    assert DEFAULTS["rankingRules"] == [
        "words", "typo", "proximity", "attributeRank", "sort", "wordPosition", "exactness"
    ]  # fmt: skip


def test_unknown_top_level_field_is_bad_request() -> None:
    err = _error({"rankingRule": []})
    assert err.code == "bad_request"
    assert err.message.startswith("Unknown field `rankingRule`: did you mean `rankingRules`?")


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"displayedAttributes": "title"},
            "invalid_settings_displayed_attributes",
            "Invalid value type at `.displayedAttributes`: expected an array, but found a "
            'string: `"title"`',
        ),
        (
            {"pagination": {"maxTotalHits": -1}},
            "invalid_settings_pagination",
            "Invalid value type at `.pagination.maxTotalHits`: expected a positive integer, "
            "but found a negative integer: `-1`",
        ),
        (
            {"proximityPrecision": "byWords"},
            "invalid_settings_proximity_precision",
            "Unknown value `byWords` at `.proximityPrecision`: did you mean `byWord`? "
            "expected one of `byWord`, `byAttribute`",
        ),
        (
            {"rankingRules": ["words", "price:up"]},
            "invalid_settings_ranking_rules",
            "Invalid value at `.rankingRules[1]`: `price:up` ranking rule is invalid. Valid "
            "ranking rules are words, typo, sort, proximity, attribute, exactness and custom "
            "ranking rules.",
        ),
        (
            {"typoTolerance": {"enable": False}},
            "invalid_settings_typo_tolerance",
            "Unknown field `enable` inside `.typoTolerance`: did you mean `enabled`? expected one "
            "of `enabled`, `minWordSizeForTypos`, `disableOnWords`, `disableOnAttributes`, "
            "`disableOnNumbers`",
        ),
        (
            {"faceting": {"sortFacetValuesBy": {"genre": "size"}}},
            "invalid_settings_faceting",
            "Unknown value `size` at `.faceting.sortFacetValuesBy.genre`: expected one of "
            "`alpha`, `count`",
        ),
    ],
)
def test_type_and_value_errors(body: dict[str, Any], code: str, message: str) -> None:
    err = _error(body)
    assert (err.code, err.message) == (code, message)
    assert err.status == 400


def test_fields_are_checked_in_the_order_sent() -> None:
    err = _error({"stopWords": 1, "synonyms": 2})
    assert err.code == "invalid_settings_stop_words"


def test_chat_and_foreign_keys_are_disabled_features() -> None:
    assert validate_patch({"embedders": {}, "chat": None}) == {"embedders": {}}
    manual = {"default": {"source": "userProvided", "dimensions": 2}}
    assert validate_patch({"embedders": manual}) == {"embedders": manual}
    assert _error({"embedders": {"default": {"source": "userProvided"}}}).code == (
        "invalid_settings_embedders"
    )
    bodies: list[dict[str, Any]] = [
        {"chat": {}},
        {"foreignKeys": []},
    ]
    for body in bodies:
        assert _error(body).code == "feature_not_enabled"


def test_normalization_of_sets_wildcards_and_filterable_objects() -> None:
    patch = validate_patch(
        {
            "displayedAttributes": ["title", "*"],
            "sortableAttributes": ["year", "title", "year"],
            "stopWords": ["the", "a"],
            "filterableAttributes": ["genre", {"attributePatterns": ["price"]}],
            "synonyms": {"b": ["x"], "a": ["y"]},
        }
    )
    assert patch["displayedAttributes"] == ["*"]
    assert patch["sortableAttributes"] == ["title", "year"]
    assert patch["stopWords"] == ["a", "the"]
    assert patch["filterableAttributes"] == [
        "genre",
        {
            "attributePatterns": ["price"],
            "features": {"facetSearch": False, "filter": {"equality": True, "comparison": False}},
        },
    ]
    assert list(patch["synonyms"]) == ["a", "b"]


def test_patch_merges_nested_objects_and_null_resets() -> None:
    current = apply_patch(
        defaults(),
        validate_patch(
            {
                "typoTolerance": {"minWordSizeForTypos": {"oneTypo": 4}, "disableOnWords": ["x"]},
                "faceting": {"maxValuesPerFacet": 10},
                "searchableAttributes": ["title"],
            }
        ),
    )
    assert current["typoTolerance"]["minWordSizeForTypos"] == {"oneTypo": 4, "twoTypos": 9}
    assert current["typoTolerance"]["enabled"] is True
    assert current["faceting"] == {"maxValuesPerFacet": 10, "sortFacetValuesBy": {"*": "alpha"}}
    reset = apply_patch(
        current,
        validate_patch({"typoTolerance": {"disableOnWords": None}, "searchableAttributes": None}),
    )
    assert reset["typoTolerance"]["disableOnWords"] == []
    assert reset["typoTolerance"]["minWordSizeForTypos"]["oneTypo"] == 4
    assert reset["searchableAttributes"] == ["*"]
    assert apply_patch(reset, reset_all()) == DEFAULTS


def test_sort_facet_values_by_keeps_the_wildcard() -> None:
    updated = apply_patch(
        defaults(), validate_patch({"faceting": {"sortFacetValuesBy": {"genre": "count"}}})
    )
    assert updated["faceting"]["sortFacetValuesBy"] == {"*": "alpha", "genre": "count"}


def test_subroute_values_have_no_location_and_null_resets() -> None:
    with pytest.raises(MeiliError) as caught:
        validate_value("searchableAttributes", "title", "")
    assert caught.value.message.startswith("Invalid value type: expected an array")
    assert validate_value("distinctAttribute", None, "") is None


def test_min_word_size_ordering_is_checked_when_applied() -> None:
    settings = apply_patch(
        defaults(),
        validate_patch({"typoTolerance": {"minWordSizeForTypos": {"oneTypo": 6, "twoTypos": 5}}}),
    )
    with pytest.raises(MeiliError) as caught:
        check_when_applied(settings)
    assert caught.value.code == "invalid_settings_typo_tolerance"
    assert "found `oneTypo: 6` and twoTypos: 5`" in caught.value.message
