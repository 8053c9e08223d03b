"""POST /multi-search: independent queries, or one federated result merged by weighted score.

The whole body is validated before any query runs (deserr does it up front); errors
raised while running query `i` are prefixed "Inside `.queries[i]`: ". A federated search
asks every query for `offset + limit` hits with their scores and merges the queries' lists
as milli's k-way merge does: always the best head by `_rankingScore * weight` (ties keep
request order), each list in its own order (a hybrid query's is not by score), then
slices the page. Facets come
per index (`facetsByIndex`) or summed across indexes (`mergeFacets`).
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from miroir_devnode.engine import semantic
from miroir_devnode.engine import validation as v
from miroir_devnode.engine.federated_facets import FederatedFacets, index_from_body
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.search import (
    Window,
    build_hits,
    check_unsupported,
    run_query,
    search_with_params,
    semantic_query,
)
from miroir_devnode.engine.search_params import (
    DEFAULT_LIMIT,
    Parser,
    SearchParams,
    parse_object,
    parse_search_body,
)
from miroir_devnode.errors import MeiliError


class SearchAuth(Protocol):
    def allows_index(self, uid: str) -> bool: ...

    def tenant_filter(self, index_uid: str) -> Any: ...


def _facets_by_index(code: str, path: str, value: Any) -> dict[str, list[str] | None]:
    body = v.check_object(code, path, value)
    return {
        uid: None if facets is None else v.check_str_list(code, f"{path}.{uid}", facets)
        for uid, facets in body.items()
    }


def _merge_facets(code: str, path: str, value: Any) -> dict[str, Any]:
    fields: dict[str, tuple[str, str, Parser, bool]] = {
        "maxValuesPerFacet": (
            "maxValuesPerFacet",
            "invalid_multi_search_max_values_per_facet",
            v.check_usize,
            True,
        )
    }
    return parse_object(value, path, fields, code=code)


_FEDERATION_FIELDS: dict[str, tuple[str, str, Parser, bool]] = {
    "limit": ("limit", "invalid_search_limit", v.check_usize, False),
    "offset": ("offset", "invalid_search_offset", v.check_usize, False),
    "page": ("page", "invalid_search_page", v.check_usize, True),
    "hitsPerPage": ("hits_per_page", "invalid_search_hits_per_page", v.check_usize, True),
    "facetsByIndex": (
        "facets_by_index",
        "invalid_multi_search_facets_by_index",
        _facets_by_index,
        False,
    ),
    "mergeFacets": ("merge_facets", "invalid_multi_search_merge_facets", _merge_facets, True),
    "distinct": ("distinct", "invalid_multi_search_distinct", v.check_str, True),
    "showPerformanceDetails": (
        "show_performance_details",
        "invalid_multi_search_query_show_performance_details",
        v.check_bool,
        False,
    ),
}


@dataclass(slots=True)
class Request:
    queries: list[SearchParams]
    federation: dict[str, Any] | None


def parse_request(body: Any) -> Request:
    fields: dict[str, tuple[str, str, Parser, bool]] = {
        "queries": ("queries", "bad_request", _queries, False),
        "federation": ("federation", "bad_request", _federation, True),
    }
    parsed = parse_object(body, "", fields, required=("queries",))
    return Request(parsed["queries"], parsed.get("federation"))


def _queries(code: str, path: str, value: Any) -> list[SearchParams]:
    if not isinstance(value, list):
        raise v.type_error(code, path, ["array"], value)
    return [parse_search_body(q, f"{path}[{i}]", multi=True) for i, q in enumerate(value)]


def _federation(code: str, path: str, value: Any) -> dict[str, Any]:
    return parse_object(value, path, _FEDERATION_FIELDS, code=code)


def _inside(position: int, error: MeiliError) -> MeiliError:
    return MeiliError(error.code, f"Inside `.queries[{position}]`: {error.message}")


def multi_search(
    body: Any,
    *,
    get_index: Callable[[str], Index],
    auth: SearchAuth,
    features: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    request = parse_request(body)
    for position, query in enumerate(request.queries):
        if not auth.allows_index(str(query.index_uid)):
            raise _inside(
                position, MeiliError("invalid_api_key", "The provided API key is invalid.")
            )
    if request.federation is None:
        return {
            "results": [
                _one(p, q, get_index, auth, features or {}) for p, q in enumerate(request.queries)
            ]
        }
    return _federated(request, request.federation, get_index, auth, features or {}, started)


def _one(
    position: int,
    query: SearchParams,
    get_index: Callable[[str], Index],
    auth: SearchAuth,
    features: Mapping[str, bool],
) -> dict[str, Any]:
    uid = str(query.index_uid)
    if query.federation_options is not None:
        raise _inside(
            position,
            MeiliError(
                "invalid_multi_search_federation_options",
                "Using `federationOptions` is not allowed in a non-federated search.\n - Hint: "
                f"remove `federationOptions` from query #{position} or add `federation` to the "
                "request.",
            ),
        )
    index = index_from_body(get_index, uid, f"Inside `.queries[{position}]`: ")
    try:
        result = search_with_params(
            index,
            query,
            tenant_filter=auth.tenant_filter(uid),
            features=features,
            started=time.perf_counter(),
        )
    except MeiliError as error:
        raise _inside(position, error) from None
    return {"indexUid": uid, **result}


def _check_federated_query(position: int, query: SearchParams) -> None:
    for key in ("offset", "limit", "page", "hitsPerPage"):
        if key in query.present:
            raise MeiliError(
                "invalid_multi_search_query_pagination",
                f"Inside `.queries[{position}]`: Using pagination options is not allowed in "
                f"federated queries.\n - Hint: remove `{key}` from query #{position} or remove "
                "`federation` from the request\n - Hint: pass `federation.limit` and "
                "`federation.offset` for pagination in federated search",
            )
    if query.facets:
        listed = "[" + ", ".join(f'"{f}"' for f in query.facets) + "]"
        raise MeiliError(
            "invalid_multi_search_query_facets",
            f"Inside `.queries[{position}]`: Using facet options is not allowed in federated "
            f"queries.\n - Hint: remove `facets` from query #{position} or remove `federation` "
            f"from the request\n - Hint: pass `federation.facetsByIndex.{query.index_uid}: "
            f"{listed}` for facets in federated search",
        )
    for key, code in (
        ("personalize", "invalid_multi_search_query_personalization"),
        ("showPerformanceDetails", "invalid_multi_search_query_show_performance_details"),
    ):
        if key in query.present:
            raise MeiliError(
                code,
                f"Inside `.queries[{position}]`: Using `.{key}` is not allowed in federated "
                f"queries.\n - Hint: remove `{key}` from query #{position} or remove "
                "`federation` from the request",
            )


@dataclass(slots=True)
class _Merged:
    weighted: float
    position: int
    rank: int
    internal_id: int
    hit: dict[str, Any]


def _merge_key(merged: _Merged) -> tuple[float, int, int]:
    return (-merged.weighted, merged.position, merged.rank)


def _federated(
    request: Request,
    federation: Mapping[str, Any],
    get_index: Callable[[str], Index],
    auth: SearchAuth,
    features: Mapping[str, bool],
    started: float,
) -> dict[str, Any]:
    paging = SearchParams(
        offset=federation.get("offset", 0),
        limit=federation.get("limit", DEFAULT_LIMIT),
        page=federation.get("page"),
        hits_per_page=federation.get("hits_per_page"),
    )
    window = Window.of(paging, {"pagination": {"maxTotalHits": 2**63}})
    want = window.offset + window.limit
    by_index: dict[str, list[tuple[int, SearchParams]]] = {}
    for position, query in enumerate(request.queries):
        _check_federated_query(position, query)
        by_index.setdefault(str(query.index_uid), []).append((position, query))
    facets = FederatedFacets(federation, get_index)
    per_index: list[list[_Merged]] = []
    total = 0
    # Like Meilisearch, indexes run in uid order, so that is the order errors surface in.
    for uid in sorted(by_index):
        queries = by_index[uid]
        first = queries[0][0]
        index = index_from_body(get_index, uid, f"Inside `.queries[{first}]`: ")
        wanted_facets = facets.start_index(uid, index, first)
        candidates: set[int] = set()
        found = [
            _run_one(index, position, query, auth, features, want, candidates)
            for position, query in queries
        ]
        # A document matched by several queries of one index is returned once, first.
        seen: set[int] = set()
        kept = []
        for candidate in heapq.merge(*found, key=_merge_key):
            if candidate.internal_id not in seen:
                seen.add(candidate.internal_id)
                kept.append(candidate)
        per_index.append(kept)
        total += len(candidates)
        facets.finish_index(uid, index, wanted_facets, candidates, first)
    facets.check_unused()
    hits = [m.hit for m in heapq.merge(*per_index, key=_merge_key)]
    if federation.get("distinct"):
        hits = _distinct(hits, str(federation["distinct"]))
    response: dict[str, Any] = {
        "hits": hits[window.offset : window.offset + window.limit],
        "processingTimeMs": 0,
        **window.hits_info(paging, total),
        **facets.render(),
        "requestUid": str(uuid.uuid4()),
    }
    response["processingTimeMs"] = int((time.perf_counter() - started) * 1000)
    return response


def _run_one(
    index: Index,
    position: int,
    query: SearchParams,
    auth: SearchAuth,
    features: Mapping[str, bool],
    want: int,
    candidates: set[int],
) -> list[_Merged]:
    """One query's top `want` hits with their weighted scores; adds to the index's candidates."""
    try:
        check_unsupported(query, features)
        plan = semantic.plan(index, query, "invalid_search_embedder")
        tenant = auth.tenant_filter(index.uid)
        if plan is None:
            result = run_query(
                index,
                query,
                tenant_filter=tenant,
                features=features,
                want=want,
                details=query.show_ranking_score_details,
            )
        else:
            window = Window(0, want, want)
            result, _ = semantic_query(
                index, query, plan, tenant_filter=tenant, features=features, window=window
            )
        hits = build_hits(index, query, result, Window(0, want, want))
    except MeiliError as error:
        raise _inside(position, error) from None
    candidates.update(result.candidates)
    weight = float((query.federation_options or {}).get("weight", 1.0))
    found = []
    for rank, (ranked, hit) in enumerate(zip(result.ranked, hits, strict=False)):
        weighted = ranked.score * weight
        info = {
            "indexUid": index.uid,
            "queriesPosition": position,
            "weightedRankingScore": weighted,
        }
        found.append(
            _Merged(weighted, position, rank, ranked.internal_id, _with_federation(hit, info))
        )
    return found


_HIT_EXTRAS = ("_formatted", "_matchesPosition", "_rankingScore", "_rankingScoreDetails")


def _with_federation(hit: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """`_federation` joins the document's own fields, ahead of the formatting extras."""
    out = {k: val for k, val in hit.items() if k not in _HIT_EXTRAS}
    out["_federation"] = info
    out.update((k, hit[k]) for k in _HIT_EXTRAS if k in hit)
    return out


def _distinct(hits: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    seen: set[str] = set()
    kept = []
    for hit in hits:
        value = hit.get(field)
        key = repr(value)
        if value is not None and key in seen:
            continue
        seen.add(key)
        kept.append(hit)
    return kept
