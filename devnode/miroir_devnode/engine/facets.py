"""Per-field inverted index of facet values, the data behind filters and facets.

Like Meilisearch, strings are indexed under their normalized form (trimmed, NFKD,
lowercased) while the original spelling is kept for display; numbers and strings live
in separate maps, so `"10"` and `10` are different facet values. Booleans are the
strings "true"/"false". Sorted key lists are rebuilt lazily after a key appears or
disappears, so range queries are a bisect plus a union of posting sets.
"""

from __future__ import annotations

import math
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from decimal import Decimal
from typing import Any, Literal

from miroir_devnode.engine.patterns import GEO_FIELD

_EMPTY: frozenset[int] = frozenset()
EARTH_RADIUS_M = 6371e3

# A facet entry: (kind, path, key, original). Kinds: "s" string, "n" number,
# "x" field present, "0" null, "e" empty ("", [] or {}).
_Entry = tuple[Literal["s", "n", "x", "0", "e"], str, Any, str]


def normalize_facet(value: str) -> str:
    return unicodedata.normalize("NFKD", value.strip()).lower()


def format_number(value: float) -> str:
    """Rust's `f64` Display, which Meilisearch uses for numeric facet values."""
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """The `geoutils` haversine Meilisearch uses, rounded to the millimetre like it."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    hav_phi = (1 - math.cos(phi2 - phi1)) / 2
    hav_lambda = math.cos(phi1) * math.cos(phi2) * (1 - math.cos(math.radians(lng2 - lng1))) / 2
    return round(2 * EARTH_RADIUS_M * math.asin(math.sqrt(hav_phi + hav_lambda)) * 1000) / 1000


class FacetIndex:
    """Per-field value index over documents keyed by internal int doc ids."""

    def __init__(self, indexed: Callable[[str], bool]) -> None:
        self._indexed = indexed
        self._indexed_cache: dict[str, bool] = {}
        self._strings: dict[str, dict[str, set[int]]] = {}
        self._originals: dict[str, dict[str, dict[str, set[int]]]] = {}
        self._numbers: dict[str, dict[float, set[int]]] = {}
        self._presence: dict[str, dict[str, set[int]]] = {"x": {}, "0": {}, "e": {}}
        self._sorted_strings: dict[str, list[str]] = {}
        self._sorted_numbers: dict[str, list[float]] = {}
        # Forward maps doc -> number(s), to filter a small universe without big unions.
        self._doc_number: dict[str, dict[int, float]] = {}
        self._doc_numbers: dict[str, dict[int, tuple[float, ...]]] = {}
        self._geo: dict[int, tuple[float, float]] = {}
        self._geo_by_lat: list[tuple[float, int]] | None = None

    def _is_indexed(self, path: str) -> bool:
        hit = self._indexed_cache.get(path)
        if hit is None:
            hit = self._indexed_cache[path] = self._indexed(path)
        return hit

    def add(self, doc_id: int, doc: Mapping[str, Any]) -> None:
        numbers_of_doc: dict[str, list[float]] = {}
        for kind, path, key, original in self._entries(doc):
            if kind == "s":
                values = self._strings.setdefault(path, {})
                if key not in values:
                    values[key] = set()
                    self._sorted_strings.pop(path, None)
                values[key].add(doc_id)
                spellings = self._originals.setdefault(path, {}).setdefault(key, {})
                spellings.setdefault(original, set()).add(doc_id)
            elif kind == "n":
                numbers = self._numbers.setdefault(path, {})
                if key not in numbers:
                    numbers[key] = set()
                    self._sorted_numbers.pop(path, None)
                numbers[key].add(doc_id)
                numbers_of_doc.setdefault(path, []).append(key)
            else:
                self._presence[kind].setdefault(path, set()).add(doc_id)
        for path, found in numbers_of_doc.items():
            if len(found) == 1:
                self._doc_number.setdefault(path, {})[doc_id] = found[0]
            else:
                self._doc_numbers.setdefault(path, {})[doc_id] = tuple(found)
        point = self._geo_point(doc)
        if point is not None:
            self._geo[doc_id] = point
            self._geo_by_lat = None

    def remove(self, doc_id: int, doc: Mapping[str, Any]) -> None:
        for kind, path, key, original in self._entries(doc):
            if kind == "s":
                spellings = self._originals[path][key]
                _discard(spellings, original, doc_id)
                if not spellings:
                    del self._originals[path][key]
                if _discard(self._strings[path], key, doc_id):
                    self._sorted_strings.pop(path, None)
            elif kind == "n":
                if _discard(self._numbers[path], key, doc_id):
                    self._sorted_numbers.pop(path, None)
                for forward in (self._doc_number, self._doc_numbers):
                    if forward.get(path, {}).pop(doc_id, None) is not None and not forward[path]:
                        del forward[path]
            else:
                _discard(self._presence[kind], path, doc_id)
        if self._geo.pop(doc_id, None) is not None:
            self._geo_by_lat = None

    def _entries(self, doc: Mapping[str, Any]) -> Iterator[_Entry]:
        for key, value in doc.items():
            yield from self._walk(key, value, nested_in_array=False)

    def _walk(self, path: str, value: Any, *, nested_in_array: bool) -> Iterator[_Entry]:
        if isinstance(value, dict):
            if not value and self._is_indexed(path):
                yield "x", path, None, ""
                if not nested_in_array:
                    yield "e", path, None, ""
            for key, child in value.items():
                yield from self._walk(f"{path}.{key}", child, nested_in_array=nested_in_array)
            return
        if not self._is_indexed(path):
            return
        yield "x", path, None, ""
        if value is None:
            if not nested_in_array:
                yield "0", path, None, ""
        elif isinstance(value, list):
            if not value and not nested_in_array:
                yield "e", path, None, ""
            for item in value:
                yield from self._walk(path, item, nested_in_array=True)
        elif isinstance(value, bool):
            text = "true" if value else "false"
            yield "s", path, text, text
        elif isinstance(value, int | float):
            yield "n", path, float(value), ""
        elif isinstance(value, str):
            if value:
                yield "s", path, normalize_facet(value), value
            elif not nested_in_array:
                yield "e", path, None, ""

    def _geo_point(self, doc: Mapping[str, Any]) -> tuple[float, float] | None:
        geo = doc.get(GEO_FIELD)
        if not isinstance(geo, dict) or not self._is_indexed(GEO_FIELD):
            return None
        try:
            return float(geo["lat"]), float(geo["lng"])
        except (KeyError, TypeError, ValueError):
            return None

    # -- lookups used by the filter evaluator; returned sets must not be mutated --

    def fields(self) -> set[str]:
        return set(self._presence["x"])

    def string_ids(self, field: str, normalized: str) -> AbstractSet[int]:
        return self._strings.get(field, {}).get(normalized, _EMPTY)

    def number_ids(self, field: str, value: float) -> AbstractSet[int]:
        return self._numbers.get(field, {}).get(value, _EMPTY)

    def exists_ids(self, field: str) -> set[int]:
        """Docs having `field` or any field nested below it."""
        prefix = field + "."
        found = [
            ids
            for path, ids in self._presence["x"].items()
            if path == field or path.startswith(prefix)
        ]
        return set().union(*found)

    def null_ids(self, field: str) -> AbstractSet[int]:
        return self._presence["0"].get(field, _EMPTY)

    def empty_ids(self, field: str) -> AbstractSet[int]:
        return self._presence["e"].get(field, _EMPTY)

    def number_range(
        self,
        field: str,
        low: float | None,
        high: float | None,
        *,
        low_inclusive: bool = True,
        high_inclusive: bool = True,
        within: AbstractSet[int],
    ) -> AbstractSet[int]:
        """Docs of `within` having a number in the range (None = unbounded)."""
        numbers = self._numbers.get(field)
        if not numbers:
            return _EMPTY
        keys = self.sorted_numbers(field)
        start, end = _bounds(keys, low, high, low_inclusive, high_inclusive)
        if start >= end:
            return _EMPTY
        single = self._doc_number.get(field, {})
        estimate = (end - start) / len(keys) * len(single)
        if len(within) * 2 >= estimate:
            return set().union(*(numbers[k] for k in keys[start:end])) & within
        # A small universe: check each doc's value rather than union big postings.
        lo = keys[start]
        hi = keys[end - 1]
        found = {d for d in within if lo <= single.get(d, math.nan) <= hi}
        multi = self._doc_numbers.get(field)
        if multi:
            found.update(d for d in within if any(lo <= v <= hi for v in multi.get(d, ())))
        return found

    def string_range(
        self,
        field: str,
        low: str | None,
        high: str | None,
        *,
        low_inclusive: bool = True,
        high_inclusive: bool = True,
    ) -> set[int]:
        strings = self._strings.get(field)
        if not strings:
            return set()
        keys = self._sorted_string_keys(field, strings)
        return _union_range(strings, keys, low, high, low_inclusive, high_inclusive)

    def string_prefix(self, field: str, prefix: str) -> set[int]:
        strings = self._strings.get(field)
        if not strings:
            return set()
        keys = self._sorted_string_keys(field, strings)
        start = bisect_left(keys, prefix)
        end = start
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        return set().union(*(strings[k] for k in keys[start:end]))

    def string_contains(self, field: str, part: str) -> set[int]:
        strings = self._strings.get(field, {})
        return set().union(*(ids for key, ids in strings.items() if part in key))

    def geo_within(
        self, lat_low: float, lat_high: float, keep: Callable[[float, float], bool]
    ) -> set[int]:
        """Docs whose `_geo` latitude is in [lat_low, lat_high] and `keep(lat, lng)` holds."""
        if self._geo_by_lat is None:
            self._geo_by_lat = sorted((lat, doc_id) for doc_id, (lat, _) in self._geo.items())
        band = self._geo_by_lat
        start = bisect_left(band, (lat_low, -math.inf))
        end = bisect_right(band, (lat_high, math.inf))
        return {doc_id for _, doc_id in band[start:end] if keep(*self._geo[doc_id])}

    def _sorted_string_keys(self, field: str, strings: dict[str, set[int]]) -> list[str]:
        keys = self._sorted_strings.get(field)
        if keys is None:
            keys = self._sorted_strings[field] = sorted(strings)
        return keys

    # -- facet distribution and stats --

    def distribution(
        self, field: str, candidates: AbstractSet[int], *, max_values: int, sort_by: str
    ) -> dict[str, int]:
        """facetDistribution of one field: numbers first, then strings, like Meilisearch."""
        out: dict[str, int] = {}
        numbers = self._numbers.get(field)
        if numbers:
            keys = self.sorted_numbers(field)
            for key, count in _counted(numbers, keys, candidates, max_values, sort_by):
                out[format_number(key)] = count
        strings = self._strings.get(field)
        if strings and len(out) < max_values:
            keys_s = self._sorted_string_keys(field, strings)
            budget = max_values - len(out)
            for norm, count in _counted(strings, keys_s, candidates, budget, sort_by):
                out[self._display(field, norm, candidates)] = count
        return out

    def _display(self, field: str, normalized: str, candidates: AbstractSet[int]) -> str:
        # Meilisearch shows the spelling of the lowest candidate doc id holding the value.
        spellings = self._originals[field][normalized]
        if len(spellings) == 1:
            return next(iter(spellings))
        return min(spellings, key=lambda s: min(spellings[s] & candidates, default=math.inf))

    def string_values(self, field: str) -> Mapping[str, AbstractSet[int]]:
        """Normalized string value -> doc ids of one field (facet search); do not mutate."""
        return self._strings.get(field, {})

    def display_value(self, field: str, normalized: str, candidates: AbstractSet[int]) -> str:
        return self._display(field, normalized, candidates)

    def stats(self, field: str, candidates: AbstractSet[int]) -> tuple[float, float] | None:
        numbers = self._numbers.get(field)
        if not numbers:
            return None
        keys = self.sorted_numbers(field)
        low = next((k for k in keys if not numbers[k].isdisjoint(candidates)), None)
        if low is None:
            return None
        high = next(k for k in reversed(keys) if not numbers[k].isdisjoint(candidates))
        return low, high

    def sorted_numbers(self, field: str) -> list[float]:
        keys = self._sorted_numbers.get(field)
        if keys is None:
            keys = self._sorted_numbers[field] = sorted(self._numbers.get(field, {}))
        return keys


def _discard(postings: dict[Any, set[int]], key: Any, doc_id: int) -> bool:
    """Remove doc_id from postings[key]; True when the key disappeared."""
    ids = postings.get(key)
    if ids is None:
        return False
    ids.discard(doc_id)
    if ids:
        return False
    del postings[key]
    return True


def _bounds(
    keys: list[Any], low: Any, high: Any, low_inclusive: bool, high_inclusive: bool
) -> tuple[int, int]:
    """The slice of sorted `keys` inside the range."""
    if low is None:
        start = 0
    else:
        start = bisect_left(keys, low) if low_inclusive else bisect_right(keys, low)
    if high is None:
        end = len(keys)
    else:
        end = bisect_right(keys, high) if high_inclusive else bisect_left(keys, high)
    return start, end


def _union_range(
    postings: Mapping[Any, set[int]],
    keys: list[Any],
    low: Any,
    high: Any,
    low_inclusive: bool,
    high_inclusive: bool,
) -> set[int]:
    start, end = _bounds(keys, low, high, low_inclusive, high_inclusive)
    if start >= end:
        return set()
    return set().union(*(postings[k] for k in keys[start:end]))


def _counted(
    postings: Mapping[Any, set[int]],
    keys: list[Any],
    candidates: AbstractSet[int],
    limit: int,
    sort_by: str,
) -> list[tuple[Any, int]]:
    if limit <= 0:
        return []
    if sort_by == "count":
        counted = [(k, n) for k in keys if (n := len(postings[k] & candidates))]
        counted.sort(key=lambda item: -item[1])
        return counted[:limit]
    out: list[tuple[Any, int]] = []
    for key in keys:
        count = len(postings[key] & candidates)
        if count:
            out.append((key, count))
            if len(out) == limit:
                break
    return out
