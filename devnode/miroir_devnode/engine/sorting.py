"""Sort rules (the `sort` search parameter and custom `field:asc|desc` ranking rules).

Like milli, numbers come before strings in both directions, strings compare by their
normalized (trimmed, lowercased) form, and documents without a value come last. A
multi-valued field sorts by its smallest value ascending and its largest descending.
Sort verdicts order documents but carry no rank: they never change `_rankingScore`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .facets import haversine_m
from .ranking import Bucket, RuleFn, SortRule, Split
from .scoring import Detail


def custom_rule_field(rule: str) -> tuple[str, bool] | None:
    """`price:asc` -> ("price", True); None for the built-in rules."""
    for suffix, ascending in ((":asc", True), (":desc", False)):
        if rule.endswith(suffix) and len(rule) > len(suffix):
            return rule[: -len(suffix)], ascending
    return None


def _sort_choice(values: list[Any], ascending: bool) -> tuple[int, Any, Any] | None:
    """(group, order key, shown value): numbers before strings in both directions, like milli."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        number = min(numbers) if ascending else max(numbers)
        return 0, number if ascending else -number, number
    strings = [
        ("true" if v else "false") if isinstance(v, bool) else v
        for v in values
        if isinstance(v, str | bool)
    ]
    if not strings:
        return None
    keyed = sorted((s.strip().lower(), s) for s in strings)
    chosen = keyed[0] if ascending else keyed[-1]
    return 1, chosen[0], chosen[1]


SortedGroups = list[tuple[Any, Bucket]]  # (shown value, docs) best first


def _group(
    docs: Bucket, values: Callable[[int], list[Any] | None], ascending: bool
) -> SortedGroups:
    groups: dict[tuple[int, Any], tuple[Any, Bucket]] = {}
    for doc in docs:
        choice = _sort_choice(values(doc) or [], ascending)
        if choice is not None:
            group, key, shown = choice
            groups.setdefault((group, key), (shown, set()))[1].add(doc)
    numbers = sorted(k for k in groups if k[0] == 0)
    strings = sorted((k for k in groups if k[0] == 1), reverse=not ascending)
    return [groups[key] for key in (*numbers, *strings)]


def sort_split(
    rule: SortRule,
    column: dict[int, list[Any]],
    all_groups: Callable[[], SortedGroups],
) -> RuleFn:
    """Small buckets are grouped directly; large ones walk the whole column's groups
    (cached per index version) lazily, so a placeholder search stops after `limit` docs."""
    name = rule.name

    def split(bucket: Bucket, kept: tuple[int, ...]) -> Split:
        groups: Iterable[tuple[Any, Bucket]]
        if len(bucket) * 8 > len(column):
            groups = ((shown, bucket & docs) for shown, docs in all_groups())
        else:
            groups = _group(bucket, column.get, rule.ascending)
        left = len(bucket)
        for shown, docs in groups:
            if docs:
                yield (Detail("sort", 0, 0, (name, shown)),), docs, kept
                left -= len(docs)
                if not left:
                    return
        missing = bucket - column.keys()
        if missing:
            yield (Detail("sort", 0, 0, (name, None)),), missing, kept

    return split


def column_groups(column: dict[int, list[Any]], ascending: bool) -> SortedGroups:
    return _group(set(column), column.get, ascending)


def geo_split(rule: SortRule, point: Callable[[int], tuple[float, float] | None]) -> RuleFn:
    name = rule.name
    assert rule.geo_point is not None
    lat, lng = rule.geo_point

    def split(bucket: Bucket, kept: tuple[int, ...]) -> Split:
        groups: dict[float, Bucket] = {}
        shown: dict[float, dict[str, float]] = {}
        missing: Bucket = set()
        for doc in bucket:
            found = point(doc)
            if found is None:
                missing.add(doc)
                continue
            distance = haversine_m(lat, lng, found[0], found[1])
            groups.setdefault(distance, set()).add(doc)
            shown.setdefault(distance, {"lat": found[0], "lng": found[1]})
        for distance in sorted(groups, reverse=not rule.ascending):
            detail = Detail("geo", 0, 0, (name, shown[distance], distance))
            yield (detail,), groups[distance], kept
        if missing:
            yield (Detail("geo", 0, 0, (name, None, None)),), missing, kept

    return split
