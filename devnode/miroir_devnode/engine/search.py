"""One index search: validate the request, run the ranking core, assemble the response.

The checks run in Meilisearch's order (semantic parameters, filter, sort syntax, then the
engine's distinct / attributesToSearchOn / sortable checks, then facets) because a request
with several mistakes must report the same one. Pagination follows `prepare_search`: the
offset is clamped to `maxTotalHits` and the limit to what is left, while the response
echoes the requested `limit`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Set
from dataclasses import dataclass, replace
from typing import Any

from miroir_devnode.engine import attribute_checks as checks
from miroir_devnode.engine import semantic
from miroir_devnode.engine.facets import haversine_m
from miroir_devnode.engine.filtering import FilterError, and_filters, parse_filter
from miroir_devnode.engine.formatting import FormatSettings, HitFormatter
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.patterns import is_faceted_by
from miroir_devnode.engine.ranking import QueryResult, RankedHit
from miroir_devnode.engine.search_params import DEFAULT_LIMIT, SearchParams, parse_search_body
from miroir_devnode.errors import MeiliError

DEFAULT_MAX_TOTAL_HITS = 1000
DEFAULT_MAX_VALUES_PER_FACET = 100
FEATURE_LINKS = {
    "multimodal": "https://github.com/orgs/meilisearch/discussions/846",
    "network": "https://github.com/orgs/meilisearch/discussions/805",
    "personalization": "https://github.com/orgs/meilisearch/discussions/866",
}


def feature_error(action: str, feature: str) -> MeiliError:
    return MeiliError(
        "feature_not_enabled",
        f"{action} requires enabling the `{feature}` experimental feature. "
        f"See {FEATURE_LINKS[feature]}",
    )


def check_unsupported(params: SearchParams, features: Mapping[str, bool]) -> None:
    """Search parameters of features the devnode does not have, refused as Meilisearch does."""
    if params.media is not None and not features.get("multimodal", False):
        raise feature_error("passing `media` in a search query", "multimodal")
    if params.personalize is not None:
        raise feature_error("reranking search results", "personalization")
    if params.use_network is not None and not features.get("network", False):
        raise feature_error("passing `useNetwork` in a search query", "network")


def filtered_universe(
    index: Index,
    raw_filter: Any,
    *,
    code: str,
    features: Mapping[str, bool],
    prefix_index: bool = True,
) -> Set[int] | None:
    """Documents passing the filter, or None when there is no filter (everything)."""
    if raw_filter is None:
        return None
    try:
        parsed = parse_filter(raw_filter)
    except FilterError as error:
        raise MeiliError(code, str(error)) from None
    if parsed is None:
        return None
    if parsed.uses_contains() and not features.get("containsFilter", False):
        raise MeiliError(
            "feature_not_enabled",
            "Using `CONTAINS` or `STARTS WITH` in a filter requires enabling the "
            "`contains filter` experimental feature. "
            "See https://github.com/orgs/meilisearch/discussions/763",
        )
    try:
        parsed.check_filterable(index.settings.get("filterableAttributes") or [])
    except FilterError as error:
        prefix = f"Index `{index.uid}`: " if prefix_index else ""
        raise MeiliError(code, f"{prefix}{error}") from None
    return parsed.evaluate(index.facets, index.all_internal())


@dataclass(slots=True)
class Window:
    """Which ranked hits to return and how the response describes the page."""

    offset: int
    limit: int
    max_total_hits: int

    @classmethod
    def of(cls, params: SearchParams, settings: Mapping[str, Any]) -> Window:
        pagination = settings.get("pagination") or {}
        max_total = int(pagination.get("maxTotalHits", DEFAULT_MAX_TOTAL_HITS))
        if params.is_page_mode:
            per_page = DEFAULT_LIMIT if params.hits_per_page is None else params.hits_per_page
            page = 1 if params.page is None else params.page
            offset, limit = (per_page * (page - 1), per_page) if page > 0 else (0, 0)
        else:
            offset = params.offset or 0
            limit = DEFAULT_LIMIT if params.limit is None else params.limit
        offset = min(offset, max_total)
        return cls(offset, min(limit, max_total - offset), max_total)

    def hits_info(self, params: SearchParams, total: int) -> dict[str, int]:
        hits = min(total, self.max_total_hits)
        if params.is_page_mode:
            per_page = DEFAULT_LIMIT if params.hits_per_page is None else params.hits_per_page
            pages = -(-hits // per_page) if per_page else 0
            page = 1 if params.page is None else params.page
            return {"hitsPerPage": per_page, "page": page, "totalPages": pages, "totalHits": hits}
        limit = DEFAULT_LIMIT if params.limit is None else params.limit
        return {"limit": limit, "offset": self.offset, "estimatedTotalHits": hits}


def run_query(
    index: Index,
    params: SearchParams,
    *,
    tenant_filter: Any,
    features: Mapping[str, bool],
    want: int,
    details: bool,
) -> QueryResult:
    """Filter, validate against the settings and rank; raises the first error Meilisearch would."""
    settings = index.settings
    universe = filtered_universe(
        index,
        and_filters(params.filter, tenant_filter),
        code="invalid_search_filter",
        features=features,
    )
    sort = checks.parse_sort(params.sort or [])
    distinct = params.distinct if params.distinct is not None else settings.get("distinctAttribute")
    if params.distinct is not None:
        checks.check_distinct(index.uid, settings, params.distinct)
    if params.attributes_to_search_on is not None:
        checks.check_search_on(index.uid, settings, params.attributes_to_search_on)
    checks.check_sort(index.uid, settings, sort)
    return index.query(
        params.q,
        universe=universe,
        matching_strategy=params.matching_strategy,
        search_on=params.attributes_to_search_on,
        sort=sort,
        distinct=distinct,
        want=want,
        threshold=params.ranking_score_threshold,
        details=details,
    )


def semantic_query(
    index: Index,
    params: SearchParams,
    plan: semantic.Plan,
    *,
    tenant_filter: Any,
    features: Mapping[str, bool],
    window: Window,
) -> tuple[QueryResult, int]:
    """A semantic or hybrid search (see `engine.semantic`) and its `semanticHitCount`."""
    want = window.offset + window.limit
    details = params.show_ranking_score_details
    threshold = params.ranking_score_threshold
    if plan.semantic_only:
        # The keyword side only validates the request and gives the filtered candidates.
        base = replace(params, q=None, ranking_score_threshold=None)
        found = run_query(
            index, base, tenant_filter=tenant_filter, features=features, want=0, details=False
        )
        assert plan.vector is not None
        hits = semantic.ranked(
            index, plan.vector, plan.embedder, found.candidates, threshold=threshold,
            details=details, sort=checks.parse_sort(params.sort or []),
        )  # fmt: skip
        candidates = found.candidates
        if threshold is not None:
            candidates = {hit.internal_id for hit in hits}
        page = hits[window.offset : window.offset + window.limit]
        return QueryResult(hits, set(candidates), len(candidates), found.query_terms), len(page)
    keyword = run_query(
        index, params, tenant_filter=tenant_filter, features=features, want=want, details=details
    )
    top: list[RankedHit] = keyword.ranked[:want]
    if plan.vector is None or semantic.good_enough(top, want, plan.ratio):
        return keyword, 0
    universe = filtered_universe(
        index,
        and_filters(params.filter, tenant_filter),
        code="invalid_search_filter",
        features=features,
    )
    everything = index.all_internal() if universe is None else universe
    close = semantic.ranked(
        index, plan.vector, plan.embedder, everything, threshold=threshold, details=details,
        sort=checks.parse_sort(params.sort or []),
    )  # fmt: skip
    merged, count = semantic.mix(close[:want], top, plan.ratio, (window.offset, window.limit))
    # The threshold drops documents from the candidates of both halves.
    kept = everything if threshold is None else {hit.internal_id for hit in close}
    candidates = set(kept) | set(keyword.candidates)
    return QueryResult(merged, candidates, len(candidates), keyword.query_terms), count


def facet_order(settings: Mapping[str, Any], field: str) -> str:
    by = (settings.get("faceting") or {}).get("sortFacetValuesBy") or {}
    return str(by.get(field, by.get("*", "alpha")))


def compute_facets(
    index: Index, facets: list[str], candidates: Set[int]
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    settings = index.settings
    fields = checks.facet_fields(settings, facets, index.facets.fields())
    max_values = int(
        (settings.get("faceting") or {}).get("maxValuesPerFacet", DEFAULT_MAX_VALUES_PER_FACET)
    )
    distribution: dict[str, dict[str, int]] = {}
    stats: dict[str, dict[str, float]] = {}
    for field in sorted(fields):
        distribution[field] = index.facets.distribution(
            field, candidates, max_values=max_values, sort_by=facet_order(settings, field)
        )
        found = index.facets.stats(field, candidates)
        if found is not None:
            stats[field] = {"min": float(found[0]), "max": float(found[1])}
    return distribution, stats


def make_formatter(index: Index, params: SearchParams, result: QueryResult) -> HitFormatter:
    fmt = FormatSettings(
        highlight=tuple(params.attributes_to_highlight or ()),
        crop=tuple(params.attributes_to_crop or ()),
        crop_length=params.crop_length,
        crop_marker=params.crop_marker,
        pre_tag=params.highlight_pre_tag,
        post_tag=params.highlight_post_tag,
        show_matches_position=params.show_matches_position,
    )
    fields = list(index.field_distribution()) if fmt.highlight or fmt.crop else []

    def known(name: str) -> bool:
        return any(is_faceted_by(f, name) or is_faceted_by(name, f) for f in fields)

    return HitFormatter(
        index.settings,
        params.attributes_to_retrieve,
        fmt,
        result.query_terms,
        known,
        retrieve_vectors=params.retrieve_vectors,
    )


def build_hits(
    index: Index, params: SearchParams, result: QueryResult, window: Window
) -> list[dict[str, Any]]:
    """Only the hits of the requested page are materialized and formatted."""
    page = result.ranked[window.offset : window.offset + window.limit]
    if not page:
        return []
    formatter = make_formatter(index, params, result)
    geo = next((r for r in checks.parse_sort(params.sort or []) if r.geo_point), None)
    hits = []
    for ranked in page:
        document = index.document(ranked.internal_id)
        hit = formatter.make_hit(document)
        if geo is not None and geo.geo_point is not None:
            _insert_geo_distance(hit, document, geo.geo_point)
        if params.show_ranking_score:
            hit["_rankingScore"] = ranked.score
        if params.show_ranking_score_details and ranked.details is not None:
            hit["_rankingScoreDetails"] = ranked.details
        hits.append(hit)
    return hits


def _insert_geo_distance(
    hit: dict[str, Any], document: Mapping[str, Any], point: tuple[float, float]
) -> None:
    geo = document.get("_geo")
    if not isinstance(geo, dict):
        return
    try:
        lat, lng = float(geo["lat"]), float(geo["lng"])
    except (KeyError, TypeError, ValueError):
        return
    distance = round(haversine_m(point[0], point[1], lat, lng))
    formatted = hit.pop("_formatted", None)
    positions = hit.pop("_matchesPosition", None)
    hit["_geoDistance"] = distance
    if formatted is not None:
        hit["_formatted"] = formatted
    if positions is not None:
        hit["_matchesPosition"] = positions


def search(
    index: Index,
    body: Any,
    *,
    tenant_filter: Any = None,
    features: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    """POST /indexes/{uid}/search (GET converts its query string into the same body first)."""
    started = time.perf_counter()
    params = parse_search_body(body)
    return search_with_params(
        index, params, tenant_filter=tenant_filter, features=features or {}, started=started
    )


def search_with_params(
    index: Index,
    params: SearchParams,
    *,
    tenant_filter: Any,
    features: Mapping[str, bool],
    started: float,
) -> dict[str, Any]:
    check_unsupported(params, features)
    plan = semantic.plan(index, params, "invalid_search_embedder")
    window = Window.of(params, index.settings)
    semantic_hits: int | None = None
    if plan is None:
        result = run_query(
            index,
            params,
            tenant_filter=tenant_filter,
            features=features,
            want=window.offset + window.limit,
            details=params.show_ranking_score_details,
        )
    else:
        result, semantic_hits = semantic_query(
            index, params, plan, tenant_filter=tenant_filter, features=features, window=window
        )
    facets = None
    if params.facets is not None:
        facets = compute_facets(index, params.facets, result.candidates)
    response: dict[str, Any] = {
        "hits": build_hits(index, params, result, window),
        "query": params.q or "",
        "processingTimeMs": 0,
        **window.hits_info(params, result.total),
    }
    if facets is not None:
        response["facetDistribution"], response["facetStats"] = facets
    if semantic_hits is not None:
        response["semanticHitCount"] = semantic_hits
    response["requestUid"] = str(uuid.uuid4())
    elapsed_ms = (time.perf_counter() - started) * 1000
    response["processingTimeMs"] = int(elapsed_ms)
    if params.show_performance_details:
        response["performanceDetails"] = {"search": f"{elapsed_ms:.2f}ms"}
    return response
