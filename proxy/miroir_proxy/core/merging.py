"""Merge per-node search answers into the answer one node holding every shard would give.

The scatter layer asks each node for its assigned shards only, from offset 0 with
``limit = offset + limit`` (see ``node_window``) and with ``showRankingScore`` (plus
``showRankingScoreDetails`` when the query sorts). Merging is a lazy k-way merge: node
answers are already in rank order, so only ``offset + limit`` hits (plus any dropped as
duplicates or under the threshold) are ever looked at, whatever the nodes returned. When
hits rank by score and a few answers are merged, the common case, sorting them at once in C
gives the same order for less CPU (``_sorted_by_score``).

Pagination is applied exactly as a node does it: the window is clamped by
``maxTotalHits`` (offset to maxTotalHits, limit to maxTotalHits - offset) and totals are
capped by it, while the response echoes the limit/offset/page the client sent.
"""

from __future__ import annotations

import dataclasses
import heapq
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from itertools import chain, groupby, islice
from operator import itemgetter
from typing import Any

from miroir_proxy.core.facets_merge import merge_facet_distributions, merge_facet_stats
from miroir_proxy.core.pk import RESERVED_PREFIX
from miroir_proxy.core.ranking import Hit, details_key_function, score_key

NodeAnswer = Mapping[str, Any]
SHARD_FIELD = RESERVED_PREFIX + "shard"
# (rank key, shard, position among that shard's hits, answer, hit)
Entry = tuple[Any, int, int, int, Hit]
_SCORE = itemgetter("_rankingScore")
_SHARD = itemgetter(SHARD_FIELD)
_SCORE_AND_SHARD = itemgetter("_rankingScore", SHARD_FIELD)
# Sorting at once (``_sorted_by_score``) pays while the hits to sort are at most this
# many windows (offset + limit, about what the lazy heap merge looks at): 3 answers of 20
# hits into a page of 20 take ~8.5 µs instead of ~15 µs, 3 of 1,000 at offset 980
# ~0.25 ms (0.45 ms when shards repeat across answers) instead of ~0.5 ms. The heap merge
# is faster from ~8 full answers on (~5 when shards repeat).
SORT_AT_ONCE = 6


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
    return _heap_merge(answers, _key_function(answers, compare_details))


def _heap_merge(answers: Sequence[NodeAnswer], key: Callable[[Hit], Any]) -> Iterator[Entry]:
    streams = [_entries(answer.get("hits") or (), node, key) for node, answer in enumerate(answers)]
    return heapq.merge(*streams)


def _head(hits: Sequence[Hit], size: int) -> Sequence[Hit]:
    """The first ``size`` hits and the rest of the last one's tie run, which ``_entries``
    may order before it: all an answer can give to the first ``size`` merged hits."""
    end = size
    if size:
        last = score_key(hits[size - 1])
        while end < len(hits) and score_key(hits[end]) == last:
            end += 1
    return hits[:end]


def _sorted_by_score(
    answers: Sequence[NodeAnswer], window: int, filtering: bool
) -> list[Hit] | None:
    """The hits that may make the first ``window`` merged hits (all hits when
    ``filtering``, as filters may drop any number) in the order of ``ranked_entries``,
    sorted in C; None when only that lazy merge gives the order, or is faster.

    When every answer is in descending ``_rankingScore`` order and no two answers have
    hits tied on score and shard, that order is a stable sort of the answers' hits, in
    answer order, by score then shard: a shard's tied hits keep their order in their
    answer, which is their position. Two stable sorts with C keys do it without a Python
    call per hit.
    """
    heads: list[Sequence[Hit]] = []
    scores: list[list[Any]] = []
    count = 0
    try:
        for answer in answers:
            hits = answer.get("hits") or ()
            if not filtering and len(hits) > window:
                hits = _head(hits, window)
            count += len(hits)
            if count > SORT_AT_ONCE * window:
                return None
            mine = list(map(_SCORE, hits))
            # Numbers (sum refuses anything else) but NaN, in descending order: the sorts
            # below then compare them as score_key does.
            total = sum(mine)
            if total != total or mine != sorted(mine, reverse=True):
                return None
            heads.append(hits)
            scores.append(mine)
        if not filtering and count > window:
            # Only hits scored at least the window-th best score can make the window.
            cut = sorted(chain.from_iterable(scores), reverse=True)[window - 1]
            # In a descending list, the hits scored at least ``cut`` are the first
            # len - (number scored below it) = len - bisect_left(ascending copy, cut).
            heads = [
                hits[: len(mine) - bisect_left(mine[::-1], cut)]
                for hits, mine in zip(heads, scores, strict=True)
            ]
        merged: list[Hit] = []
        shards: set[Any] = set()
        tied: set[tuple[Any, Any]] | None = None
        for hits in heads:
            present = set(map(_SHARD, hits))
            if tied is None and shards.isdisjoint(present):
                shards |= present
            else:  # a shard in two answers: are any of its hits tied across them?
                if tied is None:
                    tied = set(map(_SCORE_AND_SHARD, merged))
                pairs = set(map(_SCORE_AND_SHARD, hits))
                if not tied.isdisjoint(pairs):
                    return None
                tied |= pairs
            merged += hits
        merged.sort(key=_SHARD)
        merged.sort(key=_SCORE, reverse=True)  # stable, as an ascending sort
    except (KeyError, TypeError):  # no score or shard, or shards that do not compare
        return None
    return merged


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

    def __call__(self, hits: Iterable[Hit]) -> Iterator[Hit]:
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


def clean_hit(hit: Hit, drop: frozenset[str], gone: dict[tuple[str, ...], list[str]]) -> Hit:
    """A copy of ``hit`` without ``drop`` fields and without any `_miroir_*` field."""
    return clean_hits([hit], drop, gone)[0]


def clean_hits(
    hits: Iterable[Hit], drop: frozenset[str], gone: dict[tuple[str, ...], list[str]]
) -> list[Hit]:
    """``clean_hit`` of each of ``hits``, in one loop (a call per hit is a fifth of it).

    Hits of one answer share their fields, so the fields to delete are worked out once per
    field layout and kept in ``gone`` (one dict per merge): copying a hit and deleting two
    or three fields costs a third of testing every field of every hit.
    """
    cleaned = []
    previous: tuple[str, ...] = ()
    names: list[str] = []
    for hit in hits:
        layout = tuple(hit)
        # Mostly the previous hit's layout, whose keys are the same objects: comparing
        # to it costs half a lookup in ``gone`` (-0.8 µs over a page of 20).
        if layout != previous:
            found = gone.get(layout)
            if found is None:
                found = gone[layout] = [
                    k for k in layout if k in drop or k.startswith(RESERVED_PREFIX)
                ]
            previous, names = layout, found
        out = hit.copy()
        for name in names:
            del out[name]
        if "_formatted" in out and isinstance(out["_formatted"], dict):
            out["_formatted"] = {
                k: v
                for k, v in out["_formatted"].items()
                if k not in drop and not k.startswith(RESERVED_PREFIX)
            }
        cleaned.append(out)
    return cleaned


def _dropped_fields(request: MergeRequest) -> frozenset[str]:
    drop = set(request.strip_fields)
    if not request.show_ranking_score:
        drop.add("_rankingScore")
    if not request.show_ranking_score_details:
        drop.add("_rankingScoreDetails")
    return frozenset(drop)


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
    result, last, size = _merge(answers, request)
    if last is None:
        return result, []
    key = _key_function(answers, request.sorted_by_rules)
    rank, shard = key(last), last.get(SHARD_FIELD, -1)
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
) -> tuple[dict[str, Any], Hit | None, int]:
    """The merged response, its last hit when the page is full, and offset + limit."""
    offset, limit = request.window()
    filtered = _Filtered(request)
    filtering = filtered.threshold is not None or filtered.distinct is not None
    key = _key_function(answers, request.sorted_by_rules)
    ranked: Iterable[Hit] | None = None
    if key is score_key:
        ranked = _sorted_by_score(answers, offset + limit, filtering)
    if ranked is None:
        ranked = map(itemgetter(4), _heap_merge(answers, key))
    if filtering:
        # A generator layer per hit is a tenth of a plain merge's CPU: only when it drops.
        ranked = filtered(ranked)
    page = list(islice(ranked, offset, offset + limit))
    queries: list[Any] = []
    took: list[int] = []
    counted = 0
    distributions: list[Any] = []
    semantic: list[Any] = []
    counter = "totalHits" if request.page_mode else "estimatedTotalHits"
    for answer in answers:  # one loop: a generator per field cost ~1 µs more in all
        if "query" in answer:
            queries.append(answer["query"])
        took.append(int(answer.get("processingTimeMs") or 0))
        counted += int(answer.get(counter) or 0)
        if "facetDistribution" in answer:
            distributions.append(answer["facetDistribution"])
        if "semanticHitCount" in answer:
            semantic.append(answer["semanticHitCount"])
    result: dict[str, Any] = {
        "hits": clean_hits(page, _dropped_fields(request), {}),
        "query": queries[0] if queries else "",
        "processingTimeMs": max(took, default=0),
    }
    # Repeats of a distinct value across nodes were each counted by their node; the ones
    # seen while filling the page are known duplicates and leave the total.
    if request.page_mode:
        total = min(counted - filtered.duplicates, request.max_total_hits)
        per_page = 20 if request.hits_per_page is None else request.hits_per_page
        result["hitsPerPage"] = per_page
        result["page"] = 1 if request.page is None else request.page
        result["totalPages"] = -(-total // per_page) if per_page else 0
        result["totalHits"] = total
    else:
        total = counted - filtered.duplicates
        result["limit"] = request.limit
        result["offset"] = request.offset
        result["estimatedTotalHits"] = min(total, request.max_total_hits)
    if distributions:
        result["facetDistribution"] = merge_facet_distributions(
            distributions, request.sort_facet_values_by, request.max_values_per_facet
        )
        result["facetStats"] = merge_facet_stats(a.get("facetStats") or {} for a in answers)
    if semantic:
        # Hits do not say which side of a hybrid search found them; the sum is exact
        # unless the page cut some semantic hits off, hence the cap.
        result["semanticHitCount"] = min(sum(semantic), len(page))
    return result, (page[-1] if page and len(page) == limit else None), offset + limit
