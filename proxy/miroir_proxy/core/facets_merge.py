"""Merging facet distributions, facet stats and facet-search hits from several nodes.

Each node counts only the shards it was asked for, so counts add up. A node renders a
string facet value with the first original spelling it met, and two nodes may meet
different spellings of one normalized value ("Blue", "blue"), so values are summed per
normalized form and keep the first spelling seen in node order.

Value order follows one node: in ``alpha`` order numbers come first (numerically), then
strings by their normalized form; in ``count`` order the highest count first, ties in
alpha order. Truncation to ``maxValuesPerFacet`` happens after the merge. With alpha
order that is exact: a value among the global first N is among the first N of every node
that has it. With count order a value just outside a node's top N may be missing there
(the usual distributed top-k limit); the proxy should ask nodes for more values than it
returns to keep that error away from the page the client sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

FacetDistribution = dict[str, dict[str, int]]
FacetStats = dict[str, dict[str, float]]


def normalize_facet_value(value: str) -> str:
    return value.strip().lower()


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def alpha_key(value: str) -> tuple[int, float, str]:
    number = _number(value)
    if number is not None:
        return (0, number, "")
    return (1, 0.0, normalize_facet_value(value))


def order_facet_values(counts: Mapping[str, int], order: str, max_values: int) -> dict[str, int]:
    if order == "count":
        ranked = sorted(counts.items(), key=lambda item: (-item[1], alpha_key(item[0])))
    else:
        ranked = sorted(counts.items(), key=lambda item: alpha_key(item[0]))
    return dict(ranked[:max_values])


def facet_order(sort_facet_values_by: Mapping[str, str], facet: str) -> str:
    return sort_facet_values_by.get(facet) or sort_facet_values_by.get("*") or "alpha"


def sum_facet_counts(
    distributions: Iterable[Mapping[str, Mapping[str, int]]],
) -> dict[str, dict[str, int]]:
    """Counts per facet and value, summed over answers; values keyed by first spelling."""
    merged: dict[str, dict[str, int]] = {}
    spelling: dict[str, dict[str, str]] = {}
    for distribution in distributions:
        for facet, values in distribution.items():
            counts = merged.setdefault(facet, {})
            seen = spelling.setdefault(facet, {})
            for value, count in values.items():
                normalized = normalize_facet_value(value)
                original = seen.setdefault(normalized, value)
                counts[original] = counts.get(original, 0) + count
    return merged


def merge_facet_distributions(
    distributions: Iterable[Mapping[str, Mapping[str, int]]],
    sort_facet_values_by: Mapping[str, str],
    max_values_per_facet: int,
) -> FacetDistribution:
    merged = sum_facet_counts(distributions)
    return {
        facet: order_facet_values(
            counts, facet_order(sort_facet_values_by, facet), max_values_per_facet
        )
        for facet, counts in sorted(merged.items())
    }


def merge_facet_stats(all_stats: Iterable[Mapping[str, Mapping[str, float]]]) -> FacetStats:
    merged: FacetStats = {}
    for stats in all_stats:
        for facet, bounds in stats.items():
            current = merged.get(facet)
            if current is None:
                merged[facet] = {"min": bounds["min"], "max": bounds["max"]}
            else:
                current["min"] = min(current["min"], bounds["min"])
                current["max"] = max(current["max"], bounds["max"])
    return dict(sorted(merged.items()))


def merge_facet_hits(
    answers: Sequence[Sequence[Mapping[str, Any]]],
    order: str,
    max_values: int,
) -> list[dict[str, Any]]:
    """Merge facet-search ``facetHits`` lists: sum counts per value, re-order, truncate."""
    counts: dict[str, int] = {}
    spelling: dict[str, str] = {}
    for hits in answers:
        for hit in hits:
            value = str(hit["value"])
            original = spelling.setdefault(normalize_facet_value(value), value)
            counts[original] = counts.get(original, 0) + int(hit["count"])
    ordered = order_facet_values(counts, order, max_values)
    return [{"value": value, "count": count} for value, count in ordered.items()]
