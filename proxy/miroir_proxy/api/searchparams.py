"""`GET /indexes/{uid}/search` query strings turned into the equivalent POST body.

Conversion follows Meilisearch: comma-separated lists (a `_geoPoint(lat, lng):asc` sort
keeps its inner comma), integers, booleans, floats, `filter` parsed as JSON when it is
valid JSON, and `hybridEmbedder`/`hybridSemanticRatio` folded into `hybrid`. Anything the
proxy cannot convert exactly (an unknown parameter, a value that does not parse) raises
`NotUnderstood`, and a node answers the original query string with its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from miroir_proxy.dispatch.reads import NotUnderstood


def _integer(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise NotUnderstood
    return int(raw)


def _boolean(raw: str) -> bool:
    if raw not in ("true", "false"):
        raise NotUnderstood
    return raw == "true"


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError as e:
        raise NotUnderstood from e


def _text(raw: str) -> str:
    return raw


def _listed(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",")]


def _numbers(raw: str) -> list[float]:
    return [_number(item.strip()) for item in raw.split(",")]


def _filter(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def sort_rules(raw: str) -> list[str]:
    """Split a sort parameter on commas, keeping `_geoPoint(lat, lng):dir` whole: after a
    `_geoPoint(` part, parts join it until one ends the direction."""
    rules: list[str] = []
    inside_geo = False
    for part in [piece.strip() for piece in raw.strip('"').split(",")]:
        if inside_geo and not part.startswith("_geoPoint("):
            rules[-1] += "," + part
        else:
            rules.append(part)
        ends = part.endswith(("):asc", "):desc"))
        inside_geo = rules[-1].startswith("_geoPoint(") and not ends
    return rules


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "q": _text,
    "offset": _integer,
    "limit": _integer,
    "page": _integer,
    "hitsPerPage": _integer,
    "cropLength": _integer,
    "attributesToRetrieve": _listed,
    "attributesToCrop": _listed,
    "attributesToHighlight": _listed,
    "attributesToSearchOn": _listed,
    "facets": _listed,
    "locales": _listed,
    "vector": _numbers,
    "sort": sort_rules,
    "filter": _filter,
    "distinct": _text,
    "cropMarker": _text,
    "highlightPreTag": _text,
    "highlightPostTag": _text,
    "matchingStrategy": _text,
    "showMatchesPosition": _boolean,
    "showRankingScore": _boolean,
    "showRankingScoreDetails": _boolean,
    "showPerformanceDetails": _boolean,
    "retrieveVectors": _boolean,
    "rankingScoreThreshold": _number,
}


def search_body_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The POST search body equivalent to the GET query string `params`."""
    body: dict[str, Any] = {}
    hybrid: dict[str, Any] = {}
    for key, raw in params.items():
        if key == "hybridEmbedder":
            hybrid["embedder"] = raw
        elif key == "hybridSemanticRatio":
            hybrid["semanticRatio"] = _number(raw)
        else:
            convert = _CONVERTERS.get(key)
            if convert is None or key in body:
                raise NotUnderstood
            body[key] = convert(raw)
    if hybrid:
        if "embedder" not in hybrid:
            raise NotUnderstood
        body["hybrid"] = hybrid
    return body
