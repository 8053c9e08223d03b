"""Attribute patterns and document flattening shared by settings, facets and filters.

Meilisearch has two matching rules that look alike but differ: a plain string in
`filterableAttributes` ("legacy" rule) matches the field itself and every nested field
below it, while the `attributePatterns` of an object rule use wildcards and do not
extend to children. `matches_pattern` is the general-purpose union used for
displayed/searchable/facets patterns; `filter_rule_match` is the exact filter rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

GEO_FIELD = "_geo"


def is_faceted_by(field: str, facet: str) -> bool:
    """True when `field` is `facet` itself or one of its nested fields (`facet.x`)."""
    return field.startswith(facet) and (len(field) == len(facet) or field[len(facet)] == ".")


def wildcard_match(field: str, pattern: str) -> bool:
    """Meilisearch's `match_pattern`: `*`, `prefix*`, `*suffix`, `*middle*` or exact."""
    if pattern == "*":
        return True
    starts, ends = pattern.startswith("*"), pattern.endswith("*")
    if starts and ends:
        return pattern[1:-1] in field
    if starts:
        return field.endswith(pattern[1:])
    if ends:
        return field.startswith(pattern[:-1])
    return field == pattern


def matches_pattern(field: str, pattern: str) -> bool:
    """Wildcard match, or `field` nested below a plain `pattern` ("a" matches "a.b")."""
    return wildcard_match(field, pattern) or is_faceted_by(field, pattern)


def filter_rule_patterns(rule: str | Mapping[str, Any]) -> list[str]:
    """The patterns a `filterableAttributes` rule lists, as shown in error messages."""
    if isinstance(rule, str):
        return [rule]
    patterns = rule.get("attributePatterns") or []
    return [p for p in patterns if isinstance(p, str)]


def filter_rule_match(rule: str | Mapping[str, Any], field: str) -> bool:
    if isinstance(rule, str):
        return is_faceted_by(field, rule)
    return any(wildcard_match(field, p) for p in filter_rule_patterns(rule))


def filter_rule_features(rule: str | Mapping[str, Any]) -> tuple[bool, bool]:
    """(equality, comparison) enabled by a rule; a legacy string rule enables both."""
    if isinstance(rule, str):
        return True, True
    features = rule.get("features") or {}
    filt = features.get("filter") or {}
    return bool(filt.get("equality", True)), bool(filt.get("comparison", False))


def matching_filter_rule(
    rules: Sequence[str | Mapping[str, Any]], field: str
) -> tuple[int, tuple[bool, bool]] | None:
    """The first rule matching `field` (Meilisearch stops there) with its features."""
    for index, rule in enumerate(rules):
        if filter_rule_match(rule, field):
            return index, filter_rule_features(rule)
    return None


def filterable_patterns(rules: Sequence[str | Mapping[str, Any]]) -> list[str]:
    """Sorted, deduplicated patterns of the rules that enable filtering at all."""
    found: set[str] = set()
    for rule in rules:
        if any(filter_rule_features(rule)):
            found.update(filter_rule_patterns(rule))
    return sorted(found)


def flatten(doc: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Dotted path -> leaf scalar values; arrays are flattened and `null` kept as None.

    An empty array or object still yields its key (with no values) so that the
    field counts as present.
    """
    out: dict[str, list[Any]] = {}
    for path, value in iter_leaves(doc):
        bucket = out.setdefault(path, [])
        if not isinstance(value, list | dict):
            bucket.append(value)
    return out


def iter_leaves(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (path, value) for every scalar, and for every empty array/object."""
    for key, value in doc.items():
        path = f"{prefix}.{key}" if prefix else key
        yield from _iter_value(path, value)


def _iter_value(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        if value:
            yield from iter_leaves(value, path)
        else:
            yield path, value
    elif isinstance(value, list):
        if not value:
            yield path, value
        for item in value:
            yield from _iter_value(path, item)
    else:
        yield path, value
