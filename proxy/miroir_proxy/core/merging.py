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
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from itertools import groupby, islice
from typing import Any

from miroir_proxy.core.facets_merge import merge_facet_distributions, merge_facet_stats
from miroir_proxy.core.pk import RESERVED_PREFIX
from miroir_proxy.core.ranking import Hit, details_key_function, score_key

NodeAnswer = Mapping[str, Any]
SHARD_FIELD = RESERVED_PREFIX + "shard"
# (rank key, shard, position among that shard's hits, answer, hit)
Entry = tuple[Any, int, int, int, Hit]


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


def _entries(hits: Sequence[Hit], node: int, key: Callable[[Hit], Any]) -> Iterator[Entry]:
    """One answer's hits in global order: rank key, then shard, then position in the shard.

    Every replica of a shard orders its tied hits alike (by insertion), but a node mixes
    the tied hits of its shards in its own way: only runs of tied hits are re-sorted, so
    the stream stays lazy for hits that do not tie. (shard, position) is unique within one
    answer, so sorting never compares hits; each key is computed exactly once.
    """
    seen: dict[int, int] = {}
    for rank, run in groupby(hits, key):
        tied = []
        for hit in run:
            shard = hit.get(SHARD_FIELD, -1)
            position = seen.get(shard, 0)
            seen[shard] = position + 1
            tied.append((rank, shard, position, node, hit))
        if len(tied) > 1:
            tied.sort()
        yield from tied


def _key_function(answers: Sequence[NodeAnswer], compare_details: bool) -> Callable[[Hit], Any]:
    if compare_details:
        for answer in answers:
            if answer.get("hits"):
                sample = answer["hits"][0].get("_rankingScoreDetails")
                if sample:
                    return details_key_function(sample)
    return score_key


def ranked_entries(answers: Sequence[NodeAnswer], compare_details: bool) -> Iterator[Entry]:
    """All hits of ``answers`` lazily in merged order, as entries.

    Hits tied on everything the ranking compares go by shard, then by position among the
    hits of their shard: an order no replica assignment changes, so pages of one query
    stay consistent whichever nodes serve them (see ``unsettled`` for its one limit).
    """
    key = _key_function(answers, compare_details)
    streams = [_entries(answer.get("hits") or (), node, key) for node, answer in enumerate(answers)]
    return heapq.merge(*streams)


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

    def __call__(self, entries: Iterator[Entry]) -> Iterator[Entry]:
        threshold, field, seen = self.threshold, self.distinct, self.seen
        for entry in entries:
            hit = entry[4]
            if threshold is not None and hit.get("_rankingScore", 1.0) < threshold:
                continue
            if field is not None and field in hit:
                values = _distinct_values(hit[field])
                if any(value in seen for value in values):
                    self.duplicates += 1
                    continue
                seen.update(values)
            yield entry


def clean_hit(hit: Hit, drop: frozenset[str], gone: dict[tuple[str, ...], list[str]]) -> Hit:
    """A copy of ``hit`` without ``drop`` fields and without any `_miroir_*` field.

    Hits of one answer share their fields, so the fields to delete are worked out once per
    field layout and kept in ``gone`` (one dict per merge): copying a hit and deleting two
    or three fields costs a third of testing every field of every hit.
    """
    out = dict(hit)
    layout = tuple(out)
    names = gone.get(layout)
    if names is None:
        names = gone[layout] = [k for k in layout if k in drop or k.startswith(RESERVED_PREFIX)]
    for name in names:
        del out[name]
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
    return _merge(answers, request)[0]


def merge_checked(
    answers: Sequence[NodeAnswer], request: MergeRequest, served: Sequence[Collection[int]]
) -> tuple[dict[str, Any], list[int]]:
    """``merge_search`` plus the answers whose hits must be read again shard by shard.

    A node answers its first ``offset + limit`` hits in its own order, which interleaves
    the tied hits of the shards it serves (``served[i]`` for answer ``i``). Hits it did not
    return rank after its last one, or tie with it, and a tied one of a lower shard belongs
    before the ones returned of a higher shard. So when the page ends on a hit that ties
    with the last hit of a full answer, and that answer serves a lower shard than the
    page's last hit, hits of that answer may be missing from the page.
    """
    result, last = _merge(answers, request)
    if last is None:
        return result, []
    offset, limit = request.window()
    size = offset + limit
    rank, shard = last[0], last[1]
    key = _key_function(answers, request.sorted_by_rules)
    unsettled = []
    for index, (answer, shards) in enumerate(zip(answers, served, strict=True)):
        hits: Sequence[Hit] = answer.get("hits") or []
        if len(hits) < size or int(answer.get("totalHits", size + 1)) <= len(hits):
            continue  # the node had nothing more to give
        if any(s < shard for s in shards) and key(hits[-1]) == rank:
            unsettled.append(index)
    return result, unsettled


def _merge(
    answers: Sequence[NodeAnswer], request: MergeRequest
) -> tuple[dict[str, Any], Entry | None]:
    """The merged response and, when the page is full, its last entry."""
    offset, limit = request.window()
    filtered = _Filtered(request)
    entries = ranked_entries(answers, request.sorted_by_rules)
    if filtered.threshold is not None or filtered.distinct is not None:
        # A generator layer per hit is a tenth of a plain merge's CPU: only when it drops.
        entries = filtered(entries)
    page = list(islice(entries, offset, offset + limit))
    drop = _dropped_fields(request)
    gone: dict[tuple[str, ...], list[str]] = {}
    result: dict[str, Any] = {
        "hits": [clean_hit(entry[4], drop, gone) for entry in page],
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
    return result, (page[-1] if page and len(page) == limit else None)
