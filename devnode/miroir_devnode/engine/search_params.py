"""Search request parameters: the JSON body, validated like Meilisearch.

Field lists are in the order of Meilisearch's request structs because that order is what
the "expected one of …" messages print. `offset`/`limit` stay None when absent so that
multi-search can tell "not given" from "given the default" (federated queries reject any
pagination key, even `limit: 20`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from miroir_devnode.engine import validation as v

DEFAULT_LIMIT = 20
MATCHING_STRATEGIES = ("last", "all", "frequency")
THRESHOLD_MESSAGE = (
    "the value of `rankingScoreThreshold` is invalid, expected a float between `0.0` and `1.0`."
)
SEMANTIC_RATIO_MESSAGE = (
    "the value of `semanticRatio` is invalid, expected a float between `0.0` and `1.0`."
)
WEIGHT_MESSAGE = "the value of `weight` is invalid, expected a positive float (>= 0.0)."

Parser = Callable[[str, str, Any], Any]

_LOCALE_PAIRS = (  # noqa: SIM905 - a list literal would take 140 lines
    "af afr ak aka am amh ar ara az aze be bel bn ben bg bul ca cat cs ces da dan de deu el ell "
    "en eng eo epo et est fi fin fr fra gu guj he heb hi hin hr hrv hu hun hy hye id ind it ita "
    "jv jav ja jpn kn kan ka kat km khm ko kor la lat lv lav lt lit ml mal mr mar mk mkd my mya "
    "ne nep nl nld nb nob or ori pa pan fa pes pl pol pt por ro ron ru rus si sin sk slk sl slv "
    "sn sna es spa sr srp sv swe ta tam te tel tl tgl th tha tk tuk tr tur uk ukr ur urd uz uzb "
    "vi vie yi yid zh zho zu zul cy cym"
).split()
# Meilisearch's `Locale` enum order: every ISO 639-1 code, then every ISO 639-3 code, then cmn.
LOCALES = (*_LOCALE_PAIRS[0::2], *_LOCALE_PAIRS[1::2], "cmn")


@dataclass(slots=True)
class SearchParams:
    q: str | None = None
    offset: int | None = None
    limit: int | None = None
    page: int | None = None
    hits_per_page: int | None = None
    attributes_to_retrieve: list[str] | None = None
    attributes_to_crop: list[str] | None = None
    crop_length: int = 10
    crop_marker: str = "…"
    attributes_to_highlight: list[str] | None = None
    highlight_pre_tag: str = "<em>"
    highlight_post_tag: str = "</em>"
    show_matches_position: bool = False
    filter: Any = None
    sort: list[str] | None = None
    distinct: str | None = None
    facets: list[str] | None = None
    matching_strategy: str = "last"
    attributes_to_search_on: list[str] | None = None
    ranking_score_threshold: float | None = None
    locales: list[str] | None = None
    hybrid: dict[str, Any] | None = None
    vector: list[float] | None = None
    retrieve_vectors: bool = False
    media: Any = None
    personalize: Any = None
    use_network: bool | None = None
    show_ranking_score: bool = False
    show_ranking_score_details: bool = False
    show_performance_details: bool | None = None
    index_uid: str | None = None
    federation_options: dict[str, Any] | None = None
    present: set[str] = field(default_factory=set)

    @property
    def is_page_mode(self) -> bool:
        return self.page is not None or self.hits_per_page is not None


def _strategy(code: str, path: str, value: Any) -> str:
    text = v.check_str(code, path, value)
    if text not in MATCHING_STRATEGIES:
        raise v.unknown_value(code, path, text, MATCHING_STRATEGIES)
    return text


def _locales(code: str, path: str, value: Any) -> list[str]:
    for position, locale in enumerate(v.check_str_list(code, path, value)):
        if locale not in LOCALES:
            raise v.unknown_value(code, f"{path}[{position}]", locale, LOCALES)
    return list(value)


def _unit_float(message: str) -> Parser:
    def parse(code: str, path: str, value: Any) -> float:
        number = v.check_float(code, path, value)
        if not 0.0 <= number <= 1.0:
            raise v.value_error(code, path, message)
        return number

    return parse


def _hybrid(code: str, path: str, value: Any) -> dict[str, Any]:
    fields: dict[str, tuple[str, str, Parser, bool]] = {
        "semanticRatio": (
            "semanticRatio",
            "invalid_search_semantic_ratio",
            _unit_float(SEMANTIC_RATIO_MESSAGE),
            False,
        ),
        "embedder": ("embedder", "invalid_search_embedder", v.check_str, False),
    }
    parsed = parse_object(value, path, fields, code=code, required=("embedder",))
    parsed.setdefault("semanticRatio", 0.5)
    return parsed


def _weight(code: str, path: str, value: Any) -> float:
    number = v.check_float(code, path, value)
    if number < 0:
        raise v.value_error(code, path, WEIGHT_MESSAGE)
    return number


def _federation_options(code: str, path: str, value: Any) -> dict[str, Any]:
    fields: dict[str, tuple[str, str, Parser, bool]] = {
        "weight": ("weight", "invalid_multi_search_weight", _weight, False),
        "remote": ("remote", "invalid_multi_search_remote", v.check_str, True),
        "queryPosition": (
            "queryPosition",
            "invalid_multi_search_query_position",
            v.check_usize,
            True,
        ),
    }
    return parse_object(value, path, fields, code=code)


def _anything(code: str, path: str, value: Any) -> Any:
    return value


# name -> (attribute, error code, parser, accepts null)
SEARCH_FIELDS: dict[str, tuple[str, str, Parser, bool]] = {
    "q": ("q", "invalid_search_q", v.check_str, True),
    "offset": ("offset", "invalid_search_offset", v.check_usize, False),
    "limit": ("limit", "invalid_search_limit", v.check_usize, False),
    "page": ("page", "invalid_search_page", v.check_usize, True),
    "hitsPerPage": ("hits_per_page", "invalid_search_hits_per_page", v.check_usize, True),
    "attributesToRetrieve": (
        "attributes_to_retrieve",
        "invalid_search_attributes_to_retrieve",
        v.check_str_list,
        True,
    ),
    "attributesToCrop": (
        "attributes_to_crop",
        "invalid_search_attributes_to_crop",
        v.check_str_list,
        True,
    ),
    "cropLength": ("crop_length", "invalid_search_crop_length", v.check_usize, False),
    "cropMarker": ("crop_marker", "invalid_search_crop_marker", v.check_str, False),
    "attributesToHighlight": (
        "attributes_to_highlight",
        "invalid_search_attributes_to_highlight",
        v.check_str_list,
        True,
    ),
    "highlightPreTag": (
        "highlight_pre_tag",
        "invalid_search_highlight_pre_tag",
        v.check_str,
        False,
    ),
    "highlightPostTag": (
        "highlight_post_tag",
        "invalid_search_highlight_post_tag",
        v.check_str,
        False,
    ),
    "showMatchesPosition": (
        "show_matches_position",
        "invalid_search_show_matches_position",
        v.check_bool,
        False,
    ),
    "filter": ("filter", "invalid_search_filter", _anything, True),
    "sort": ("sort", "invalid_search_sort", v.check_str_list, True),
    "distinct": ("distinct", "invalid_search_distinct", v.check_str, True),
    "facets": ("facets", "invalid_search_facets", v.check_str_list, True),
    "matchingStrategy": ("matching_strategy", "invalid_search_matching_strategy", _strategy, False),
    "attributesToSearchOn": (
        "attributes_to_search_on",
        "invalid_search_attributes_to_search_on",
        v.check_str_list,
        True,
    ),
    "rankingScoreThreshold": (
        "ranking_score_threshold",
        "invalid_search_ranking_score_threshold",
        _unit_float(THRESHOLD_MESSAGE),
        True,
    ),
    "locales": ("locales", "invalid_search_locales", _locales, True),
    "hybrid": ("hybrid", "invalid_search_hybrid_query", _hybrid, True),
    "vector": ("vector", "invalid_search_vector", v.check_float_list, True),
    "retrieveVectors": ("retrieve_vectors", "invalid_search_retrieve_vectors", v.check_bool, False),
    "media": ("media", "invalid_search_media", _anything, True),
    "personalize": ("personalize", "invalid_search_personalize", _anything, True),
    "useNetwork": ("use_network", "invalid_search_use_network", v.check_bool, True),
    "showRankingScore": (
        "show_ranking_score",
        "invalid_search_show_ranking_score",
        v.check_bool,
        False,
    ),
    "showRankingScoreDetails": (
        "show_ranking_score_details",
        "invalid_search_show_ranking_score_details",
        v.check_bool,
        False,
    ),
    "showPerformanceDetails": (
        "show_performance_details",
        "invalid_search_show_performance_details",
        v.check_bool,
        False,
    ),
}

# Multi-search queries carry the index uid first, federation options last, and accept null
# for the pagination keys and showPerformanceDetails (they are `Option`s there).
_MULTI_FIELDS: dict[str, tuple[str, str, Parser, bool]] = {
    "indexUid": ("index_uid", "invalid_index_uid", v.check_str, False),
    **SEARCH_FIELDS,
    "federationOptions": ("federation_options", "bad_request", _federation_options, True),
}
for _name in ("offset", "limit", "showPerformanceDetails"):
    _attr, _code, _parser, _ = _MULTI_FIELDS[_name]
    _MULTI_FIELDS[_name] = (_attr, _code, _parser, True)


def parse_object(
    value: Any,
    path: str,
    fields: Mapping[str, tuple[str, str, Parser, bool]],
    *,
    code: str = "bad_request",
    required: tuple[str, ...] = (),
    missing_codes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate a JSON object against `fields`, in the client's key order, like deserr."""
    body = v.check_object(code, path, value)
    out: dict[str, Any] = {}
    accepted = list(fields)
    for key, item in body.items():
        spec = fields.get(key)
        if spec is None:
            raise v.unknown_field(path, key, accepted, code)
        attr, field_code, parser, nullable = spec
        out[attr] = None if item is None and nullable else parser(field_code, f"{path}.{key}", item)
    for name in required:
        if fields[name][0] not in out:
            raise v.missing_field((missing_codes or {}).get(name, code), path, name)
    return out


def parse_search_body(body: Any, path: str = "", *, multi: bool = False) -> SearchParams:
    fields = _MULTI_FIELDS if multi else SEARCH_FIELDS
    required = ("indexUid",) if multi else ()
    missing = {"indexUid": "missing_index_uid"}
    parsed = parse_object(body, path, fields, required=required, missing_codes=missing)
    params = SearchParams(**{k: val for k, val in parsed.items() if val is not None})
    params.present = {k for k in body if body[k] is not None}
    return params
