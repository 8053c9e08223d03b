"""POST /indexes/{uid}/fields: every field the index has seen, with what the settings make of
it (Meilisearch's `Field` of routes/indexes/fields.rs), filtered and paginated.

Fields come in the order the index first saw them (milli's field ids), including fields of
deleted documents. A field is displayed, searchable, sortable or distinct when it is, or is
nested below, an attribute the setting names (`*` names every field). Filterable features
are those of the first `filterableAttributes` rule matching the field (a plain attribute
name enables facet search, equality and comparison); `sortBy` is the field's facet value
order from `faceting.sortFacetValuesBy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from miroir_devnode.engine import validation as v
from miroir_devnode.engine.patterns import filter_rule_match, is_faceted_by, wildcard_match
from miroir_devnode.engine.sorting import custom_rule_field

_FILTER_FIELDS = (
    "attributePatterns",
    "displayed",
    "searchable",
    "sortable",
    "distinct",
    "rankingRule",
    "filterable",
)
_CODES = {
    "attributePatterns": "invalid_index_fields_filter_attribute_patterns",
    "displayed": "invalid_index_fields_filter_displayed",
    "searchable": "invalid_index_fields_filter_searchable",
    "sortable": "invalid_index_fields_filter_sortable",
    "distinct": "invalid_index_fields_filter_distinct",
    "rankingRule": "invalid_index_fields_filter_ranking_rule",
    "filterable": "invalid_index_fields_filter_filterable",
}


def parse_fields_request(body: Any) -> tuple[int, int, dict[str, Any]]:
    """(offset, limit, filter) of a request body; raises Meilisearch's deserr errors."""
    body = v.check_object("bad_request", "", body)
    offset, limit, wanted = 0, 20, {}
    for name, value in body.items():
        if name == "offset":
            offset = v.check_usize("invalid_index_offset", ".offset", value)
        elif name == "limit":
            limit = v.check_usize("invalid_index_limit", ".limit", value)
        elif name == "filter":
            if value is not None:
                wanted = _filter(value)
        else:
            raise v.unknown_field("", name, ["offset", "limit", "filter"])
    return offset, limit, wanted


def _filter(value: Any) -> dict[str, Any]:
    code = "invalid_index_fields_filter"
    body = v.check_object(code, ".filter", value)
    wanted: dict[str, Any] = {}
    for name, item in body.items():
        if name not in _FILTER_FIELDS:
            raise v.unknown_field(".filter", name, _FILTER_FIELDS, code)
        if item is None:
            continue
        where = f".filter.{name}"
        if name == "attributePatterns":
            wanted[name] = v.check_str_list(_CODES[name], where, item)
        else:
            wanted[name] = v.check_bool(_CODES[name], where, item)
    return wanted


def _named(field: str, names: Iterable[str]) -> bool:
    return any(name == "*" or is_faceted_by(field, name) for name in names)


def describe_field(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    ranking: dict[str, Any] = {"enabled": False}
    for rule in settings.get("rankingRules") or ():
        found = custom_rule_field(rule)
        if found is not None and found[0] == name:
            ranking = {"enabled": True, "order": "asc" if found[1] else "desc"}
            break
    facet_search = equality = comparison = False
    for rule in settings.get("filterableAttributes") or ():
        if filter_rule_match(rule, name):
            if isinstance(rule, str):
                facet_search = equality = comparison = True
            else:
                features = rule.get("features") or {}
                facet_search = bool(features.get("facetSearch", False))
                filters = features.get("filter") or {}
                equality = bool(filters.get("equality", True))
                comparison = bool(filters.get("comparison", False))
            break
    order = (settings.get("faceting") or {}).get("sortFacetValuesBy") or {}
    locales: list[str] = []
    for rule in settings.get("localizedAttributes") or ():
        if any(wildcard_match(name, p) for p in rule.get("attributePatterns") or ()):
            locales = list(rule.get("locales") or ())
            break
    distinct = settings.get("distinctAttribute")
    return {
        "name": name,
        "displayed": {"enabled": _named(name, settings.get("displayedAttributes") or ["*"])},
        "searchable": {"enabled": _named(name, settings.get("searchableAttributes") or ["*"])},
        "sortable": {"enabled": _named(name, settings.get("sortableAttributes") or ())},
        "distinct": {"enabled": isinstance(distinct, str) and is_faceted_by(name, distinct)},
        "rankingRule": ranking,
        "filterable": {
            "enabled": facet_search or equality or comparison,
            "sortBy": order.get(name, order.get("*", "alpha")),
            "facetSearch": facet_search,
            "equality": equality,
            "comparison": comparison,
        },
        "localized": {"locales": locales},
    }


def _kept(field: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    patterns = wanted.get("attributePatterns")
    if patterns is not None and not any(wildcard_match(field["name"], p) for p in patterns):
        return False
    return all(
        field[name]["enabled"] == value
        for name, value in wanted.items()
        if name != "attributePatterns"
    )


def list_fields(
    names: Iterable[str], settings: Mapping[str, Any], request: tuple[int, int, dict[str, Any]]
) -> dict[str, Any]:
    """The answer for a request `parse_fields_request` accepted."""
    offset, limit, wanted = request
    described = [describe_field(name, settings) for name in names]
    kept = [field for field in described if _kept(field, wanted)]
    return {
        "results": kept[offset : offset + limit],
        "offset": offset,
        "limit": limit,
        "total": len(kept),
    }
