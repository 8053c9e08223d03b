"""`/multi-search`: every query scattered in parallel, then either listed or federated.

Plain multi-search fails as a whole on the first failing query (lowest position), which is
reported with Meilisearch's "Inside `.queries[i]`: " prefix. Federated search first merges
each query across its nodes (offset 0, `limit = offset + limit` of the federation, ranking
scores kept) and then merges the queries with `core.federation`.

Per-query pagination or facets, `federationOptions` without `federation`, and any shape
the proxy cannot plan raise `NotUnderstood`: one node judges the whole request, so the
error is the one a single node gives.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import orjson

from miroir_proxy.core.covering import NodeAssignment
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.facets_merge import merge_facet_distributions, merge_facet_stats
from miroir_proxy.core.federation import (
    FederatedQuery,
    Federation,
    answer_total,
    merge_facets_across_indexes,
    merge_federated,
)

from .broadcast import NodeRefused
from .cluster import Cluster
from .reads import (
    PAGINATION,
    IndexView,
    NodeBodies,
    NotUnderstood,
    ReadResult,
    merge_request,
    search,
    without_reserved_facets,
)
from .scatter import gather

QueryError = MiroirError | NodeRefused


class QueryFailed(Exception):
    """Query `position` failed with `error`; the whole multi-search answers with it."""

    def __init__(self, position: int, error: QueryError) -> None:
        super().__init__(f"query {position}: {error}")
        self.position = position
        self.error = error


def check_shape(body: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(queries, federation) of a multi-search body; raises `NotUnderstood`."""
    if not isinstance(body, dict) or not isinstance(body.get("queries"), list):
        raise NotUnderstood
    queries = body["queries"]
    federation = body.get("federation")
    if federation is not None and not isinstance(federation, dict):
        raise NotUnderstood
    for query in queries:
        if not isinstance(query, dict) or not isinstance(query.get("indexUid"), str):
            raise NotUnderstood
        if federation is None and "federationOptions" in query:
            raise NotUnderstood
        if federation is not None and ("facets" in query or PAGINATION.intersection(query)):
            raise NotUnderstood
    return queries, federation


async def _settled(
    runs: Sequence[Awaitable[ReadResult]],
) -> list[ReadResult]:
    outcomes = await asyncio.gather(*runs, return_exceptions=True)
    for position, outcome in enumerate(outcomes):
        if isinstance(outcome, MiroirError | NodeRefused):
            raise QueryFailed(position, outcome)
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if isinstance(outcome, ReadResult)]


def _degraded(results: Sequence[ReadResult]) -> tuple[int, ...]:
    return tuple(sorted({shard for result in results for shard in result.degraded}))


def _node_query(query: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in query.items() if k not in ("indexUid", "federationOptions")}


async def plain(
    cluster: Cluster, views: Sequence[IndexView], queries: Sequence[Mapping[str, Any]]
) -> ReadResult:
    """`{"results": [...]}`, one merged search answer per query with its `indexUid`."""
    results = await _settled(
        [search(cluster, view, _node_query(q)) for view, q in zip(views, queries, strict=True)]
    )
    listed = [{"indexUid": view.uid, **r.body} for view, r in zip(views, results, strict=True)]
    return ReadResult({"results": listed}, _degraded(results), sum(r.fanout for r in results))


def _count(federation: Mapping[str, Any], key: str) -> int | None:
    value = federation.get(key)
    if value is not None and (type(value) is not int or value < 0):
        raise NotUnderstood
    return value


def _federation(raw: Mapping[str, Any]) -> Federation:
    offset, limit = _count(raw, "offset"), _count(raw, "limit")
    return Federation(
        offset=0 if offset is None else offset,
        limit=20 if limit is None else limit,
        page=_count(raw, "page"),
        hits_per_page=_count(raw, "hitsPerPage"),
    )


def _weight(query: Mapping[str, Any]) -> float:
    options = query.get("federationOptions") or {}
    weight = options.get("weight", 1.0) if isinstance(options, dict) else None
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
        raise NotUnderstood
    return float(weight)


async def federated(
    cluster: Cluster,
    views: Sequence[IndexView],
    queries: Sequence[Mapping[str, Any]],
    raw: Mapping[str, Any],
) -> ReadResult:
    """One ranked list over every query's hits, each hit tagged with `_federation`."""
    federation = _federation(raw)
    offset, limit = federation.window()
    facets_by_index = raw.get("facetsByIndex") or {}
    if not isinstance(facets_by_index, dict):
        raise NotUnderstood
    runs = []
    tags = []
    queried: set[str] = set()
    for view, query in zip(views, queries, strict=True):
        body = _node_query(query)
        queried.add(view.uid)
        request = merge_request(body, view.settings)
        key = view.primary_key
        retrieve = body.get("attributesToRetrieve")
        hide = False
        if isinstance(retrieve, list) and "*" not in retrieve and key not in retrieve:
            hide = key is not None
            body = {**body, "attributesToRetrieve": [*retrieve, key]} if hide else body
        tags.append(
            FederatedQuery(
                view.uid,
                _weight(query),
                request.show_ranking_score,
                request.show_ranking_score_details,
                key,
                hide,
            )
        )
        request = dataclasses.replace(request, show_ranking_score=True)
        if federation.page_mode:
            request = dataclasses.replace(request, page=1, hits_per_page=offset + limit)
        else:
            request = dataclasses.replace(request, offset=0, limit=offset + limit)
        runs.append(search(cluster, view, body, request))
    if set(facets_by_index) - queried:
        raise NotUnderstood
    results = await _settled(runs)
    answers = [r.body for r in results]
    degraded = set(_degraded(results))
    fanout = sum(r.fanout for r in results)
    by_uid: dict[str, list[tuple[IndexView, Mapping[str, Any]]]] = {}
    for view, query in zip(views, queries, strict=True):
        by_uid.setdefault(view.uid, []).append((view, query))
    # A document several queries of one index match counts once: only the nodes can take
    # that union, so indexes with several queries (or facets) are counted apart.
    joint = sorted(uid for uid, pairs in by_uid.items() if len(pairs) > 1 or uid in facets_by_index)
    unions = await asyncio.gather(
        *(
            _index_union(cluster, by_uid[uid], facets_by_index.get(uid), uid in facets_by_index)
            for uid in joint
        )
    )
    total = sum(union.count for union in unions)
    total += sum(
        answer_total(answer)
        for answer, view in zip(answers, views, strict=True)
        if view.uid not in joint
    )
    merged = merge_federated(answers, tags, federation, total)
    by_index: dict[str, dict[str, Any]] = {}
    for uid, union in zip(joint, unions, strict=True):
        degraded.update(union.degraded)
        fanout += union.fanout
        if union.facets is not None:
            by_index[uid] = union.facets
    if facets_by_index:
        merge_facets = raw.get("mergeFacets")
        if isinstance(merge_facets, dict):
            merged.update(
                merge_facets_across_indexes(
                    by_index, {"*": "alpha"}, merge_facets.get("maxValuesPerFacet", 100)
                )
            )
        else:
            merged["facetsByIndex"] = by_index
    return ReadResult(merged, tuple(sorted(degraded)), fanout)


@dataclasses.dataclass(frozen=True, slots=True)
class _Union:
    """What the queries of one index match together: how many documents, their facets."""

    count: int
    facets: dict[str, Any] | None
    degraded: tuple[int, ...]
    fanout: int


async def _index_union(
    cluster: Cluster,
    queries: Sequence[tuple[IndexView, Mapping[str, Any]]],
    facets: Any,
    want_facets: bool,
) -> _Union:
    """The documents one index's queries match together: their number and, when asked,
    their `facetsByIndex` entry.

    Only a node can take that union, so each node of a covering set is sent the index's
    queries as a federated search restricted to its shards; its counts then add up.
    """
    view = queries[0][0]
    plans = [(NodeBodies(_node_query(query), v), query) for v, query in queries]
    federation: dict[str, Any] = {"limit": 0}
    if want_facets:
        federation["facetsByIndex"] = {view.uid: facets}

    def body_for(assignment: NodeAssignment) -> bytes:
        node_queries = []
        for bodies, query in plans:
            node_query = {**query, "filter": bodies.filter_for(assignment)}
            if node_query["filter"] is None:
                del node_query["filter"]
            node_queries.append(node_query)
        return orjson.dumps({"federation": federation, "queries": node_queries})

    gathered = await gather(
        cluster, shards=view.shards, method="POST", path="/multi-search", body_for=body_for
    )
    count = sum(answer_total(answer) for answer in gathered.answers)
    if not want_facets:
        return _Union(count, None, gathered.degraded, gathered.fanout)
    parts = [
        without_reserved_facets(dict(answer["facetsByIndex"][view.uid]))
        for answer in gathered.answers
    ]
    faceting = view.settings.get("faceting") or {}
    merged = {
        "distribution": merge_facet_distributions(
            (part.get("distribution") or {} for part in parts),
            faceting.get("sortFacetValuesBy") or {"*": "alpha"},
            faceting.get("maxValuesPerFacet", 100),
        ),
        "stats": merge_facet_stats(part.get("stats") or {} for part in parts),
    }
    return _Union(count, merged, gathered.degraded, gathered.fanout)
