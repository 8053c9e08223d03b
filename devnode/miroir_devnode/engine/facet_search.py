"""POST /indexes/{uid}/facet-search: string facet values matching a prefix, counted over a search.

Like milli's `SearchForFacetValues`, the query is normalized like facet values and matched
as a prefix with a typo budget taken from `typoTolerance.minWordSizeForTypos` (none when
typos are disabled for the index or the attribute); values are visited in lexicographic
order until `maxValuesPerFacet` are found, then re-sorted by count when the attribute's
`sortFacetValuesBy` is `count`. Only string values take part, never numbers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from miroir_devnode.engine import attribute_checks as checks
from miroir_devnode.engine import semantic
from miroir_devnode.engine import validation as v
from miroir_devnode.engine.facets import normalize_facet
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.matching import prefix_distance
from miroir_devnode.engine.search import (
    DEFAULT_MAX_VALUES_PER_FACET,
    Window,
    check_unsupported,
    facet_order,
    run_query,
    semantic_query,
)
from miroir_devnode.engine.search_params import (
    SEARCH_FIELDS,
    Parser,
    SearchParams,
    parse_object,
)
from miroir_devnode.errors import MeiliError

_FACET_FIELDS: dict[str, tuple[str, str, Parser, bool]] = {
    "facetQuery": ("facet_query", "invalid_facet_search_query", v.check_str, True),
    "facetName": ("facet_name", "invalid_facet_search_facet_name", v.check_str, False),
    **{
        name: SEARCH_FIELDS[name]
        for name in (
            "q",
            "vector",
            "hybrid",
            "filter",
            "matchingStrategy",
            "attributesToSearchOn",
            "rankingScoreThreshold",
            "locales",
        )
    },
    "exhaustiveFacetCount": (
        "exhaustive_facet_count",
        "invalid_facet_search_exhaustive_facet_count",
        v.check_bool,
        True,
    ),
}


@dataclass(slots=True)
class FacetSearchRequest:
    facet_name: str
    facet_query: str | None
    params: SearchParams


def parse_facet_search(body: Any) -> FacetSearchRequest:
    parsed = parse_object(
        body,
        "",
        _FACET_FIELDS,
        required=("facetName",),
        missing_codes={"facetName": "missing_facet_search_facet_name"},
    )
    facet_query: str | None = parsed.pop("facet_query", None)
    facet_name: str = parsed.pop("facet_name")
    parsed.pop("exhaustive_facet_count", None)
    params = SearchParams(**{k: val for k, val in parsed.items() if val is not None})
    return FacetSearchRequest(facet_name, facet_query, params)


def facet_search(
    index: Index,
    request: FacetSearchRequest,
    *,
    tenant_filter: Any = None,
    features: Mapping[str, bool] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    features = features or {}
    check_unsupported(request.params, features)
    plan = semantic.plan(index, request.params, "invalid_search_embedder")
    settings = index.settings
    if settings.get("facetSearch") is False:
        raise MeiliError("facet_search_disabled", "The facet search is disabled for this index")
    if plan is None:
        result = run_query(
            index,
            request.params,
            tenant_filter=tenant_filter,
            features=features,
            want=0,
            details=False,
        )
    else:  # the facet values of what the hybrid search would find
        window = Window.of(request.params, settings)
        result, _ = semantic_query(
            index, request.params, plan, tenant_filter=tenant_filter, features=features,
            window=window,
        )  # fmt: skip
    checks.check_facet_searchable(settings, request.facet_name)
    hits = _facet_hits(index, request.facet_name, request.facet_query, result.candidates)
    return {
        "facetHits": hits,
        "facetQuery": request.facet_query,
        "processingTimeMs": int((time.perf_counter() - started) * 1000),
    }


def _typo_budget(settings: Mapping[str, Any], field: str, query: str) -> int:
    typo = settings.get("typoTolerance") or {}
    if not typo.get("enabled", True) or field in (typo.get("disableOnAttributes") or []):
        return 0
    sizes = typo.get("minWordSizeForTypos") or {}
    if len(query) < int(sizes.get("oneTypo", 5)):
        return 0
    return 1 if len(query) < int(sizes.get("twoTypos", 9)) else 2


def _facet_hits(
    index: Index, field: str, facet_query: str | None, candidates: Set[int]
) -> list[dict[str, Any]]:
    settings = index.settings
    max_values = int(
        (settings.get("faceting") or {}).get("maxValuesPerFacet", DEFAULT_MAX_VALUES_PER_FACET)
    )
    values = index.facets.string_values(field)
    query = normalize_facet(facet_query or "")
    budget = _typo_budget(settings, field, query) if query else 0
    by_count = facet_order(settings, field) == "count"
    # Without a query and ordered by count, the top counts win over the first values.
    collect_all = by_count and not query
    found: list[tuple[str, int]] = []
    for normalized in sorted(values):
        if len(found) >= max_values and not collect_all:
            break
        if (
            query
            and not normalized.startswith(query)
            and (
                budget == 0
                or len(normalized) < len(query) - budget
                or prefix_distance(query, normalized, budget) > budget
            )
        ):
            continue
        count = len(values[normalized] & candidates)
        if count:
            found.append((normalized, count))
    if by_count:
        found.sort(key=lambda item: -item[1])
    return [
        {"value": index.facets.display_value(field, normalized, candidates), "count": count}
        for normalized, count in found[:max_values]
    ]
