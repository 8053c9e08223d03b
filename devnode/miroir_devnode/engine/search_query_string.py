"""GET /indexes/{uid}/search: the query string turned into the JSON body it stands for.

Values arrive as strings, so type errors read "Invalid value in parameter `x`: …" instead
of the body's "Invalid value type at `.x`: …"; lists are comma-separated and `sort` keeps
`_geoPoint(lat, lng):asc` whole. The resulting body then goes through the POST validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from miroir_devnode.engine import validation as v
from miroir_devnode.engine.search_params import (
    LOCALES,
    MATCHING_STRATEGIES,
    SEARCH_FIELDS,
    SEMANTIC_RATIO_MESSAGE,
    THRESHOLD_MESSAGE,
)
from miroir_devnode.errors import MeiliError

GET_PARAMETERS = (
    "q", "vector", "offset", "limit", "page", "hitsPerPage", "attributesToRetrieve",
    "retrieveVectors", "attributesToCrop", "cropLength", "attributesToHighlight", "filter",
    "sort", "distinct", "showMatchesPosition", "showRankingScore", "showRankingScoreDetails",
    "facets", "highlightPreTag", "highlightPostTag", "cropMarker", "matchingStrategy",
    "attributesToSearchOn", "hybridEmbedder", "hybridSemanticRatio", "rankingScoreThreshold",
    "locales",
)  # fmt: skip
_GET_INTS = ("offset", "limit", "page", "hitsPerPage", "cropLength")
_GET_BOOLS = (
    "retrieveVectors",
    "showMatchesPosition",
    "showRankingScore",
    "showRankingScoreDetails",
)
_GET_LISTS = (
    "attributesToRetrieve", "attributesToCrop", "attributesToHighlight", "facets",
    "attributesToSearchOn", "locales",
)  # fmt: skip


def _code_of(name: str) -> str:
    if name == "hybridEmbedder":
        return "invalid_search_embedder"
    if name == "hybridSemanticRatio":
        return "invalid_search_semantic_ratio"
    return SEARCH_FIELDS[name][1]


def query_string_to_body(query: Mapping[str, str]) -> dict[str, Any]:
    """Convert GET parameters into the POST body they stand for (errors worded for GET)."""
    body: dict[str, Any] = {}
    for name, raw in query.items():
        if name not in GET_PARAMETERS:
            raise v.unknown_parameter(name, GET_PARAMETERS)
        code = _code_of(name)
        if name in _GET_INTS:
            if not raw.isdigit():
                raise v.parameter_error(
                    code, name, f"could not parse `{raw}` as a positive integer"
                )
            body[name] = int(raw)
        elif name in _GET_BOOLS:
            if raw not in ("true", "false"):
                message = f"could not parse `{raw}` as a boolean, expected either `true` or `false`"
                raise v.parameter_error(code, name, message)
            body[name] = raw == "true"
        elif name == "locales":
            body[name] = _get_locales(code, name, raw)
        elif name in _GET_LISTS:
            body[name] = raw.split(",") if raw else []
        elif name == "vector":
            body[name] = _get_floats(code, name, raw)
        elif name == "filter":
            body[name] = _json_or_text(raw)
        elif name == "sort":
            body[name] = fix_sort_parameter(raw)
        elif name == "matchingStrategy":
            if raw not in MATCHING_STRATEGIES:
                raise v.unknown_parameter_value(code, name, raw, MATCHING_STRATEGIES)
            body[name] = raw
        elif name in ("rankingScoreThreshold", "hybridSemanticRatio"):
            body[name] = _get_unit_float(code, name, raw)
        else:
            body[name] = raw
    return _fold_hybrid(body)


def _get_locales(code: str, name: str, raw: str) -> list[str]:
    locales = raw.split(",") if raw else []
    for locale in locales:
        if locale not in LOCALES:
            accepted = ", ".join(sorted(LOCALES, key=lambda x: (len(x), x)))
            message = f"Unsupported locale `{locale}`, expected one of {accepted}"
            raise v.parameter_error(code, name, message)
    return locales


def _get_floats(code: str, name: str, raw: str) -> list[float]:
    try:
        return [float(part) for part in raw.split(",")] if raw else []
    except ValueError:
        raise v.parameter_error(code, name, f"could not parse `{raw}` as a number") from None


def _get_unit_float(code: str, name: str, raw: str) -> float:
    message = THRESHOLD_MESSAGE if name == "rankingScoreThreshold" else SEMANTIC_RATIO_MESSAGE
    try:
        number = float(raw)
    except ValueError:
        raise v.parameter_error(code, name, message) from None
    if not 0.0 <= number <= 1.0:
        raise v.parameter_error(code, name, message)
    return number


def _json_or_text(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _fold_hybrid(body: dict[str, Any]) -> dict[str, Any]:
    embedder = body.pop("hybridEmbedder", None)
    ratio = body.pop("hybridSemanticRatio", None)
    if embedder is None and ratio is not None:
        raise MeiliError(
            "invalid_search_hybrid_query",
            "`hybridEmbedder` is mandatory when `hybridSemanticRatio` is present",
        )
    if embedder is not None:
        body["hybrid"] = {"embedder": embedder, "semanticRatio": 0.5 if ratio is None else ratio}
    if "vector" in body and "hybrid" not in body:
        raise MeiliError(
            "missing_search_hybrid", "`hybridEmbedder` is mandatory when `vector` is present"
        )
    return body


def fix_sort_parameter(raw: str) -> list[str]:
    """Split `sort` on commas while keeping `_geoPoint(lat, lng):asc` whole, like Meilisearch."""
    rules: list[str] = []
    merging = False
    for part in (p.strip() for p in raw.strip('"').split(",")):
        if part.startswith("_geoPoint("):
            rules.append(part)
            merging = True
        elif merging and rules:
            rules[-1] += "," + part
            if part.endswith(("):desc", "):asc")):
                merging = False
        else:
            rules.append(part)
            merging = False
    return rules
