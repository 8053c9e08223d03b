"""Settings task details read as a node's: set-valued settings sorted and deduplicated."""

from __future__ import annotations

from miroir_proxy.api.routes.settings import task_details


def test_set_valued_settings_are_sorted_without_repeats_and_lists_keep_their_order() -> None:
    update = {
        "stopWords": ["the", "a", "the"],
        "sortableAttributes": ["rank", "color"],
        "dictionary": ["w.x", "c++"],
        "synonyms": {"fjord": ["delta"], "amber": ["birch"]},
        "rankingRules": ["words", "typo"],
        "searchableAttributes": ["title", "body"],
        "distinctAttribute": None,
    }
    details = task_details(update)
    assert details["stopWords"] == ["a", "the"]
    assert details["sortableAttributes"] == ["color", "rank"]
    assert details["dictionary"] == ["c++", "w.x"]
    assert list(details["synonyms"]) == ["amber", "fjord"]
    assert details["rankingRules"] == ["words", "typo"]
    assert details["searchableAttributes"] == ["title", "body"]
    assert details["distinctAttribute"] is None
    assert update["stopWords"] == ["the", "a", "the"], "the client's update is left alone"


def test_a_reset_or_an_odd_value_is_reported_as_submitted() -> None:
    assert task_details({"stopWords": None}) == {"stopWords": None}
    assert task_details({"sortableAttributes": ["a", 3]}) == {"sortableAttributes": ["a", 3]}
