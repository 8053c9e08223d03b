"""Meilisearch filters: parsing the JSON `filter` value, checking it, evaluating it.

Evaluation is set algebra over the FacetIndex postings, scoped to a `universe` of doc
ids: every leaf is intersected with it and `NOT`/`!=`/`NOT IN` are complements within
it. An `AND` narrows the universe for its next operands, as Meilisearch does.
Comparisons follow Meilisearch's semantics, which surprise people: `<`, `>` and `TO`
match numbers numerically when the bound parses as a number *and* strings
lexicographically on their normalized form.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, KeysView, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from miroir_devnode.engine.facets import FacetIndex, format_number, haversine_m, normalize_facet
from miroir_devnode.engine.filter_parser import parse_expression
from miroir_devnode.engine.filter_syntax import (
    And,
    Cond,
    GeoBox,
    GeoRadius,
    In,
    Node,
    Not,
    Or,
    SyntaxFailure,
    Token,
    render_error,
)
from miroir_devnode.engine.patterns import (
    GEO_FIELD,
    filter_rule_features,
    filterable_patterns,
    matching_filter_rule,
)

Rule = str | Mapping[str, Any]

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_COMPARISON_OPS = frozenset({"<", "<=", ">", ">=", "TO"})
_OPERATOR_NAMES = {"NULL": "IS NULL", "EMPTY": "IS EMPTY"}
_METRES_PER_DEGREE = 6371e3 * math.pi / 180


class FilterError(Exception):
    """A client error in a filter; `str()` is Meilisearch's text without the index prefix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldUse:
    attribute: str
    operator: str
    family: str  # "equality", "comparison" or "geo"


def parse_filter(value: object) -> Filter | None:
    """Parse the JSON `filter` parameter: a string, or an AND-array of strings/OR-arrays."""
    if value is None:
        return None
    if isinstance(value, str):
        root = _parse_string(value)
    elif isinstance(value, list):
        root = _parse_array(value)
    else:
        raise FilterError(_invalid_expression(("String", "Array"), value))
    return None if root is None else Filter(root)


def and_filters(*values: object) -> object:
    """Combine raw filter values with AND (user filter AND tenant-token rule...)."""
    present = [v for v in values if v is not None]
    if len(present) <= 1:
        return present[0] if present else None
    combined: list[object] = []
    for value in present:
        combined.extend(value if isinstance(value, list) else [value])
    return combined


def _parse_string(text: str) -> Node | None:
    try:
        return parse_expression(text)
    except SyntaxFailure as failure:
        raise FilterError(str(failure)) from None


def _parse_array(items: list[Any]) -> Node | None:
    ands: list[Node] = []
    for item in items:
        if isinstance(item, str):
            node = _parse_string(item)
            if node is not None:
                ands.append(node)
        elif isinstance(item, list):
            ors: list[Node] = []
            for sub in item:
                if not isinstance(sub, str):
                    raise FilterError(_invalid_expression(("String",), sub))
                node = _parse_string(sub)
                if node is not None:
                    ors.append(node)
            if ors:
                ands.append(ors[0] if len(ors) == 1 else Or(tuple(ors)))
        else:
            raise FilterError(_invalid_expression(("String", "[String]"), item))
    if not ands:
        return None
    return ands[0] if len(ands) == 1 else And(tuple(ands))


def _invalid_expression(expected: Sequence[str], found: object) -> str:
    shown = json.dumps(found, separators=(",", ":"), ensure_ascii=False)
    kinds = ", ".join(expected)
    return f"Invalid syntax for the filter parameter: `expected {kinds}, found: {shown}`."


class Filter:
    """A parsed filter; immutable and reusable across searches."""

    __slots__ = ("root",)

    def __init__(self, root: Node) -> None:
        self.root = root

    def fields(self) -> list[FieldUse]:
        uses: list[FieldUse] = []
        for node in _walk(self.root):
            if isinstance(node, Cond):
                family = "comparison" if node.op in _COMPARISON_OPS else "equality"
                uses.append(FieldUse(node.fid.value, _OPERATOR_NAMES.get(node.op, node.op), family))
            elif isinstance(node, In):
                uses.append(FieldUse(node.fid.value, "IN", "equality"))
            elif isinstance(node, GeoRadius | GeoBox):
                name = "_geoRadius" if isinstance(node, GeoRadius) else "_geoBoundingBox"
                uses.append(FieldUse(GEO_FIELD, name, "geo"))
        return uses

    def uses_contains(self) -> bool:
        """True when CONTAINS or STARTS WITH appear (gated by the `containsFilter` feature)."""
        return any(
            isinstance(n, Cond) and n.op in ("CONTAINS", "STARTS WITH") for n in _walk(self.root)
        )

    def check_filterable(self, filterable: Sequence[Rule]) -> None:
        """Raise FilterError as Meilisearch does when `filterableAttributes` forbids a part."""
        rules = list(filterable)
        for node in _walk(self.root):
            if isinstance(node, Cond | In):
                match = matching_filter_rule(rules, node.fid.value)
                if match is None or not any(match[1]):
                    raise FilterError(_not_filterable(node.fid.value, node.fid, rules))
        for node in _walk(self.root):
            if isinstance(node, GeoRadius | GeoBox):
                _check_geo(node, rules)
            elif isinstance(node, Cond | In):
                _check_operator(node, rules)

    def evaluate(self, facets: FacetIndex, universe: AbstractSet[int]) -> set[int]:
        """Ids of `universe` matching the filter."""
        # Sets and dict key views do set algebra in C; anything else is copied once.
        base = universe if isinstance(universe, set | frozenset | KeysView) else set(universe)
        result = _eval(self.root, facets, base)
        return result if type(result) is set else set(result)


def _walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, Not):
        yield from _walk(node.child)
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from _walk(child)


def _not_filterable(attribute: str, token: Token, rules: Sequence[Rule]) -> str:
    patterns = filterable_patterns(rules)
    if patterns:
        listed = ", ".join(f"`{p}`" for p in patterns)
        detail = f"Available filterable attribute patterns are: {listed}."
    else:
        detail = "This index does not have configured filterable attributes."
    return _at(f"Attribute `{attribute}` is not filterable. {detail}", token)


def _check_operator(node: Cond | In, rules: Sequence[Rule]) -> None:
    if isinstance(node, In):
        if not node.values:
            return
        operator, family = "=", "equality"
    else:
        operator = _OPERATOR_NAMES.get(node.op, node.op)
        family = "comparison" if node.op in _COMPARISON_OPS else "equality"
        if node.op in ("NULL", "EMPTY", "EXISTS", "CONTAINS", "STARTS WITH"):
            return
    match = matching_filter_rule(rules, node.fid.value)
    if match is None:
        return
    index, (equality, comparison) = match
    if equality if family == "equality" else comparison:
        return
    allowed = ["OR", "AND", "NOT"]
    allowed += ["=", "!=", "IN"] if equality else []
    allowed += ["<", ">", "<=", ">=", "TO"] if comparison else []
    allowed += ["IS EMPTY", "IS NULL", "EXISTS"]
    field = node.fid.value
    raise FilterError(
        f"Filter operator `{operator}` is not allowed for the attribute `{field}`.\n"
        f"  - Note: allowed operators: {', '.join(allowed)}.\n"
        f"  - Note: field `{field}` matched rule #{index} in `filterableAttributes`\n"
        f"  - Hint: enable {family} in rule #{index} by modifying the features.filter object\n"
        f"  - Hint: prepend another rule matching `{field}` with appropriate filter features "
        f"before rule #{index}"
    )


def _geo_enabled(rules: Sequence[Rule]) -> bool:
    for rule in rules:
        if rule == GEO_FIELD:
            return True
        patterns = rule.get("attributePatterns") or [] if isinstance(rule, Mapping) else []
        if GEO_FIELD in patterns and any(filter_rule_features(rule)):
            return True
    return False


def _check_geo(node: GeoRadius | GeoBox, rules: Sequence[Rule]) -> None:
    first = node.lat if isinstance(node, GeoRadius) else node.top_right[0]
    if not _geo_enabled(rules):
        raise FilterError(_not_filterable(GEO_FIELD, first, rules))
    if isinstance(node, GeoRadius):
        lat, lng = _finite(node.lat), _finite(node.lng)
        _check_lat_lng(lat, lng, node.lat, node.lng)
        _finite(node.radius)
        return
    top, right = _finite(node.top_right[0]), _finite(node.top_right[1])
    bottom, left = _finite(node.bottom_left[0]), _finite(node.bottom_left[1])
    _check_lat_lng(top, right, *node.top_right)
    _check_lat_lng(bottom, left, *node.bottom_left)
    if top < bottom:
        message = (
            f"The top latitude `{format_number(top)}` is below the bottom latitude "
            f"`{format_number(bottom)}`."
        )
        raise FilterError(_at(message, node.bottom_left[1]))


def _check_lat_lng(lat: float, lng: float, lat_token: Token, lng_token: Token) -> None:
    if not -90 <= lat <= 90:
        message = (
            f"Bad latitude `{format_number(lat)}`. "
            "Latitude must be contained between -90 and 90 degrees. "
        )
        raise FilterError(_at(message, lat_token))
    if not -180 <= lng <= 180:
        message = (
            f"Bad longitude `{format_number(lng)}`. "
            "Longitude must be contained between -180 and 180 degrees. "
        )
        raise FilterError(_at(message, lng_token))


def _finite(token: Token) -> float:
    number = float(token.value)
    if not math.isfinite(number):
        raise FilterError(_at("Non finite floats are not supported", token))
    return number


def _at(message: str, token: Token) -> str:
    return render_error(message, token.source, token.start, token.end)


def parse_number(text: str) -> float | None:
    """Rust's `parse_finite_float().ok()`: the number a filter value denotes, if any."""
    if not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _eval(node: Node, fx: FacetIndex, universe: AbstractSet[int]) -> AbstractSet[int]:
    if not universe:
        return set()
    if isinstance(node, And):
        result = universe
        for child in node.children:
            result = _eval(child, fx, result)
            if not result:
                break
        return result
    if isinstance(node, Or):
        found: set[int] = set()
        for child in node.children:
            found |= _eval(child, fx, universe)
        return found
    if isinstance(node, Not):
        return universe - _eval(node.child, fx, universe)
    if isinstance(node, In):
        field = node.fid.value
        return _within(
            universe, [p for v in node.values for p in _equal_postings(fx, field, v.value)]
        )
    if isinstance(node, Cond):
        return _eval_condition(node, fx, universe)
    return _eval_geo(node, fx) & universe


def _within(universe: AbstractSet[int], postings: list[AbstractSet[int]]) -> AbstractSet[int]:
    if len(postings) == 1:
        return postings[0] & universe
    found: set[int] = set()
    for posting in postings:
        found |= posting & universe
    return found


def _equal_postings(fx: FacetIndex, field: str, value: str) -> list[AbstractSet[int]]:
    postings = [fx.string_ids(field, normalize_facet(value))]
    number = parse_number(value)
    if number is not None:
        postings.append(fx.number_ids(field, number))
    return postings


def _eval_condition(node: Cond, fx: FacetIndex, universe: AbstractSet[int]) -> AbstractSet[int]:
    field, op = node.fid.value, node.op
    text = node.value.value if node.value is not None else ""
    if op == "=":
        return _within(universe, _equal_postings(fx, field, text))
    if op == "!=":
        return universe - _within(universe, _equal_postings(fx, field, text))
    if op == "EXISTS":
        return fx.exists_ids(field) & universe
    if op == "NULL":
        return fx.null_ids(field) & universe
    if op == "EMPTY":
        return fx.empty_ids(field) & universe
    if op == "CONTAINS":
        return fx.string_contains(field, normalize_facet(text)) & universe
    if op == "STARTS WITH":
        return fx.string_prefix(field, normalize_facet(text)) & universe
    if op == "TO":
        upper = node.upper.value if node.upper is not None else ""
        strings = fx.string_range(field, normalize_facet(text), normalize_facet(upper))
        low, high = parse_number(text), parse_number(upper)
        if low is None or high is None:
            return strings & universe
        return _join(strings, fx.number_range(field, low, high, within=universe), universe)
    number, norm = parse_number(text), normalize_facet(text)
    inclusive = op in (">=", "<=")
    if op in (">", ">="):
        strings = fx.string_range(field, norm, None, low_inclusive=inclusive)
        low, high = number, None
    else:
        strings = fx.string_range(field, None, norm, high_inclusive=inclusive)
        low, high = None, number
    if number is None:
        return strings & universe
    numbers = fx.number_range(
        field, low, high, low_inclusive=inclusive, high_inclusive=inclusive, within=universe
    )
    return _join(strings, numbers, universe)


def _join(
    strings: set[int], numbers: AbstractSet[int], universe: AbstractSet[int]
) -> AbstractSet[int]:
    """Numbers (already within the universe) plus the string matches within it."""
    return (strings & universe) | numbers if strings else numbers


def _eval_geo(node: GeoRadius | GeoBox, fx: FacetIndex) -> set[int]:
    if isinstance(node, GeoRadius):
        lat, lng, radius = (float(t.value) for t in (node.lat, node.lng, node.radius))
        reach = radius / _METRES_PER_DEGREE + 1e-9
        limit = radius + 2.220446049250313e-16

        def in_circle(point_lat: float, point_lng: float) -> bool:
            return haversine_m(lat, lng, point_lat, point_lng) <= limit

        return fx.geo_within(lat - reach, lat + reach, in_circle)
    top, right = (float(t.value) for t in node.top_right)
    bottom, left = (float(t.value) for t in node.bottom_left)

    def in_box(_lat: float, point_lng: float) -> bool:
        if right < left:  # the box crosses the antimeridian
            return point_lng >= left or point_lng <= right
        return left <= point_lng <= right

    return fx.geo_within(bottom, top, in_box)
