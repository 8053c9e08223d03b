"""Ranking rules, scores and score details of the devnode engine (Index.query)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from miroir_devnode.engine.index import Index
from miroir_devnode.engine.ranking import SortRule, cost_from_distance
from miroir_devnode.engine.scoring import Detail, global_score
from miroir_devnode.settings import defaults

DEFAULT_RULES: list[str] = defaults()["rankingRules"]


def settings(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(defaults())
    base.update(overrides)
    return base


def make(docs: list[dict[str, Any]], **overrides: Any) -> Index:
    index = Index("test", "id", settings(**overrides))
    index.upsert((str(d["id"]), d) for d in docs)
    return index


def internal(index: Index, external: str) -> int:
    found = index.internal_id(external)
    assert found is not None
    return found


def order(index: Index, q: str | None, **kwargs: Any) -> list[str]:
    return [index.external_id(h.internal_id) for h in index.query(q, **kwargs).ranked]


def details(index: Index, q: str | None, doc: str, **kwargs: Any) -> dict[str, Any]:
    for hit in index.query(q, details=True, **kwargs).ranked:
        if index.external_id(hit.internal_id) == doc:
            assert hit.details is not None
            return hit.details
    raise AssertionError(f"{doc} not in hits")


def test_global_score_is_mixed_radix_and_ignores_sort() -> None:
    words = Detail("words", 1, 2, (1, 2))
    typo = Detail("typo", 2, 2, (0, 1))
    sort = Detail("sort", 0, 0, ("price:asc", 3))
    # rank = (1-1)*2 + 2 = 2 out of 4
    assert global_score([words, typo]) == 0.5
    assert global_score([words, sort, typo]) == 0.5
    assert global_score([sort]) == 1.0
    assert [cost_from_distance(d) for d in (0, 1, 3, 6, 10, 16, 20, 50, 100, 500, 2000)] == [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
    ]  # fmt: skip


def test_words_rule_and_score_for_one_of_two_words() -> None:
    index = make([{"id": 1, "t": "red car"}, {"id": 2, "t": "red bike"}, {"id": 3, "t": "car"}])
    assert order(index, "red car") == ["1", "2"]  # `last` drops "car", never "red"
    shown = details(index, "red car", "2")
    assert shown["words"] == {"order": 0, "matchingWords": 1, "maxMatchingWords": 2, "score": 0.5}
    hits = index.query("red car").ranked
    assert hits[0].score > 0.5 >= hits[1].score
    assert order(index, "red car", matching_strategy="all") == ["1"]
    index.upsert([("4", {"id": 4, "t": "red boat"})])
    # `frequency` drops the most frequent word first: "red" (3 docs) before "car" (2 docs)
    assert order(index, "red car", matching_strategy="frequency") == ["1", "3"]
    assert order(index, "red car") == ["1", "2", "4"]


def test_typo_rule_puts_exact_words_first() -> None:
    index = make([{"id": 1, "t": "hallo"}, {"id": 2, "t": "hello"}])
    assert order(index, "hello ") == ["2", "1"]
    assert details(index, "hello ", "1")["typo"] == {
        "order": 1,
        "typoCount": 1,
        "maxTypoCount": 1,
        "score": 0.5,
    }
    off = make([{"id": 1, "t": "hallo"}], typoTolerance={"enabled": False})
    assert order(off, "hello ") == []


def test_proximity_rule() -> None:
    index = make(
        [
            {"id": 1, "t": "quick brown lazy fox"},
            {"id": 2, "t": "quick fox"},
            {"id": 3, "t": "fox quick"},
            {"id": 4, "t": "quick", "u": "fox"},
        ]
    )
    assert order(index, "quick fox ") == ["2", "3", "1", "4"]
    assert details(index, "quick fox ", "1")["proximity"]["score"] == 6 / 8
    assert details(index, "quick fox ", "4")["proximity"]["score"] == 1 / 8


def test_attribute_rank_follows_searchable_attributes() -> None:
    docs = [{"id": 1, "body": "dune", "title": "other"}, {"id": 2, "body": "x", "title": "dune"}]
    assert order(make(docs), "dune ") == ["1", "2"]  # "*": every field has weight 0
    ranked = make(docs, searchableAttributes=["title", "body"])
    assert order(ranked, "dune ") == ["2", "1"]
    assert details(ranked, "dune ", "1")["attributeRank"] == {"order": 3, "score": 0.5}


def test_word_position_and_legacy_attribute_details() -> None:
    docs = [{"id": 1, "t": "a b c d e f target"}, {"id": 2, "t": "target first"}]
    index = make(docs)
    assert order(index, "target ") == ["2", "1"]
    assert details(index, "target ", "1")["wordPosition"]["score"] == (10 - 3 + 1) / 11
    legacy = make(docs, rankingRules=["words", "typo", "proximity", "attribute", "exactness"])
    attribute = details(legacy, "target ", "1")["attribute"]
    assert attribute["order"] == 3 and attribute["attributeRankingOrderScore"] == 1.0
    assert attribute["queryWordDistanceScore"] == 8 / 11
    assert "wordPosition" not in details(legacy, "target ", "1")


def test_exactness_rule() -> None:
    index = make(
        [
            {"id": 1, "t": "galaxy quest episode"},
            {"id": 2, "t": "Galaxy Quest"},
            {"id": 3, "t": "the galaxy quest"},
            {"id": 4, "t": "galaxy quests"},
        ],
        rankingRules=["exactness"],
    )
    assert order(index, "galaxy quest ") == ["2", "1", "3", "4"]
    assert details(index, "galaxy quest ", "2")["exactness"] == {
        "order": 1,
        "matchType": "exactMatch",
        "score": 1.0,
    }
    assert details(index, "galaxy quest ", "1")["exactness"]["matchType"] == "matchesStart"
    assert details(index, "galaxy quest ", "3")["exactness"] == {
        "order": 1,
        "matchType": "noExactMatch",
        "matchingWords": 2,
        "maxMatchingWords": 2,
        "score": 1 / 3,
    }
    assert details(index, "galaxy quest ", "4")["exactness"]["matchingWords"] == 1


def test_sort_is_applied_at_its_rule_position() -> None:
    docs = [
        {"id": 1, "t": "phone", "price": 30},
        {"id": 2, "t": "phone case", "price": 10},
        {"id": 3, "t": "phone", "price": 20},
        {"id": 4, "t": "other phone", "price": 5},
        {"id": 5, "t": "phone"},
    ]
    index = make(docs, sortableAttributes=["price"])
    by_price = [SortRule("price", True)]
    # words/typo/proximity/attributeRank tie; sort decides before wordPosition does
    assert order(index, "phone ", sort=by_price) == ["4", "2", "3", "1", "5"]
    assert order(index, "phone ", sort=[SortRule("price", False)]) == ["1", "3", "2", "4", "5"]
    shown = details(index, "phone ", "2", sort=by_price)
    assert shown["price:asc"] == {"order": 4, "value": 10.0}
    first = make(docs, sortableAttributes=["price"], rankingRules=["sort", *DEFAULT_RULES[:4]])
    assert order(first, "phone ", sort=by_price)[:2] == ["4", "2"]
    assert details(index, "phone ", "5", sort=by_price)["price:asc"]["value"] is None


def test_custom_ranking_rule_and_placeholder() -> None:
    docs = [{"id": i, "t": "same", "year": y} for i, y in ((1, 1999), (2, 2010), (3, 2001))]
    index = make(docs, rankingRules=[*DEFAULT_RULES, "year:desc"])
    assert order(index, "same ") == ["2", "3", "1"]
    assert order(index, None) == ["2", "3", "1"]
    plain = make(docs, sortableAttributes=["year"])
    assert order(plain, None) == ["1", "2", "3"]
    assert order(plain, "", sort=[SortRule("year", True)]) == ["1", "3", "2"]
    hits = plain.query(None, details=True).ranked
    assert {h.score for h in hits} == {1.0}
    assert hits[0].details == {}


def test_numbers_sort_before_strings_and_missing_last() -> None:
    docs: list[dict[str, Any]] = [
        {"id": 1, "v": "b"},
        {"id": 2, "v": 3},
        {"id": 3},
        {"id": 4, "v": "A"},
        {"id": 5, "v": [9, 1]},
    ]
    index = make(docs, sortableAttributes=["v"])
    assert order(index, None, sort=[SortRule("v", True)]) == ["5", "2", "4", "1", "3"]
    assert order(index, None, sort=[SortRule("v", False)]) == ["5", "2", "1", "4", "3"]


def test_distinct_keeps_best_per_value() -> None:
    docs = [
        {"id": 1, "t": "shoe red", "sku": "a"},
        {"id": 2, "t": "shoe", "sku": "a"},
        {"id": 3, "t": "shoe", "sku": "b"},
        {"id": 4, "t": "shoe"},
        {"id": 5, "t": "shoe"},
    ]
    index = make(docs, filterableAttributes=["sku"])
    result = index.query("shoe ", distinct="sku")
    assert [index.external_id(h.internal_id) for h in result.ranked] == ["2", "3", "4", "5"]
    assert result.total == 4
    assert result.candidates == {index.internal_id(i) for i in ("2", "3", "4", "5")}
    setting = make(docs, distinctAttribute="sku")
    assert order(setting, "shoe red", distinct="sku") == ["1", "3", "4", "5"]


def test_threshold_drops_low_scores_from_hits_and_totals() -> None:
    index = make([{"id": 1, "t": "alpha beta"}, {"id": 2, "t": "alpha"}])
    result = index.query("alpha beta", threshold=0.6)
    assert [index.external_id(h.internal_id) for h in result.ranked] == ["1"]
    assert result.total == 1 and len(result.candidates) == 1
    assert index.query("alpha beta", threshold=0.0).total == 2


def test_search_on_restricts_fields() -> None:
    index = make([{"id": 1, "title": "moon", "body": "sun"}, {"id": 2, "title": "sun"}])
    assert order(index, "sun ", search_on=["title"]) == ["2"]
    assert sorted(order(index, "sun ")) == ["1", "2"]


def test_synonyms_stop_words_and_phrases() -> None:
    docs = [
        {"id": 1, "t": "the great film"},
        {"id": 2, "t": "great movie"},
        {"id": 3, "t": "film great"},
    ]
    index = make(docs, synonyms={"movie": ["film"]}, stopWords=["the"])
    assert sorted(order(index, "movie ")) == ["1", "2", "3"]
    assert details(index, "movie ", "1")["typo"]["typoCount"] == 0
    assert sorted(order(index, "the great")) == ["1", "2", "3"]
    assert order(index, '"great film"') == ["1"]


def test_negative_keywords_exclude_documents() -> None:
    docs = [{"id": 1, "t": "matrix"}, {"id": 2, "t": "matrix reloaded"}, {"id": 3, "t": "other"}]
    index = make(docs)
    assert order(index, "matrix -reloaded") == ["1"]
    assert order(index, 'matrix -"matrix reloaded"') == ["1"]
    assert order(index, "-reloaded") == ["1", "3"]


def test_universe_restricts_candidates() -> None:
    index = make([{"id": 1, "t": "x"}, {"id": 2, "t": "x"}, {"id": 3, "t": "x"}])
    keep = {internal(index, "1"), internal(index, "3")}
    assert order(index, "x", universe=keep) == ["1", "3"]
    assert order(index, None, universe=keep) == ["1", "3"]
    assert index.query(None, universe=keep, want=1).total == 2


def test_scores_never_increase_down_the_ranking() -> None:
    rng = random.Random(7)
    words = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "peach", "pear"]
    docs = [
        {"id": i, "a": " ".join(rng.choices(words, k=6)), "b": " ".join(rng.choices(words, k=3))}
        for i in range(300)
    ]
    index = make(docs, searchableAttributes=["a", "b"])
    for q in ["apple", "apple pear", "mango lemon peach", "banan", "cherri grape"]:
        scores = [h.score for h in index.query(q, want=300).ranked]
        assert scores == sorted(scores, reverse=True), q


QUERIES = ["quick brown fox", "brown", "lazy dgo", "the quick", "fox jumps over", "quik"]


def _filler(rng: random.Random, i: int) -> dict[str, Any]:
    vocabulary = ["quick", "brown", "fox", "lazy", "dog", "jumps", "over", "the", "quack", "dogs"]
    text = " ".join(rng.choices(vocabulary + [f"w{rng.randrange(500)}" for _ in range(5)], k=12))
    return {"id": f"f{i}", "title": text[:30], "body": text}


@pytest.mark.parametrize("searchable", [["*"], ["title", "body"]])
def test_score_depends_only_on_document_and_query(searchable: list[str]) -> None:
    probes = [
        {"id": "p1", "title": "The quick brown fox", "body": "jumps over the lazy dog"},
        {"id": "p2", "title": "Lazy dogs", "body": "a quick fox. brown"},
        {"id": "p3", "title": "nothing", "body": "quack brwn fix"},
    ]
    rng = random.Random(1)
    small = make(probes + [_filler(rng, i) for i in range(7)], searchableAttributes=searchable)
    large = make(probes + [_filler(rng, i) for i in range(9_997)], searchableAttributes=searchable)
    for q in QUERIES:
        for probe in ("p1", "p2", "p3"):
            universe = {internal(small, probe)}
            in_small = small.query(q, details=True, universe=universe).ranked
            universe = {internal(large, probe)}
            in_large = large.query(q, details=True, universe=universe).ranked
            assert [(h.score, h.details) for h in in_small] == [
                (h.score, h.details) for h in in_large
            ], (q, probe)
