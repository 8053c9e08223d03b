"""Settings through the official SDK: defaults, a round trip and a reset for every setting,
whole-object PATCH/DELETE, `null` resets, and index creation by a settings update."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import meilisearch
import pytest
from meilisearch.errors import MeilisearchApiError
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

Wait = Callable[[TaskInfo | int], Task]
MakeIndex = Callable[..., Index]

DEFAULTS: dict[str, Any] = {
    "displayedAttributes": ["*"],
    "searchableAttributes": ["*"],
    "filterableAttributes": [],
    "sortableAttributes": [],
    "distinctAttribute": None,
    "rankingRules": [
        "words",
        "typo",
        "proximity",
        "attributeRank",
        "sort",
        "wordPosition",
        "exactness",
    ],
    "stopWords": [],
    "separatorTokens": [],
    "nonSeparatorTokens": [],
    "dictionary": [],
    "synonyms": {},
    "typoTolerance": {
        "enabled": True,
        "minWordSizeForTypos": {"oneTypo": 5, "twoTypos": 9},
        "disableOnWords": [],
        "disableOnAttributes": [],
        "disableOnNumbers": False,
    },
    "faceting": {"maxValuesPerFacet": 100, "sortFacetValuesBy": {"*": "alpha"}},
    "pagination": {"maxTotalHits": 1000},
    "proximityPrecision": "byWord",
    "searchCutoffMs": None,
    "localizedAttributes": None,
    "facetSearch": True,
    "prefixSearch": "indexingTime",
    "embedders": {},
}

# (setting, SDK method suffix, a non-default value); values are given in the order a node
# returns them (sets come back sorted).
ROUND_TRIPS: list[tuple[str, str, Any]] = [
    ("displayedAttributes", "displayed_attributes", ["title", "year"]),
    ("searchableAttributes", "searchable_attributes", ["title", "overview"]),
    ("filterableAttributes", "filterable_attributes", ["genre", "year"]),
    ("sortableAttributes", "sortable_attributes", ["title", "year"]),
    ("distinctAttribute", "distinct_attribute", "sku"),
    (
        "rankingRules",
        "ranking_rules",
        ["words", "typo", "sort", "proximity", "attributeRank", "exactness", "year:desc"],
    ),
    ("stopWords", "stop_words", ["a", "the"]),
    ("separatorTokens", "separator_tokens", ["&", "|"]),
    ("nonSeparatorTokens", "non_separator_tokens", ["#", "@"]),
    ("dictionary", "dictionary", ["J. R. R.", "W. E. B."]),
    ("synonyms", "synonyms", {"logan": ["wolverine"], "wolverine": ["logan", "xmen"]}),
    (
        "typoTolerance",
        "typo_tolerance",
        {
            "enabled": False,
            "minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 8},
            "disableOnWords": ["dune"],
            "disableOnAttributes": ["isbn"],
            "disableOnNumbers": True,
        },
    ),
    (
        "faceting",
        "faceting_settings",
        {"maxValuesPerFacet": 5, "sortFacetValuesBy": {"*": "count"}},
    ),
    ("pagination", "pagination_settings", {"maxTotalHits": 50}),
    ("proximityPrecision", "proximity_precision", "byAttribute"),
    ("searchCutoffMs", "search_cutoff_ms", 150),
    (
        "localizedAttributes",
        "localized_attributes",
        [{"attributePatterns": ["*_ja"], "locales": ["jpn"]}],
    ),
    ("facetSearch", "facet_search_settings", False),
    ("prefixSearch", "prefix_search", "disabled"),
]


def test_defaults_of_a_new_index(make_index: MakeIndex) -> None:
    settings = make_index("books").get_settings()
    assert {key: settings.get(key) for key in DEFAULTS} == DEFAULTS


@pytest.mark.parametrize(("key", "method", "value"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_each_setting_round_trips_and_resets(
    make_index: MakeIndex, wait_task: Wait, key: str, method: str, value: Any
) -> None:
    index = make_index("books")
    done = wait_task(getattr(index, f"update_{method}")(value))
    assert done.type == "settingsUpdate"
    assert done.details == {key: value}
    assert index.get_settings()[key] == value

    wait_task(getattr(index, f"reset_{method}")())
    assert index.get_settings()[key] == DEFAULTS[key]


def test_typo_tolerance_is_patched_not_replaced(make_index: MakeIndex, wait_task: Wait) -> None:
    index = make_index("books")
    wait_task(index.update_typo_tolerance({"minWordSizeForTypos": {"oneTypo": 3}}))
    assert index.get_settings()["typoTolerance"] == {
        **DEFAULTS["typoTolerance"],
        "minWordSizeForTypos": {"oneTypo": 3, "twoTypos": 9},
    }


def test_patch_all_then_null_then_reset_all(make_index: MakeIndex, wait_task: Wait) -> None:
    index = make_index("books")
    changed = {key: value for key, _, value in ROUND_TRIPS}
    done = wait_task(index.update_settings(changed))
    assert done.details == changed
    settings = index.get_settings()
    assert {key: settings[key] for key in changed} == changed

    wait_task(index.update_settings({"stopWords": None, "pagination": None}))
    settings = index.get_settings()
    assert settings["stopWords"] == []
    assert settings["pagination"] == {"maxTotalHits": 1000}
    assert settings["synonyms"] == changed["synonyms"]

    wait_task(index.reset_settings())
    settings = index.get_settings()
    assert {key: settings.get(key) for key in DEFAULTS} == DEFAULTS


def test_a_settings_update_creates_the_index(client: meilisearch.Client, wait_task: Wait) -> None:
    with pytest.raises(MeilisearchApiError) as err:
        client.index("ghost").get_filterable_attributes()
    assert err.value.code == "index_not_found"
    wait_task(client.index("ghost").update_filterable_attributes(["genre"]))
    assert client.get_index("ghost").uid == "ghost"
    assert client.index("ghost").get_filterable_attributes() == ["genre"]


def test_invalid_ranking_rule_is_rejected_synchronously(make_index: MakeIndex) -> None:
    index = make_index("books")
    with pytest.raises(MeilisearchApiError) as err:
        index.update_ranking_rules(["words", "popularity"])
    assert err.value.code == "invalid_settings_ranking_rules"
    assert err.value.status_code == 400


def test_granular_filterable_attributes(make_index: MakeIndex, wait_task: Wait) -> None:
    rules = [
        {
            "attributePatterns": ["year"],
            "features": {"facetSearch": False, "filter": {"equality": True, "comparison": False}},
        },
        "genre",
    ]
    index = make_index(
        "books",
        [{"id": 1, "genre": "scifi", "year": 1965}, {"id": 2, "genre": "poetry", "year": 1990}],
    )
    wait_task(index.update_filterable_attributes(rules))  # type: ignore[arg-type]
    assert index.get_settings()["filterableAttributes"] == rules
    assert [hit["id"] for hit in index.search("", {"filter": "year = 1965"})["hits"]] == [1]
    with pytest.raises(MeilisearchApiError) as err:
        index.search("", {"filter": "year > 1900"})
    assert err.value.code == "invalid_search_filter"
