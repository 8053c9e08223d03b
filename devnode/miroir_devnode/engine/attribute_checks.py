"""Search-time checks of attributes against the index settings, with Meilisearch's messages.

Errors raised while the engine executes a search carry the "Index `uid`: " prefix (sort,
distinct, attributesToSearchOn) and facet-distribution errors do not; that split follows
where Meilisearch raises each of them. Lists of allowed attributes hide the ones that are
not displayed and say so with `<..hidden-attributes>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from miroir_devnode.engine.patterns import (
    GEO_FIELD,
    filter_rule_match,
    filter_rule_patterns,
    filterable_patterns,
    is_faceted_by,
    matching_filter_rule,
)
from miroir_devnode.engine.ranking import SortRule
from miroir_devnode.errors import MeiliError

GEO_RESERVED = ("_geoDistance", "_geoPoint", "_geoRadius", "_geoBoundingBox")


def is_displayed(settings: Mapping[str, Any], field: str) -> bool:
    displayed = settings.get("displayedAttributes") or ["*"]
    return "*" in displayed or field in displayed


def _visible(settings: Mapping[str, Any], names: Iterable[str]) -> tuple[list[str], bool]:
    names = sorted(set(names))
    shown = [n for n in names if is_displayed(settings, n)]
    return shown, len(shown) != len(names)


def _listing(names: Sequence[str], hidden: bool) -> str:
    return ", ".join(names) + (", <..hidden-attributes>" if hidden else "")


def _rules(settings: Mapping[str, Any]) -> list[Any]:
    return list(settings.get("filterableAttributes") or [])


def is_filterable(settings: Mapping[str, Any], field: str) -> bool:
    match = matching_filter_rule(_rules(settings), field)
    return match is not None and any(match[1])


def facet_fields(
    settings: Mapping[str, Any], facets: Sequence[str], known: Iterable[str]
) -> list[str]:
    """The fields a `facets` parameter asks for; `*` means every filterable field of the index."""
    if "*" in facets:
        return sorted(f for f in known if is_filterable(settings, f))
    invalid = sorted({f for f in facets if not is_filterable(settings, f)})
    if not invalid:
        return list(dict.fromkeys(facets))
    raise MeiliError("invalid_search_facets", facet_error(settings, invalid))


def facet_error(settings: Mapping[str, Any], invalid: Sequence[str]) -> str:
    rules = _rules(settings)
    patterns = filterable_patterns(rules)
    if len(invalid) == 1:
        field = invalid[0]
        match = matching_filter_rule(rules, field)
        if match is not None:
            rule = match[0]
            detail = (
                f"Attribute `{field}` matched rule #{rule} in filterableAttributes, but this rule "
                f"does not enable filtering.\nHint: enable filtering in rule #{rule} by modifying "
                f"the features.filter object\nHint: prepend another rule matching `{field}` with "
                f"appropriate filter features before rule #{rule}"
            )
        elif not patterns:
            detail = (
                f"Attribute `{field}` is not filterable. This index does not have configured "
                "filterable attributes."
            )
        else:
            detail = (
                f"Attribute `{field}` is not filterable. Available filterable attributes "
                f"patterns are: `{', '.join(patterns)}`."
            )
    else:
        tail = (
            f"Available filterable attributes patterns are: `{', '.join(patterns)}`."
            if patterns
            else "This index does not have configured filterable attributes."
        )
        detail = f"Attributes `{', '.join(invalid)}` are not filterable. {tail}"
    return f"Invalid facet distribution: {detail}"


def check_distinct(uid: str, settings: Mapping[str, Any], field: str) -> None:
    rules = _rules(settings)
    match = matching_filter_rule(rules, field)
    if match is not None and any(match[1]):
        return
    patterns, hidden = _visible(settings, filterable_patterns(rules))
    if match is not None:
        rule = match[0]
        tail = (
            f"Note: this attribute matches rule #{rule} in filterableAttributes, but this rule "
            f"does not enable filtering.\nHint: enable filtering in rule #{rule} by adding "
            f"appropriate filter features.\nHint: prepend another rule matching {field} with "
            f"filter features before rule #{rule}"
        )
    elif not patterns and not hidden:
        tail = "This index does not have configured filterable attributes."
    else:
        tail = f"Available filterable attributes patterns are: `{_listing(patterns, hidden)}`."
    raise MeiliError(
        "invalid_search_distinct",
        f"Index `{uid}`: Attribute `{field}` is not filterable and thus, cannot be used as "
        f"distinct attribute. {tail}",
    )


def parse_sort(sort: Sequence[str]) -> list[SortRule]:
    """Syntax only; Meilisearch reports these before any engine error (and unprefixed)."""
    return [_parse_sort_rule(text) for text in sort]


def check_sort(uid: str, settings: Mapping[str, Any], rules: Sequence[SortRule]) -> None:
    sortable = list(settings.get("sortableAttributes") or [])
    for rule in rules:
        if not any(is_faceted_by(rule.field, s) for s in sortable):
            valid, hidden = _visible(settings, sortable)
            tail = (
                f"Available sortable attributes are: `{_listing(valid, hidden)}`."
                if sortable
                else "This index does not have configured sortable attributes."
            )
            raise MeiliError(
                "invalid_search_sort",
                f"Index `{uid}`: Attribute `{rule.field}` is not sortable. {tail}",
            )
    if rules and "sort" not in (settings.get("rankingRules") or []):
        raise MeiliError(
            "invalid_search_sort",
            f"Index `{uid}`: You must specify where `sort` is listed in the rankingRules setting "
            "to use the sort parameter at search time.",
        )


def _parse_sort_rule(text: str) -> SortRule:
    member, _, order = text.rpartition(":")
    if order not in ("asc", "desc"):
        raise _sort_error(
            "Invalid syntax for the sort parameter: expected expression ending by `:asc` or "
            f"`:desc`, found `{text}`."
        )
    ascending = order == "asc"
    if member.startswith("_geoPoint(") and member.endswith(")"):
        return SortRule(GEO_FIELD, ascending, _geo_point(member))
    if member == GEO_FIELD:
        raise _sort_error(
            f"`{member}` is a reserved keyword and thus can't be used as a sort expression. Use "
            "the _geoPoint(latitude, longitude) built-in rule to sort on _geo field coordinates."
        )
    if member in GEO_RESERVED or member.startswith(("_geoRadius(", "_geoBoundingBox(")):
        raise _sort_error(
            f"`{member}` is a reserved keyword and thus can't be used as a sort expression."
        )
    return SortRule(member, ascending)


def _geo_point(member: str) -> tuple[float, float]:
    lat_text, _, lng_text = member[len("_geoPoint(") : -1].partition(",")
    try:
        lat, lng = float(lat_text.strip()), float(lng_text.strip())
    except ValueError:
        raise _sort_error(
            "Invalid syntax for the geo parameter: expected expression formated like "
            f"`_geoPoint(latitude, longitude)` and ending by `:asc` or `:desc`, found `{member}`."
        ) from None
    if not -90 <= lat <= 90:
        raise _sort_error(
            f"Bad latitude `{lat_text.strip()}`. Latitude must be contained between -90 and 90 "
            "degrees. "
        )
    if not -180 <= lng <= 180:
        raise _sort_error(
            f"Bad longitude `{lng_text.strip()}`. Longitude must be contained between -180 and "
            "180 degrees. "
        )
    return lat, lng


def _sort_error(message: str) -> MeiliError:
    return MeiliError("invalid_search_sort", message)


def check_search_on(uid: str, settings: Mapping[str, Any], attributes: Sequence[str]) -> None:
    searchable = settings.get("searchableAttributes") or ["*"]
    if "*" in searchable:
        return
    for field in attributes:
        if field not in searchable:
            valid, hidden = _visible(settings, searchable)
            raise MeiliError(
                "invalid_search_attributes_to_search_on",
                f"Index `{uid}`: Attribute `{field}` is not searchable. Available searchable "
                f"attributes are: `{_listing(valid, hidden)}`.",
            )


def check_facet_searchable(settings: Mapping[str, Any], field: str) -> None:
    rules = _rules(settings)
    for position, rule in enumerate(rules):
        if filter_rule_match(rule, field):
            if _facet_search_enabled(rule):
                return
            raise MeiliError(
                "invalid_facet_search_facet_name",
                f"Attribute `{field}` is not facet-searchable. Note: this attribute matches rule "
                f"#{position} in filterableAttributes, but this rule does not enable facetSearch."
                f'\nHint: enable facetSearch in rule #{position} by adding `"facetSearch": true` '
                f"to the rule.\nHint: prepend another rule matching {field} with facetSearch: true "
                f"before rule #{position}",
            )
    enabled = [p for r in rules if _facet_search_enabled(r) for p in filter_rule_patterns(r)]
    valid, hidden = _visible(settings, enabled)
    advice = "To make it facet-searchable add it to the `filterableAttributes` index settings."
    if not valid and not hidden:
        tail = f"This index does not have configured facet-searchable attributes. {advice}"
    else:
        listing = _listing(valid, hidden)
        tail = f"Available facet-searchable attributes patterns are: `{listing}`. {advice}"
    raise MeiliError(
        "invalid_facet_search_facet_name",
        f"Attribute `{field}` is not facet-searchable. {tail}",
    )


def _facet_search_enabled(rule: Any) -> bool:
    if isinstance(rule, str):
        return True
    return bool((rule.get("features") or {}).get("facetSearch", False))
