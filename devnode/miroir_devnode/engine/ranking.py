"""Bucket sort over the ranking rules (words, typo, proximity, attributeRank, wordPosition,
exactness, sort), as milli's graph-based rules but evaluated per bucket.

Every rule splits a bucket of equally ranked documents into ordered sub-buckets and gives
each a rank out of a maximum that depends only on the query (never on other documents), so
`_rankingScore` is a property of (document, query): the proxy merges shards by it (see
scoring.py). Splits are generators, so only the buckets the caller consumes are refined;
features come column-wise from `TermFeatures`, and only proximity reads single documents.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple, Protocol

from .matching import QueryTerm, QueryTerms
from .scoring import EXACT_ATTRIBUTE, Detail

MAX_PROXIMITY_COST = 7
MAX_POSITION_COST = 10
_FIRST_TIES = 256


class SortRule(NamedTuple):
    field: str
    ascending: bool
    geo_point: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        direction = "asc" if self.ascending else "desc"
        if self.geo_point is not None:
            lat, lng = self.geo_point
            return f"_geoPoint({_rust_float(lat)}, {_rust_float(lng)}):{direction}"
        return f"{self.field}:{direction}"


class RankedHit(NamedTuple):
    internal_id: int
    score: float
    details: dict[str, Any] | None


@dataclass(slots=True)
class QueryResult:
    ranked: list[RankedHit]
    candidates: set[int]
    total: int
    query_terms: QueryTerms


@dataclass(slots=True)
class DocMatches:
    """Where each query term occurs in one document: term -> field id -> sorted positions."""

    by_term: list[dict[int, list[int]]]


@dataclass(slots=True)
class TermData:
    term: QueryTerm
    docs: set[int]
    by_typo: list[set[int]]  # disjoint: docs whose best derivation has exactly i typos


Bucket = set[int]
Split = Iterator[tuple[tuple[Detail, ...], Bucket, tuple[int, ...]]]


def _rust_float(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def cost_from_distance(distance: int) -> int:
    for limit, cost in ((0, 0), (1, 1), (4, 2), (7, 3), (11, 4), (16, 5), (24, 6), (64, 7)):
        if distance <= limit:
            return cost
    return 8 if distance <= 256 else 9 if distance <= 1024 else 10


def _grouped(
    bucket: Bucket, key: Callable[[int], Any], reverse: bool = False
) -> list[tuple[Any, Bucket]]:
    groups: dict[Any, Bucket] = {}
    for doc in bucket:
        groups.setdefault(key(doc), set()).add(doc)
    return sorted(groups.items(), key=lambda item: item[0], reverse=reverse)


class TermFeatures(Protocol):
    """Per-term document features, computed column-wise from the postings and cached."""

    def matches(self, doc: int) -> DocMatches: ...

    def first_positions(self, term: int) -> dict[int, int]: ...

    def min_weights(self, term: int) -> dict[int, int]: ...

    def exact_docs(self, term: int) -> AbstractSet[int]: ...

    def exact_starts(self, term: int) -> AbstractSet[int]: ...

    def docs_by_first_position(self, term: int) -> dict[int, set[int]]: ...

    def exact_attribute(self, doc: int, kept: tuple[int, ...]) -> int:
        """3 = a field is exactly the query, 2 = a field starts with it, 1 = neither."""

    def exact_full(self, kept: tuple[int, ...]) -> AbstractSet[int]:
        """Documents with a field made of exactly the query's words."""


_COST_TABLE = [cost_from_distance(d) for d in range(1100)]
_DISTANCES_BY_COST = [
    (0, 0), (1, 1), (2, 4), (5, 7), (8, 11), (12, 16), (17, 24), (25, 64), (65, 256), (257, 1024),
    (1025, 1 << 31),
]  # fmt: skip


def _position_cost(distance: int, width: int) -> int:
    table = _COST_TABLE
    return sum(
        table[d] if d < 1100 else MAX_POSITION_COST for d in range(distance, distance + width)
    )


class QueryRanker:
    """The query-dependent rules: words, typo, proximity, attributeRank, wordPosition, exactness."""

    def __init__(
        self, terms: list[TermData], strategy: str, features: TermFeatures, max_weight: int
    ) -> None:
        self.terms = terms
        self.strategy = strategy
        self.features = features
        self.max_weight = max_weight

    def removal_order(self) -> list[int]:
        count = len(self.terms)
        if self.strategy == "frequency":
            return sorted(range(count), key=lambda i: (-len(self.terms[i].docs), -i))
        return list(range(count - 1, -1, -1))

    def minimal_terms(self) -> tuple[int, ...]:
        """The terms every candidate must contain."""
        if self.strategy == "all" or len(self.terms) <= 1:
            return tuple(range(len(self.terms)))
        return (self.removal_order()[-1],)

    def words(self, bucket: Bucket, _: tuple[int, ...]) -> Split:
        count = len(self.terms)
        if self.strategy == "all" or count <= 1:
            yield (Detail("words", count, count, (count, count)),), bucket, tuple(range(count))
            return
        kept = list(range(count))
        remaining = set(bucket)
        for removed in self.removal_order():
            docs = set(remaining)
            for index in kept:
                docs &= self.terms[index].docs
                if not docs:
                    break
            if docs:
                detail = Detail("words", len(kept), count, (len(kept), count))
                yield (detail,), docs, tuple(kept)
                remaining -= docs
            if len(kept) == 1 or not remaining:
                return
            kept.remove(removed)

    def typo(self, bucket: Bucket, kept: tuple[int, ...]) -> Split:
        """Buckets by total typos, cheapest first, from per-term typo classes (set algebra)."""
        classes = [self.terms[i].by_typo for i in kept]
        max_typos = sum(
            self.terms[i].term.max_typos for i in kept if self.terms[i].term.phrase is None
        )

        def docs_with(total: int, term: int, docs: Bucket) -> Bucket:
            if term == len(classes):
                return docs if total == 0 else set()
            found: Bucket = set()
            for typos, members in enumerate(classes[term][: total + 1]):
                narrowed = docs & members
                if narrowed:
                    found |= docs_with(total - typos, term + 1, narrowed)
            return found

        left = len(bucket)
        for total in range(max_typos + 1):
            docs = docs_with(total, 0, bucket)
            if docs:
                yield (
                    (Detail("typo", max_typos + 1 - total, max_typos + 1, (total, max_typos)),),
                    docs,
                    kept,
                )
                left -= len(docs)
                if not left:
                    return

    def _pairs(self, kept: tuple[int, ...]) -> list[tuple[int, int]]:
        pairs = []
        for left, right in pairwise(kept):
            left_term = self.terms[left].term
            if left_term.position + left_term.width == self.terms[right].term.position:
                pairs.append((left, right))
        return pairs

    def proximity(self, bucket: Bucket, kept: tuple[int, ...]) -> Split:
        pairs = self._pairs(kept)
        max_cost = MAX_PROXIMITY_COST * len(pairs)
        if not pairs:
            yield (Detail("proximity", 1, 1),), bucket, kept
            return

        def cost(doc: int) -> int:
            by_term = self.features.matches(doc).by_term
            return sum(
                _pair_cost(by_term[left], by_term[right], self.terms[left].term.width)
                for left, right in pairs
            )

        for value, docs in _grouped(bucket, cost):
            yield (Detail("proximity", max_cost - value + 1, max_cost + 1),), docs, kept

    def attribute_rank(self, bucket: Bucket, kept: tuple[int, ...]) -> Split:
        widths = [self.terms[i].term.width for i in kept]
        max_cost = self.max_weight * sum(widths)
        if max_cost == 0:
            yield (Detail("fid", 1, 1),), bucket, kept
            return
        weights = [(self.features.min_weights(i), w) for i, w in zip(kept, widths, strict=True)]
        worst = self.max_weight

        def cost(doc: int) -> int:
            return sum(found.get(doc, worst) * width for found, width in weights)

        for value, docs in _grouped(bucket, cost):
            yield (Detail("fid", max_cost - value + 1, max_cost + 1),), docs, kept

    def word_position(self, bucket: Bucket, kept: tuple[int, ...]) -> Split:
        terms = [(i, self.terms[i].term, self.features.first_positions(i)) for i in kept]
        max_cost = MAX_POSITION_COST * sum(term.width for _, term, _ in terms)

        def detail(cost: int) -> tuple[Detail, ...]:
            return (Detail("position", max_cost - cost + 1, max_cost + 1),)

        if len(terms) == 1 and terms[0][1].phrase is None:
            yield from self._single_word_position(bucket, kept, detail)
            return

        def cost(doc: int) -> int:
            total = 0
            for index, term, firsts in terms:
                first = firsts.get(doc)
                if first is not None and first >= term.position:
                    # the first occurrence is the closest one to the query position
                    total += _position_cost(first - term.position, term.width)
                else:
                    total += self._closest_position_cost(doc, index, term)
            return total

        for value, docs in _grouped(bucket, cost):
            yield detail(value), docs, kept

    def _single_word_position(
        self, bucket: Bucket, kept: tuple[int, ...], detail: Callable[[int], tuple[Detail, ...]]
    ) -> Split:
        """Cost classes straight from the first-position index, cheapest first and lazily."""
        index, term = kept[0], self.terms[kept[0]].term
        by_first = self.features.docs_by_first_position(index)
        before = set().union(*(by_first.get(p, ()) for p in range(term.position)))
        fallback = (bucket - self.features.first_positions(index).keys()) | (bucket & before)
        costs = {doc: self._closest_position_cost(doc, index, term) for doc in fallback}
        pending = bucket - fallback
        for cost, (low, high) in enumerate(_DISTANCES_BY_COST):
            docs = {doc for doc, value in costs.items() if value == cost}
            if cost == MAX_POSITION_COST:
                docs |= pending
            elif pending:
                start = term.position + low
                for first in range(start, term.position + high + 1):
                    found = by_first.get(first)
                    if found:
                        docs |= pending & found
                pending -= docs
            if docs:
                yield detail(cost), docs, kept

    def _closest_position_cost(self, doc: int, index: int, term: QueryTerm) -> int:
        fields = self.features.matches(doc).by_term[index].values()
        distance = min((abs(p - term.position) for ps in fields for p in ps), default=None)
        if distance is None:
            return MAX_POSITION_COST * term.width
        return _position_cost(distance, term.width)

    def exactness(self, bucket: Bucket, kept: tuple[int, ...]) -> Split:
        """Fields equal to the query, then fields starting with it, then by exact words; lazily."""
        count = len(kept)

        def detail(attribute: int, words: int) -> tuple[Detail, ...]:
            exact_words = Detail("exactWords", words + 1, count + 1, (words, count))
            return EXACT_ATTRIBUTE[attribute], exact_words

        full = bucket & self.features.exact_full(kept)
        if full:
            yield detail(3, count), full, kept
        starts = (bucket & self.features.exact_starts(kept[0])) - full
        if count > 1:
            starts = {doc for doc in starts if self.features.exact_attribute(doc, kept) > 1}
        if starts:
            yield detail(2, count), starts, kept
        rest = bucket - full - starts
        exact = [self.features.exact_docs(i) for i in kept]
        if count == 1:
            classes = {1: rest & exact[0]}
            classes[0] = rest - classes[1]
        else:
            counts: dict[int, int] = {}
            for docs in exact:
                for doc in docs & rest:
                    counts[doc] = counts.get(doc, 0) + 1
            classes = {0: rest - counts.keys()}
            for doc, words in counts.items():
                classes.setdefault(words, set()).add(doc)
        for words in sorted(classes, reverse=True):
            if classes[words]:
                yield detail(1, words), classes[words], kept


def _pair_cost(left: dict[int, list[int]], right: dict[int, list[int]], left_width: int) -> int:
    """Smallest proximity cost between two terms in one field (7 when never close)."""
    best = MAX_PROXIMITY_COST
    for field_id, lefts in left.items():
        rights = right.get(field_id)
        if not rights:
            continue
        for start in lefts:
            end = start + left_width - 1
            after = bisect_right(rights, end)
            if after < len(rights):
                best = min(best, rights[after] - end - 1)
            if after:
                # the right term before (or on) the left one costs one more
                best = min(best, end - rights[after - 1])
            if best == 0:
                return 0
    return best


RuleFn = Callable[[Bucket, tuple[int, ...]], Split]


def bucket_sort(
    bucket: Bucket, rules: Sequence[RuleFn], kept: tuple[int, ...]
) -> Iterator[tuple[int, tuple[Detail, ...]]]:
    """Documents best first with their rule verdicts; ties end in internal id order."""

    def walk(
        docs: Bucket, index: int, terms: tuple[int, ...], details: tuple[Detail, ...]
    ) -> Iterator[tuple[int, tuple[Detail, ...]]]:
        if index == len(rules):
            # Ties end in internal id order; most searches stop after the first few.
            first = heapq.nsmallest(_FIRST_TIES, docs) if len(docs) > _FIRST_TIES else sorted(docs)
            for doc in first:
                yield doc, details
            if len(first) < len(docs):
                for doc in sorted(docs.difference(first)):
                    yield doc, details
            return
        for verdict, sub_bucket, sub_terms in rules[index](docs, terms):
            yield from walk(sub_bucket, index + 1, sub_terms, details + verdict)

    return walk(bucket, 0, kept, ())
