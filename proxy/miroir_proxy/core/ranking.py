"""Sort keys that order hits from different nodes the way one node would.

Without ``sort`` a hit's ``_rankingScore`` is independent of the rest of the index, so
descending score is the global order. With ``sort`` the score ignores the sort rule, so
hits are compared rule by rule over ``_rankingScoreDetails`` in ranking-rule order:
relevancy rules by their score (higher first), sort rules by value the way milli's
``compare_sort_values`` does (numbers before strings in both directions, missing values
last), geo sorts by distance. Comparing per-rule scores lexicographically is what a node's
bucket sort does, so it is exact where the merged global score could round.

Keys are plain tuples so ``heapq.merge`` compares them in C; each is built once per hit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Hit = dict[str, Any]
SortKey = tuple[Any, ...]

_NUMBER, _STRING, _OTHER, _MISSING = 0, 1, 2, 3
# Appended to a descending string's negated code points so that a longer string sorts
# before its own prefix ("abc" before "ab" in descending order).
_PREFIX_SENTINEL = 1


def _descending_text(text: str) -> tuple[int, ...]:
    return (*(-ord(char) for char in text), _PREFIX_SENTINEL)


def sort_value_key(value: Any, ascending: bool) -> tuple[Any, ...]:
    """Position of one sort value; smaller sorts first."""
    if value is None:
        return (_MISSING,)
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, int | float):
        return (_NUMBER, value if ascending else -value)
    if isinstance(value, str):
        return (_STRING, value) if ascending else (_STRING, _descending_text(value))
    return (_OTHER,)


def _score(detail: Mapping[str, Any]) -> tuple[int, float]:
    return (_NUMBER, -float(detail.get("score", 0.0)))


def _similarity(detail: Mapping[str, Any]) -> tuple[int, float]:
    return (_NUMBER, -float(detail.get("similarity") or 0.0))


def _hidden(detail: Mapping[str, Any]) -> tuple[int]:
    return (_OTHER,)


def _geo(ascending: bool) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    def component(detail: Mapping[str, Any]) -> tuple[Any, ...]:
        distance = detail.get("distance")
        if distance is None:
            return (_MISSING,)
        return (_NUMBER, distance if ascending else -distance)

    return component


def _sort(ascending: bool) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    def component(detail: Mapping[str, Any]) -> tuple[Any, ...]:
        return sort_value_key(detail.get("value"), ascending)

    return component


def rule_component(name: str) -> Callable[[Mapping[str, Any]], Any]:
    """How to compare hits on the rule ``name`` of ``_rankingScoreDetails``."""
    if name.endswith((":asc", ":desc")):
        ascending = name.endswith(":asc")
        return _geo(ascending) if name.startswith("_geoPoint(") else _sort(ascending)
    if name.startswith("<hidden-rule-"):
        return _hidden
    if name == "vectorSort":
        return _similarity
    # words, typo, proximity, attribute(Rank|Position), exactness, skipped: higher wins.
    return _score


def details_key_function(sample: Mapping[str, Mapping[str, Any]]) -> Callable[[Hit], SortKey]:
    """Key over ``_rankingScoreDetails`` for every hit of a query shaped like ``sample``.

    All hits of one query carry the same rules, so the rule order and the comparison of
    each rule are worked out once, from one hit.
    """
    ordered = sorted(sample.items(), key=lambda item: item[1].get("order", 0))
    plan = [(name, rule_component(name)) for name, _ in ordered]
    empty: Mapping[str, Any] = {}

    def key(hit: Hit) -> SortKey:
        details = hit.get("_rankingScoreDetails") or empty
        return tuple([component(details.get(name, empty)) for name, component in plan])

    return key


def score_key(hit: Hit) -> float:
    return -float(hit.get("_rankingScore", 0.0))
