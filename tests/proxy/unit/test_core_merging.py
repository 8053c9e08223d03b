"""Merging equals what one node holding every document would answer."""

import functools
import random
from itertools import islice
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miroir_proxy.core import merging
from miroir_proxy.core.merging import MergeRequest, merge_checked, merge_search, node_window

Hit = dict[str, Any]


def node_answer(ranked: list[Hit], params: dict[str, Any], max_total_hits: int) -> dict[str, Any]:
    """A Meilisearch node's pagination over hits it already ranked (MEILI_API.md §4)."""
    total = min(len(ranked), max_total_hits)
    if "page" in params or "hitsPerPage" in params:
        per_page, page = params.get("hitsPerPage", 20), params.get("page", 1)
        offset, limit = ((page - 1) * per_page, per_page) if page > 0 else (0, 0)
    else:
        offset, limit = params.get("offset", 0), params.get("limit", 20)
    offset = min(offset, max_total_hits)
    limit = min(limit, max_total_hits - offset)
    answer: dict[str, Any] = {
        "hits": ranked[offset : offset + limit],
        "query": "q",
        "processingTimeMs": 1,
    }
    if "page" in params or "hitsPerPage" in params:
        answer.update(
            hitsPerPage=per_page,
            page=page,
            totalPages=-(-total // per_page) if per_page else 0,
            totalHits=total,
        )
    else:
        answer.update(
            limit=params.get("limit", 20), offset=params.get("offset", 0), estimatedTotalHits=total
        )
    return answer


def scatter(
    ranked: list[Hit], nodes: int, request: MergeRequest, seed: int
) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    parts: list[list[Hit]] = [[] for _ in range(nodes)]
    for hit in ranked:  # a stable split keeps each node's part in rank order
        parts[rnd.randrange(nodes)].append(hit)
    return [node_answer(part, node_window(request), request.max_total_hits) for part in parts]


def client_params(request: MergeRequest) -> dict[str, Any]:
    if request.page_mode:
        params = {"page": request.page, "hitsPerPage": request.hits_per_page}
        return {k: v for k, v in params.items() if v is not None}
    return {"offset": request.offset, "limit": request.limit}


requests = st.one_of(
    st.builds(
        MergeRequest,
        offset=st.integers(0, 60),
        limit=st.integers(0, 40),
        max_total_hits=st.integers(0, 70),
    ),
    st.builds(
        MergeRequest,
        page=st.one_of(st.none(), st.integers(0, 8)),
        hits_per_page=st.integers(0, 15),
        max_total_hits=st.integers(0, 70),
    ),
)


@settings(max_examples=300)
@given(st.integers(0, 80), st.integers(1, 5), requests, st.integers(0, 2**32))
def test_merged_answer_equals_the_single_node_answer(
    size: int, nodes: int, request: MergeRequest, seed: int
) -> None:
    rnd = random.Random(seed)
    scores = rnd.sample(range(1, 10**6), size)
    ranked = sorted(
        (
            {"id": i, "_rankingScore": s / 10**6, "_miroir_shard": i % 7}
            for i, s in enumerate(scores)
        ),
        key=lambda h: -h["_rankingScore"],
    )
    expected = node_answer(
        [{"id": h["id"]} for h in ranked], client_params(request), request.max_total_hits
    )
    merged = merge_search(scatter(ranked, nodes, request, seed), request)
    assert merged == expected


def test_ties_go_by_shard_then_position_in_the_shard() -> None:
    def hit(i: str, score: float, shard: int) -> Hit:
        return {"id": i, "_rankingScore": score, "_miroir_shard": shard}

    answers = [
        {"hits": [hit("a", 0.5, 3), hit("b", 0.5, 1), hit("e", 0.5, 3)], "estimatedTotalHits": 3},
        {"hits": [hit("c", 0.9, 2), hit("d", 0.5, 2)], "estimatedTotalHits": 2},
    ]
    merged = merge_search(answers, MergeRequest())
    assert [h["id"] for h in merged["hits"]] == ["c", "b", "d", "a", "e"]
    assert merged["estimatedTotalHits"] == 5


# --- tied hits: one order whichever replicas serve a page -------------------------------


def interleave(rnd: random.Random, lists: list[list[Hit]]) -> list[Hit]:
    """A node's insertion order: each shard's documents in order, shards mixed at random."""
    pending = [list(reversed(items)) for items in lists if items]
    out = []
    while pending:
        source = rnd.choice(pending)
        out.append(source.pop())
        if not source:
            pending.remove(source)
    return out


def node_hits(rnd: random.Random, by_shard: dict[int, list[Hit]], shards: list[int]) -> list[Hit]:
    # A node ranks by score, then by its own insertion order.
    inserted = interleave(rnd, [by_shard[s] for s in shards])
    return sorted(inserted, key=lambda h: -h["_rankingScore"])


def read_page(
    by_shard: dict[int, list[Hit]], shard_count: int, request: MergeRequest, rnd: random.Random
) -> dict[str, Any]:
    """One search as `dispatch.reads.search` runs it: shards dealt to 1..4 nodes at random
    (another covering for every page), then unsettled answers read again per shard."""
    nodes = rnd.randint(1, 4)
    dealt: list[list[int]] = [[] for _ in range(nodes)]
    for shard in range(shard_count):
        dealt[rnd.randrange(nodes)].append(shard)
    window = node_window(request)
    answers = [
        node_answer(node_hits(rnd, by_shard, shards), window, request.max_total_hits)
        for shards in dealt
    ]
    merged, unsettled = merge_checked(answers, request, dealt)
    if not unsettled:
        return merged
    for index in unsettled:
        answers[index] = {**answers[index], "hits": []}
        for shard in dealt[index]:
            alone = node_answer(node_hits(rnd, by_shard, [shard]), window, request.max_total_hits)
            answers.append({"hits": alone["hits"]})
    assert merge_checked(answers, request, dealt + [[]] * (len(answers) - nodes))[1] == []
    return merge_search(answers, request)


@settings(max_examples=300)  # one example merges up to ~140 pages
@given(
    st.integers(0, 70),
    st.integers(1, 6),
    st.integers(1, 3),
    st.integers(1, 12),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_pages_of_tied_hits_concatenate_to_one_page_for_any_replica_assignment(
    size: int, shard_count: int, distinct_scores: int, per_page: int, page_mode: bool, seed: int
) -> None:
    rnd = random.Random(seed)
    by_shard: dict[int, list[Hit]] = {s: [] for s in range(shard_count)}
    for i in range(size):  # ids grow with insertion: a shard's own tie order
        shard = rnd.randrange(shard_count)
        score = rnd.randrange(distinct_scores) / distinct_scores + 0.1
        by_shard[shard].append({"id": i, "_rankingScore": score, "_miroir_shard": shard})
    everything = [h for hits in by_shard.values() for h in hits]
    position = {h["id"]: n for hits in by_shard.values() for n, h in enumerate(hits)}
    expected = [
        h["id"]
        for h in sorted(
            everything, key=lambda h: (-h["_rankingScore"], h["_miroir_shard"], position[h["id"]])
        )
    ]
    whole = read_page(by_shard, shard_count, MergeRequest(limit=size), rnd)
    assert [h["id"] for h in whole["hits"]] == expected
    pages: list[int] = []
    for number in range(size // per_page + 1):
        if page_mode:
            request = MergeRequest(page=number + 1, hits_per_page=per_page)
        else:
            request = MergeRequest(offset=number * per_page, limit=per_page)
        pages.extend(h["id"] for h in read_page(by_shard, shard_count, request, rnd)["hits"])
    assert pages == expected


# --- sort: rule-by-rule comparison over _rankingScoreDetails ----------------------------


def milli_compare_sort_values(ascending: bool, left: Any, right: Any) -> int:
    """Port of milli's compare_sort_values: > 0 means `left` ranks better."""

    def cmp(a: Any, b: Any) -> int:
        return int(a > b) - int(a < b)

    if left is None and right is None:
        return 0
    if left is None:
        return -1
    if right is None:
        return 1
    left_num, right_num = isinstance(left, int | float), isinstance(right, int | float)
    if left_num and not right_num:
        return 1
    if right_num and not left_num:
        return -1
    order = cmp(left, right)
    return -order if ascending else order


def reference_order(hits: list[Hit], ascending: bool) -> list[Hit]:
    def better(a: Hit, b: Hit) -> int:
        da, db = a["_rankingScoreDetails"], b["_rankingScoreDetails"]
        if da["words"]["score"] != db["words"]["score"]:
            return -1 if da["words"]["score"] > db["words"]["score"] else 1
        name = "price:asc" if ascending else "price:desc"
        by_value = milli_compare_sort_values(ascending, da[name]["value"], db[name]["value"])
        if by_value:
            return -by_value
        return -1 if da["typo"]["score"] > db["typo"]["score"] else 1

    return sorted(hits, key=functools.cmp_to_key(better))


sort_values = st.one_of(
    st.none(),
    st.integers(-50, 50),
    st.floats(-50, 50, allow_nan=False),
    st.text(alphabet="abcAB é", max_size=4),
)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.sampled_from([0.25, 0.5, 1.0]), sort_values), max_size=40),
    st.booleans(),
    st.integers(1, 4),
    st.integers(0, 2**32),
)
def test_sorted_queries_merge_rule_by_rule(
    rows: list[tuple[float, Any]], ascending: bool, nodes: int, seed: int
) -> None:
    name = "price:asc" if ascending else "price:desc"
    hits = [
        {
            "id": i,
            # the global score ignores sort, so it must not decide the order
            "_rankingScore": random.Random(i).random(),
            "_rankingScoreDetails": {
                "words": {"order": 0, "matchingWords": 1, "maxMatchingWords": 1, "score": words},
                name: {"order": 1, "value": value},
                "typo": {"order": 2, "typoCount": 0, "maxTypoCount": 0, "score": 1 - i / 1000},
            },
        }
        for i, (words, value) in enumerate(rows)
    ]
    ranked = reference_order(hits, ascending)
    request = MergeRequest(limit=50, sorted_by_rules=True, show_ranking_score_details=True)
    merged = merge_search(scatter(ranked, nodes, request, seed), request)
    assert [h["id"] for h in merged["hits"]] == [h["id"] for h in ranked]
    assert all("_rankingScore" not in h and "_rankingScoreDetails" in h for h in merged["hits"])


def test_sort_value_order_matches_meilisearch() -> None:
    values: list[Any] = ["b", None, 10, "a", 2.5, "B", "ab", -1]

    def hit(v: Any, name: str) -> Hit:
        return {"v": v, "_rankingScoreDetails": {name: {"order": 0, "value": v}}}

    for name, expected in [
        ("p:asc", [-1, 2.5, 10, "B", "a", "ab", "b", None]),
        ("p:desc", [10, 2.5, -1, "b", "ab", "a", "B", None]),
    ]:
        answers = [{"hits": [hit(v, name)]} for v in values]
        merged = merge_search(answers, MergeRequest(sorted_by_rules=True))
        assert [h["v"] for h in merged["hits"]] == expected


def test_geo_sort_compares_distances_and_rules_after_sort() -> None:
    name = "_geoPoint(48.8, 2.3):asc"

    def hit(i: int, distance: float | None, exact: float) -> Hit:
        details = {
            name: {"order": 0, "value": None, "distance": distance},
            "exactness": {"order": 1, "matchType": "exactMatch", "score": exact},
        }
        return {"id": i, "_rankingScoreDetails": details}

    answers = [
        {"hits": [hit(1, 5.0, 0.2), hit(2, None, 1.0)]},
        {"hits": [hit(4, 1.0, 0.1), hit(3, 5.0, 0.9)]},
    ]
    merged = merge_search(answers, MergeRequest(sorted_by_rules=True))
    assert [h["id"] for h in merged["hits"]] == [4, 3, 1, 2]


# --- distinct, threshold, stripping ---------------------------------------------------


def test_distinct_keeps_the_best_hit_per_value_across_nodes() -> None:
    def hit(i: int, score: float, brand: Any) -> Hit:
        return {"id": i, "brand": brand, "_rankingScore": score}

    answers = [
        {
            "hits": [hit(1, 0.9, "Acme"), hit(2, 0.5, "Zed"), hit(6, 0.3, None)],
            "estimatedTotalHits": 3,
        },
        {
            "hits": [hit(3, 0.8, "acme "), hit(4, 0.7, ["Zed", "Other"]), hit(5, 0.2, "Other")],
            "estimatedTotalHits": 3,
        },
        {"hits": [{"id": 7, "_rankingScore": 0.1}], "estimatedTotalHits": 1},
    ]
    request = MergeRequest(distinct="brand", strip_fields=frozenset({"brand"}))
    merged = merge_search(answers, request)
    assert [h["id"] for h in merged["hits"]] == [1, 4, 6, 7]
    assert all("brand" not in h for h in merged["hits"])
    assert merged["estimatedTotalHits"] == 7 - 3


def test_threshold_and_field_stripping() -> None:
    hits: list[Hit] = [
        {
            "id": 1,
            "_rankingScore": 0.9,
            "_miroir_shard": 4,
            "_formatted": {"id": "1", "_miroir_shard": "4"},
        },
        {"id": 2, "_rankingScore": 0.3, "_miroir_shard": 4},
    ]
    merged = merge_search(
        [{"hits": hits}], MergeRequest(ranking_score_threshold=0.5, show_ranking_score=True)
    )
    assert merged["hits"] == [{"id": 1, "_rankingScore": 0.9, "_formatted": {"id": "1"}}]
    assert hits[0]["_miroir_shard"] == 4  # node answers are not mutated


# --- facets -------------------------------------------------------------------------


def test_facets_sum_reorder_truncate_and_stats() -> None:
    answers = [
        {
            "hits": [],
            "facetDistribution": {"genre": {"Drama": 3, "action": 1, "10": 2}, "year": {}},
            "facetStats": {"price": {"min": 2.0, "max": 9.0}},
        },
        {
            "hits": [],
            "facetDistribution": {"genre": {"drama": 2, "Comedy": 4, "9": 1}},
            "facetStats": {"price": {"min": 1.5, "max": 7.0}},
        },
    ]
    alpha = merge_search(answers, MergeRequest(max_values_per_facet=4))
    assert list(alpha["facetDistribution"]["genre"].items()) == [
        ("9", 1),
        ("10", 2),
        ("action", 1),
        ("Comedy", 4),
    ]
    assert alpha["facetDistribution"]["year"] == {}
    assert alpha["facetStats"] == {"price": {"min": 1.5, "max": 9.0}}
    by_count = merge_search(
        answers,
        MergeRequest(sort_facet_values_by={"*": "alpha", "genre": "count"}, max_values_per_facet=3),
    )
    assert list(by_count["facetDistribution"]["genre"].items()) == [
        ("Drama", 5),
        ("Comedy", 4),
        ("10", 2),
    ]
    assert "facetDistribution" not in merge_search([{"hits": []}], MergeRequest())


# --- speed ----------------------------------------------------------------------------


@pytest.mark.parametrize("sorted_by_rules", [False, True])
def test_merging_three_answers_of_1000_hits_gives_the_best_page(sorted_by_rules: bool) -> None:
    # How fast this is belongs to `make bench` (merge_3x1000_ms), never to a test.
    def rank(h: Hit) -> tuple[float, ...]:
        if not sorted_by_rules:
            return (-h["_rankingScore"],)
        details = h["_rankingScoreDetails"]
        return -details["words"]["score"], details["price:asc"]["value"]

    rnd = random.Random(7)
    answers: list[dict[str, Any]] = []
    for node in range(3):
        hits: list[Hit] = [
            {
                "id": f"{node}-{i}",
                "title": "t",
                "_rankingScore": rnd.random(),
                "_rankingScoreDetails": {
                    "words": {"order": 0, "score": rnd.choice([0.5, 1.0])},
                    "price:asc": {"order": 1, "value": rnd.randrange(1000)},
                },
            }
            for i in range(1000)
        ]
        answers.append({"hits": sorted(hits, key=rank), "estimatedTotalHits": 1000, "query": "q"})
    everything = sorted((h for a in answers for h in a["hits"]), key=rank)
    request = MergeRequest(offset=980, limit=20, sorted_by_rules=sorted_by_rules)
    merged = merge_search(answers, request)
    assert merged["estimatedTotalHits"] == 1000
    # Hits with equal rank keys may come in either order: compare the keys.
    by_id = {h["id"]: h for h in everything}
    assert [rank(by_id[h["id"]]) for h in merged["hits"]] == [rank(h) for h in everything[980:1000]]


def keep_first_per_brand(ranked: list[Hit]) -> list[Hit]:
    seen: set[str] = set()
    kept = []
    for hit in ranked:
        if hit["brand"] not in seen:
            seen.add(hit["brand"])
            kept.append(hit)
    return kept


@settings(max_examples=150)
@given(
    st.integers(0, 60),
    st.integers(1, 4),
    st.integers(0, 30),
    st.integers(0, 20),
    st.integers(0, 2**32),
)
def test_distinct_merge_equals_the_single_node_page(
    size: int, nodes: int, offset: int, limit: int, seed: int
) -> None:
    rnd = random.Random(seed)
    scores = rnd.sample(range(1, 10**6), size)
    ranked: list[Hit] = sorted(
        (
            {"id": i, "brand": f"b{rnd.randrange(12)}", "_rankingScore": s / 10**6}
            for i, s in enumerate(scores)
        ),
        key=lambda h: -h["_rankingScore"],
    )
    request = MergeRequest(offset=offset, limit=limit, distinct="brand")
    parts: list[list[Hit]] = [[] for _ in range(nodes)]
    for hit in ranked:
        parts[rnd.randrange(nodes)].append(hit)
    window = node_window(request)
    answers = [{"hits": keep_first_per_brand(part)[: window["limit"]]} for part in parts]
    expected = [h["id"] for h in keep_first_per_brand(ranked)[offset : offset + limit]]
    assert [h["id"] for h in merge_search(answers, request)["hits"]] == expected


def test_vector_and_hidden_rules_and_semantic_hit_count() -> None:
    def hit(i: int, similarity: float) -> Hit:
        details = {
            "<hidden-rule-0>": {"order": 0, "value": "<hidden>"},
            "vectorSort": {"order": 1, "similarity": similarity},
        }
        return {"id": i, "_rankingScoreDetails": details}

    answers = [
        {"hits": [hit(1, 0.9), hit(2, 0.1)], "semanticHitCount": 2},
        {"hits": [hit(3, 0.5)], "semanticHitCount": 1},
    ]
    merged = merge_search(answers, MergeRequest(limit=2, sorted_by_rules=True))
    assert [h["id"] for h in merged["hits"]] == [1, 3]
    assert merged["semanticHitCount"] == 2


# --- the sort-at-once fast path gives the lazy merge's order ----------------------------


@settings(max_examples=300)
@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from([0.2, 0.5, 0.9, 1.0]), st.integers(0, 5)), max_size=25),
        min_size=1,
        max_size=5,
    ),
    st.integers(1, 40),
)
def test_sorting_at_once_orders_hits_as_the_lazy_merge(
    raw: list[list[tuple[float, int]]], window: int
) -> None:
    answers = [
        {
            "hits": [
                {"id": f"{n}-{i}", "_rankingScore": score, "_miroir_shard": shard}
                for i, (score, shard) in enumerate(sorted(hits, key=lambda h: -h[0]))
            ]
        }
        for n, hits in enumerate(raw)
    ]
    fast = merging._sorted_by_score(answers, window, filtering=False)
    lazy = [entry[4]["id"] for entry in islice(merging.ranked_entries(answers, False), window)]
    if fast is not None:  # None: a case only the lazy merge orders (shared tied shards)
        assert [h["id"] for h in fast[:window]] == lazy
