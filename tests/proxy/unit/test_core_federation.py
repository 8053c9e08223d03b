from typing import Any

from miroir_proxy.core.facets_merge import merge_facet_hits
from miroir_proxy.core.federation import (
    FederatedQuery,
    Federation,
    merge_facets_across_indexes,
    merge_facets_by_index,
    merge_federated,
)


def answer(*scores: float, total: int | None = None, prefix: str = "") -> dict[str, Any]:
    hits = [{"id": f"{prefix}{i}", "_rankingScore": s} for i, s in enumerate(scores)]
    return {
        "hits": hits,
        "estimatedTotalHits": len(scores) if total is None else total,
        "processingTimeMs": 2,
    }


def test_hits_are_ordered_by_weighted_score_and_tagged() -> None:
    answers = [answer(0.9, 0.5, prefix="m"), answer(0.8, 0.6, prefix="s")]
    queries = [
        FederatedQuery("movies"),
        FederatedQuery("series", weight=1.2, show_ranking_score=True),
    ]
    merged = merge_federated(answers, queries, Federation(limit=3))
    assert [h["id"] for h in merged["hits"]] == ["s0", "m0", "s1"]
    first = merged["hits"][0]
    assert first["_federation"] == {
        "indexUid": "series",
        "queriesPosition": 1,
        "weightedRankingScore": 0.8 * 1.2,
    }
    assert first["_rankingScore"] == 0.8
    assert "_rankingScore" not in merged["hits"][1]
    assert (merged["limit"], merged["offset"], merged["estimatedTotalHits"]) == (3, 0, 4)
    assert answers[0]["hits"][0] == {"id": "m0", "_rankingScore": 0.9}


def test_ties_go_to_the_earlier_query_and_offsets_apply_after_merging() -> None:
    answers = [answer(0.5, 0.4, prefix="a"), answer(0.5, 0.45, prefix="b")]
    queries = [FederatedQuery("x"), FederatedQuery("x")]
    merged = merge_federated(answers, queries, Federation(offset=1, limit=2))
    assert [h["id"] for h in merged["hits"]] == ["b0", "b1"]
    paged = merge_federated(answers, queries, Federation(page=2, hits_per_page=3))
    assert [h["id"] for h in paged["hits"]] == ["a1"]
    assert (paged["totalHits"], paged["totalPages"], paged["page"], paged["hitsPerPage"]) == (
        4,
        2,
        2,
        3,
    )
    assert merge_federated(answers, queries, Federation(page=0))["hits"] == []


def test_facets_by_index_and_merged_facets() -> None:
    answers = [
        {
            "hits": [],
            "facetDistribution": {"genre": {"b": 1, "a": 2}},
            "facetStats": {"y": {"min": 1, "max": 3}},
        },
        {"hits": [], "facetDistribution": {"genre": {"b": 9}}},
        {
            "hits": [],
            "facetDistribution": {"genre": {"c": 5, "A": 1}},
            "facetStats": {"y": {"min": 0, "max": 2}},
        },
    ]
    queries = [FederatedQuery("m"), FederatedQuery("m"), FederatedQuery("s")]
    by_index = merge_facets_by_index(answers, queries, {"s": {"*": "count"}}, {"m": 1})
    assert by_index == {
        "m": {"distribution": {"genre": {"a": 2}}, "stats": {"y": {"min": 1, "max": 3}}},
        "s": {"distribution": {"genre": {"c": 5, "A": 1}}, "stats": {"y": {"min": 0, "max": 2}}},
    }
    merged = merge_facets_across_indexes(by_index, {"*": "alpha"}, 10)
    assert merged == {
        "facetDistribution": {"genre": {"a": 3, "c": 5}},
        "facetStats": {"y": {"min": 0, "max": 3}},
    }


def test_facet_search_hits_sum_per_value() -> None:
    nodes = [
        [{"value": "Action", "count": 3}, {"value": "Adventure", "count": 1}],
        [{"value": "action", "count": 2}, {"value": "Animation", "count": 4}],
    ]
    assert merge_facet_hits(nodes, "count", 2) == [
        {"value": "Action", "count": 5},
        {"value": "Animation", "count": 4},
    ]
    assert [h["value"] for h in merge_facet_hits(nodes, "alpha", 10)] == [
        "Action",
        "Adventure",
        "Animation",
    ]


def test_a_document_two_queries_of_one_index_match_is_returned_once() -> None:
    shared = {"id": 7, "title": "amber", "_formatted": {"id": "7", "title": "amber"}}
    answers = [
        {"hits": [{**shared, "_rankingScore": 0.9}, {"id": 1, "_rankingScore": 0.5}]},
        {"hits": [{**shared, "_rankingScore": 0.8}, {"id": 2, "_rankingScore": 0.7}]},
        {"hits": [{"id": 7, "_rankingScore": 0.6}]},
    ]
    queries = [
        FederatedQuery("books", primary_key="id", hide_primary_key=True),
        FederatedQuery("books", primary_key="id", hide_primary_key=True),
        FederatedQuery("films", primary_key="id"),
    ]
    merged = merge_federated(answers, queries, Federation(offset=1, limit=10), total=5)
    positions = [h["_federation"]["queriesPosition"] for h in merged["hits"]]
    assert positions == [1, 2, 0]
    assert merged["hits"][0] == {
        "_federation": {"indexUid": "books", "queriesPosition": 1, "weightedRankingScore": 0.7}
    }
    assert merged["hits"][1]["id"] == 7
    assert merged["estimatedTotalHits"] == 5
    first = merge_federated(answers, queries, Federation(limit=1))["hits"][0]
    assert (first["title"], first["_formatted"]) == ("amber", {"title": "amber"})
