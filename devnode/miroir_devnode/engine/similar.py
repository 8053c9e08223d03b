"""GET/POST /indexes/{uid}/similar: the documents closest to one document's embeddings.

Checks run in Meilisearch's order: the body, the index, the embedder, the id, the filter.
Ranking is `engine.semantic.similar_documents` (milli's `Similar`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from miroir_devnode.documents import invalid_id, normalize_id
from miroir_devnode.engine import semantic
from miroir_devnode.engine import validation as v
from miroir_devnode.engine.filtering import and_filters
from miroir_devnode.engine.formatting import FormatSettings, HitFormatter
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.search import DEFAULT_MAX_TOTAL_HITS, filtered_universe
from miroir_devnode.engine.search_params import THRESHOLD_MESSAGE, Parser, parse_object
from miroir_devnode.errors import MeiliError


def _threshold(code: str, path: str, value: Any) -> float:
    number = v.check_float(code, path, value)
    if not 0.0 <= number <= 1.0:
        raise v.value_error(code, path, THRESHOLD_MESSAGE)
    return number


def _any(code: str, path: str, value: Any) -> Any:
    return value


_FIELDS: dict[str, tuple[str, str, Parser, bool]] = {
    "id": ("id", "invalid_similar_id", _any, False),
    "offset": ("offset", "invalid_similar_offset", v.check_usize, False),
    "limit": ("limit", "invalid_similar_limit", v.check_usize, False),
    "filter": ("filter", "invalid_similar_filter", _any, True),
    "embedder": ("embedder", "invalid_similar_embedder", v.check_str, False),
    "attributesToRetrieve": (
        "attributesToRetrieve",
        "invalid_similar_attributes_to_retrieve",
        v.check_str_list,
        True,
    ),
    "retrieveVectors": ("retrieveVectors", "invalid_similar_retrieve_vectors", v.check_bool, False),
    "showRankingScore": (
        "showRankingScore",
        "invalid_similar_show_ranking_score",
        v.check_bool,
        False,
    ),
    "showRankingScoreDetails": (
        "showRankingScoreDetails",
        "invalid_similar_show_ranking_score_details",
        v.check_bool,
        False,
    ),
    "showPerformanceDetails": (
        "showPerformanceDetails",
        "invalid_similar_show_performance_details",
        v.check_bool,
        False,
    ),
    "rankingScoreThreshold": (
        "rankingScoreThreshold",
        "invalid_similar_ranking_score_threshold",
        _threshold,
        True,
    ),
}
_GET_INTS = ("offset", "limit")
_GET_BOOLS = (
    "retrieveVectors",
    "showRankingScore",
    "showRankingScoreDetails",
    "showPerformanceDetails",
)


def parse_similar(body: Any) -> dict[str, Any]:
    """Validate a similar-documents request; returns its fields."""
    return parse_object(body, "", _FIELDS, required=("id", "embedder"))


def similar(
    index: Index,
    query: Mapping[str, Any],
    *,
    tenant_filter: Any,
    features: Mapping[str, bool],
    started: float,
) -> dict[str, Any]:
    """The answer of a validated similar-documents request on `index`."""
    name = str(query["embedder"])
    if name not in (index.settings.get("embedders") or {}):
        raise missing_embedder(name)
    doc_id = normalize_id(query["id"])
    if doc_id is None:
        raise MeiliError("invalid_similar_id", f"Invalid value at `.id`: {invalid_id(query['id'])}")
    target = index.internal_id(doc_id)
    if target is None:
        raise MeiliError("not_found_similar_id", f"Document `{doc_id}` not found.")
    universe = filtered_universe(
        index,
        and_filters(query.get("filter"), tenant_filter),
        code="invalid_similar_filter",
        features=features,
    )
    details = bool(query.get("showRankingScoreDetails"))
    offset = int(query.get("offset") or 0)
    limit = 20 if query.get("limit") is None else int(query["limit"])
    hits, candidates = semantic.similar_documents(
        index,
        target,
        name,
        universe,
        page=(offset, limit),
        threshold=query.get("rankingScoreThreshold"),
        details=details,
    )
    formatter = HitFormatter(
        index.settings,
        query.get("attributesToRetrieve"),
        FormatSettings(),
        None,
        lambda _name: False,
        retrieve_vectors=bool(query.get("retrieveVectors")),
    )
    shown = []
    for ranked in hits:
        hit = formatter.make_hit(index.document(ranked.internal_id))
        if query.get("showRankingScore"):
            hit["_rankingScore"] = ranked.score
        if details:
            hit["_rankingScoreDetails"] = ranked.details
        shown.append(hit)
    pagination = index.settings.get("pagination") or {}
    max_total = int(pagination.get("maxTotalHits", DEFAULT_MAX_TOTAL_HITS))
    elapsed_ms = (time.perf_counter() - started) * 1000
    response: dict[str, Any] = {
        "hits": shown,
        "id": doc_id,
        "processingTimeMs": int(elapsed_ms),
        "limit": limit,
        "offset": offset,
        "estimatedTotalHits": min(candidates, max_total),
    }
    if query.get("showPerformanceDetails"):
        response["performanceDetails"] = {"similar": f"{elapsed_ms:.2f}ms"}
    return response


def missing_embedder(name: str) -> MeiliError:
    return MeiliError("invalid_similar_embedder", f"Cannot find embedder with name `{name}`.")


def similar_query_to_body(query: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, raw in query.items():
        if name not in _FIELDS:
            raise v.unknown_parameter(name, list(_FIELDS))
        code = _FIELDS[name][1]
        if name in _GET_INTS:
            if not raw.isdigit():
                message = f"could not parse `{raw}` as a positive integer"
                raise v.parameter_error(code, name, message)
            body[name] = int(raw)
        elif name in _GET_BOOLS:
            if raw not in ("true", "false"):
                message = f"could not parse `{raw}` as a boolean, expected either `true` or `false`"
                raise v.parameter_error(code, name, message)
            body[name] = raw == "true"
        elif name == "attributesToRetrieve":
            body[name] = raw.split(",") if raw else []
        elif name == "rankingScoreThreshold":
            try:
                body[name] = float(raw)
            except ValueError:
                raise v.parameter_error(code, name, THRESHOLD_MESSAGE) from None
        else:
            body[name] = raw
    for required in ("id", "embedder"):
        if required not in body:
            raise MeiliError("bad_request", f"Missing parameter `{required}`")
    return body
