"""Federated multi-search: one ranked list over the merged answers of several queries.

Each query's answer is first merged across nodes (``merging.merge_search`` with offset 0
and ``limit = offset + limit`` of the federation, ranking scores shown). Hits are then
ordered by ``weightedRankingScore = _rankingScore * weight``, highest first, ties by
query position then rank within the query, and every hit gets
``_federation: {indexUid, queriesPosition, weightedRankingScore}``.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import orjson

from miroir_proxy.core.facets_merge import merge_facet_distributions, merge_facet_stats
from miroir_proxy.core.ranking import Hit


@dataclasses.dataclass(frozen=True, slots=True)
class FederatedQuery:
    index_uid: str
    weight: float = 1.0
    show_ranking_score: bool = False
    show_ranking_score_details: bool = False
    # The index's primary key, when hits carry it: a document several queries of one index
    # match is returned once, for its first query in the merged order.
    primary_key: str | None = None
    # The primary key was added to the hits for that and is removed again.
    hide_primary_key: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Federation:
    offset: int = 0
    limit: int = 20
    page: int | None = None
    hits_per_page: int | None = None

    @property
    def page_mode(self) -> bool:
        return self.page is not None or self.hits_per_page is not None

    def window(self) -> tuple[int, int]:
        if not self.page_mode:
            return self.offset, self.limit
        per_page = 20 if self.hits_per_page is None else self.hits_per_page
        page = 1 if self.page is None else self.page
        return ((page - 1) * per_page, per_page) if page > 0 else (0, 0)


def _weighted(
    hits: Sequence[Hit], position: int, weight: float
) -> Iterator[tuple[float, int, int, float, Hit]]:
    for rank, hit in enumerate(hits):
        score = float(hit.get("_rankingScore", 0.0)) * weight
        yield -score, position, rank, score, hit


def _federated_hit(hit: Hit, query: FederatedQuery, position: int, score: float) -> Hit:
    out = dict(hit)
    if query.hide_primary_key and query.primary_key is not None:
        out.pop(query.primary_key, None)
        formatted = out.get("_formatted")
        if isinstance(formatted, dict):
            out["_formatted"] = {k: v for k, v in formatted.items() if k != query.primary_key}
    if not query.show_ranking_score:
        out.pop("_rankingScore", None)
    if not query.show_ranking_score_details:
        out.pop("_rankingScoreDetails", None)
    out["_federation"] = {
        "indexUid": query.index_uid,
        "queriesPosition": position,
        "weightedRankingScore": score,
    }
    return out


def _first_of_each(
    merged: Iterator[tuple[float, int, int, float, Hit]], queries: Sequence[FederatedQuery]
) -> Iterator[tuple[float, int, int, float, Hit]]:
    """The merged hits without a document's later occurrences in the same index."""
    seen: set[tuple[str, str]] = set()
    for entry in merged:
        query = queries[entry[1]]
        key = query.primary_key
        if key is not None and key in entry[4]:
            identity = (query.index_uid, orjson.dumps(entry[4][key]).decode())
            if identity in seen:
                continue
            seen.add(identity)
        yield entry


def answer_total(answer: Mapping[str, Any]) -> int:
    """The number of hits one answer counts, in either pagination mode."""
    return int(answer.get("totalHits", answer.get("estimatedTotalHits")) or 0)


def merge_federated(
    answers: Sequence[Mapping[str, Any]],
    queries: Sequence[FederatedQuery],
    federation: Federation,
    total: int | None = None,
) -> dict[str, Any]:
    """The federated response body (without `requestUid` and facets); `total` is the number
    of documents the queries match together (else the sum of the answers' totals)."""
    if len(answers) != len(queries):
        raise ValueError("one answer per query is needed")
    offset, limit = federation.window()
    streams = [
        _weighted(answer.get("hits") or (), position, query.weight)
        for position, (answer, query) in enumerate(zip(answers, queries, strict=True))
    ]
    page = islice(_first_of_each(heapq.merge(*streams), queries), offset, offset + limit)
    hits = [
        _federated_hit(hit, queries[position], position, score)
        for _, position, _, score, hit in page
    ]
    result: dict[str, Any] = {
        "hits": hits,
        "processingTimeMs": max((int(a.get("processingTimeMs") or 0) for a in answers), default=0),
    }
    if total is None:
        total = sum(answer_total(a) for a in answers)
    if federation.page_mode:
        per_page = 20 if federation.hits_per_page is None else federation.hits_per_page
        result["hitsPerPage"] = per_page
        result["page"] = 1 if federation.page is None else federation.page
        result["totalPages"] = -(-total // per_page) if per_page else 0
        result["totalHits"] = total
    else:
        result["limit"] = federation.limit
        result["offset"] = federation.offset
        result["estimatedTotalHits"] = total
    return result


def merge_facets_by_index(
    answers: Sequence[Mapping[str, Any]],
    queries: Sequence[FederatedQuery],
    sort_facet_values_by: Mapping[str, Mapping[str, str]],
    max_values_per_facet: Mapping[str, int],
) -> dict[str, dict[str, Any]]:
    """``facetsByIndex``: per index, the facets of its first query that computed them.

    Summing two queries of one index would count their common documents twice.
    """
    first: dict[str, Mapping[str, Any]] = {}
    for answer, query in zip(answers, queries, strict=True):
        if "facetDistribution" in answer:
            first.setdefault(query.index_uid, answer)
    return {
        uid: {
            "distribution": merge_facet_distributions(
                [answer["facetDistribution"]],
                sort_facet_values_by.get(uid, {"*": "alpha"}),
                max_values_per_facet.get(uid, 100),
            ),
            "stats": merge_facet_stats([answer.get("facetStats") or {}]),
        }
        for uid, answer in sorted(first.items())
    }


def merge_facets_across_indexes(
    facets_by_index: Mapping[str, Mapping[str, Any]],
    sort_facet_values_by: Mapping[str, str],
    max_values_per_facet: int,
) -> dict[str, Any]:
    """``mergeFacets``: one distribution and stats over every index's facets."""
    return {
        "facetDistribution": merge_facet_distributions(
            (facets["distribution"] for facets in facets_by_index.values()),
            sort_facet_values_by,
            max_values_per_facet,
        ),
        "facetStats": merge_facet_stats(facets["stats"] for facets in facets_by_index.values()),
    }
