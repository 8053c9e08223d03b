"""GET/POST /indexes/{uid}/similar: validated like Meilisearch, then refused for lack of embedders.

The devnode never configures embedders, so every well-formed request ends with the error
Meilisearch gives for an unknown embedder; malformed ones get the usual field errors first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from miroir_devnode.engine import validation as v
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


def parse_similar(body: Any) -> str:
    """Validate a similar-documents request; returns the embedder it names."""
    return str(parse_object(body, "", _FIELDS, required=("id", "embedder"))["embedder"])


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
