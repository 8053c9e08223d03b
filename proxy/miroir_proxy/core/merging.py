"""Merge per-node search answers into the answer one node holding every shard would give.

The scatter layer asks each node for its assigned shards only, from offset 0 with
``limit = offset + limit`` (see ``node_window``) and with ``showRankingScore`` (plus
``showRankingScoreDetails`` when the query sorts). Merging is a lazy k-way merge: node
answers are already in rank order, so only ``offset + limit`` hits (plus any dropped as
duplicates or under the threshold) are ever looked at, whatever the nodes returned.

Pagination is applied exactly as a node does it: the window is clamped by
``maxTotalHits`` (offset to maxTotalHits, limit to maxTotalHits - offset) and totals are
capped by it, while the response echoes the limit/offset/page the client sent.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from miroir_proxy.core.facets_merge import merge_facet_distributions, merge_facet_stats
from miroir_proxy.core.pk import RESERVED_PREFIX
from miroir_proxy.core.ranking import Hit, details_key_function, score_key

NodeAnswer = Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class MergeRequest:
    """What the client asked for, plus the index settings the merge needs."""

    offset: int = 0
    limit: int = 20
    page: int | None = None
    hits_per_page: int | None = None
    max_total_hits: int = 1000
    sorted_by_rules: bool = False  # the query had `sort`: compare `_rankingScoreDetails`
    distinct: str | None = None
    ranking_score_threshold: float | None = None
    show_ranking_score: bool = False
    show_ranking_score_details: bool = False
    max_values_per_facet: int = 100
    sort_facet_values_by: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {"*": "alpha"}
    )
    # Fields fetched only so the merge could work (e.g. the distinct attribute when the
    # client restricted attributesToRetrieve); removed from hits and `_formatted`.
    strip_fields: frozenset[str] = frozenset()

    @property
    def page_mode(self) -> bool:
        return self.page is not None or self.hits_per_page is not None

    def window(self) -> tuple[int, int]:
        """(offset, limit) in the merged ranking after maxTotalHits clamping."""
        if self.page_mode:
            per_page = 20 if self.hits_per_page is None else self.hits_per_page
            page = 1 if self.page is None else self.page
            offset, limit = ((page - 1) * per_page, per_page) if page > 0 else (0, 0)
        else:
            offset, limit = self.offset, self.limit
        offset = min(offset, self.max_total_hits)
        return offset, min(limit, self.max_total_hits - offset)


def node_window(request: MergeRequest) -> dict[str, int]:
    """Pagination parameters to send to every node for ``request``.

    Page mode is kept on the nodes so their ``totalHits`` stay exhaustive.
    """
    offset, limit = request.window()
    if request.page_mode:
        return {"page": 1, "hitsPerPage": offset + limit}
    return {"offset": 0, "limit": offset + limit}


def _tagged(hits: Sequence[Hit], node: int, key: Any) -> Iterator[tuple[Any, int, int, Hit]]:
    # (key, node, position) is unique, so tuple comparison never reaches the hit itself and
    # ties fall back to node order then position; each key is computed exactly once.
    for position, hit in enumerate(hits):
        yield key(hit), node, position, hit


def _key_function(answers: Sequence[NodeAnswer], compare_details: bool) -> Callable[[Hit], Any]:
    if compare_details:
        for answer in answers:
            if answer.get("hits"):
                sample = answer["hits"][0].get("_rankingScoreDetails")
                if sample:
                    return details_key_function(sample)
    return score_key


def ranked_hits(answers: Sequence[NodeAnswer], compare_details: bool) -> Iterator[Hit]:
    """All hits of ``answers`` lazily in merged rank order."""
    key = _key_function(answers, compare_details)
    streams = [_tagged(answer.get("hits") or (), node, key) for node, answer in enumerate(answers)]
    for entry in heapq.merge(*streams):
        yield entry[3]


def _distinct_values(value: Any) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str):
            out.append(item.strip().lower())
        elif isinstance(item, int | float):
            out.append(float(item))
    return out


class _Filtered:
    """Drops hits under the score threshold and repeated distinct values, counting repeats."""

    def __init__(self, request: MergeRequest) -> None:
        self.threshold = request.ranking_score_threshold
        self.distinct = request.distinct
        self.seen: set[Any] = set()
        self.duplicates = 0

    def __call__(self, hits: Iterator[Hit]) -> Iterator[Hit]:
        threshold, field, seen = self.threshold, self.distinct, self.seen
        for hit in hits:
            if threshold is not None and hit.get("_rankingScore", 1.0) < threshold:
                continue
            if field is not None and field in hit:
                values = _distinct_values(hit[field])
                if any(value in seen for value in values):
                    self.duplicates += 1
                    continue
                seen.update(values)
            yield hit


def clean_hit(hit: Hit, drop: frozenset[str]) -> Hit:
    """A copy of ``hit`` without ``drop`` fields and without any `_miroir_*` field."""
    out = {k: v for k, v in hit.items() if k not in drop and not k.startswith(RESERVED_PREFIX)}
    formatted = out.get("_formatted")
    if isinstance(formatted, dict):
        out["_formatted"] = {
            k: v
            for k, v in formatted.items()
            if k not in drop and not k.startswith(RESERVED_PREFIX)
        }
    return out


def _dropped_fields(request: MergeRequest) -> frozenset[str]:
    drop = set(request.strip_fields)
    if not request.show_ranking_score:
        drop.add("_rankingScore")
    if not request.show_ranking_score_details:
        drop.add("_rankingScoreDetails")
    return frozenset(drop)


def _sum_counts(answers: Sequence[NodeAnswer], name: str) -> int:
    return sum(int(answer.get(name) or 0) for answer in answers)


def merge_search(answers: Sequence[NodeAnswer], request: MergeRequest) -> dict[str, Any]:
    """The merged search response (without `requestUid`, which the api layer adds)."""
    offset, limit = request.window()
    filtered = _Filtered(request)
    page = list(
        islice(filtered(ranked_hits(answers, request.sorted_by_rules)), offset, offset + limit)
    )
    drop = _dropped_fields(request)
    result: dict[str, Any] = {
        "hits": [clean_hit(hit, drop) for hit in page],
        "query": next((a["query"] for a in answers if "query" in a), ""),
        "processingTimeMs": max((int(a.get("processingTimeMs") or 0) for a in answers), default=0),
    }
    # Repeats of a distinct value across nodes were each counted by their node; the ones
    # seen while filling the page are known duplicates and leave the total.
    if request.page_mode:
        total = min(_sum_counts(answers, "totalHits") - filtered.duplicates, request.max_total_hits)
        per_page = 20 if request.hits_per_page is None else request.hits_per_page
        result["hitsPerPage"] = per_page
        result["page"] = 1 if request.page is None else request.page
        result["totalPages"] = -(-total // per_page) if per_page else 0
        result["totalHits"] = total
    else:
        total = _sum_counts(answers, "estimatedTotalHits") - filtered.duplicates
        result["limit"] = request.limit
        result["offset"] = request.offset
        result["estimatedTotalHits"] = min(total, request.max_total_hits)
    distributions = [a["facetDistribution"] for a in answers if "facetDistribution" in a]
    if distributions:
        result["facetDistribution"] = merge_facet_distributions(
            distributions, request.sort_facet_values_by, request.max_values_per_facet
        )
        result["facetStats"] = merge_facet_stats(a.get("facetStats") or {} for a in answers)
    semantic = [a["semanticHitCount"] for a in answers if "semanticHitCount" in a]
    if semantic:
        # Hits do not say which side of a hybrid search found them; the sum is exact
        # unless the page cut some semantic hits off, hence the cap.
        result["semanticHitCount"] = min(sum(semantic), len(page))
    return result
