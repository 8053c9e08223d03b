"""Bucket sort over the ranking rules (words, typo, proximity, attributeRank, wordPosition,
exactness, sort), as milli's graph-based rules but evaluated per bucket.

Every rule splits a bucket of equally ranked documents into ordered sub-buckets and gives
each a rank out of a maximum that depends only on the query (never on other documents), so
`_rankingScore` is a property of (document, query): the proxy merges shards by it (see
scoring.py). Splits are generators, so only the buckets the caller consumes are refined;
features come column-wise from `TermFeatures`; proximity finds its cost-0 bucket by a byte
search for adjacent word pairs and reads single documents only for the buckets after it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple, Protocol

from .matching import QueryTerm, QueryTerms
from .rank_costs import (
    DISTANCES_BY_COST,
    MAX_POSITION_COST,
    MAX_PROXIMITY_COST,
    cheapest_sums,
    pair_cost,
    position_cost,
)
from .rank_costs import cost_from_distance as cost_from_distance
from .scoring import EXACT_ATTRIBUTE, Detail

_FIRST_TIES = 256
# From this bucket size on, wordPosition over several terms works on per-term cost classes
# (set algebra) instead of one cost per document.
_CLASSED_POSITION_MIN = 256


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

    def closest_distance(self, doc: int, term: int, position: int) -> int | None:
        """Smallest distance between `position` and the term in `doc` (None if absent)."""

    def adjacent_docs(
        self, bucket: AbstractSet[int], pairs: list[tuple[int, int]]
    ) -> set[int] | None:
        """Documents where every pair is adjacent (cost 0), or None if it cannot tell."""


class QueryRanker:
    """The query-dependent rules: words, typo, proximity, attributeRank, wordPosition, exactness."""

    def __init__(
        self, terms: list[TermData], strategy: str, features: TermFeatures, max_weight: int
    ) -> None:
        self.terms = terms
        self.strategy = strategy
        self.features = features
        self.max_weight = max_weight

    def removable(self) -> list[int]:
        """The terms the words rule drops, in order; the others every candidate contains.

        With `last`, words go from the end of the query and a quoted phrase is never
        dropped (milli's `removal_order_for_terms_matching_strategy_last`): without a
        phrase the first word stays, with one every word may go.
        """
        count = len(self.terms)
        if self.strategy == "all" or count <= 1:
            return []
        if self.strategy == "frequency":
            return sorted(range(count), key=lambda i: (-len(self.terms[i].docs), -i))[:-1]
        words = [i for i in range(count - 1, -1, -1) if self.terms[i].term.phrase is None]
        return words[:-1] if len(words) == count else words

    def minimal_terms(self) -> tuple[int, ...]:
        """The terms every candidate must contain."""
        dropped = set(self.removable())
        return tuple(i for i in range(len(self.terms)) if i not in dropped)

    def words(self, bucket: Bucket, _: tuple[int, ...]) -> Split:
        count = len(self.terms)
        steps = self.removable()
        if not steps:  # the candidates already contain every term
            yield (Detail("words", count, count, (count, count)),), bucket, tuple(range(count))
            return
        kept = list(range(count))
        remaining = set(bucket)
        for step in range(len(steps) + 1):
            docs = set(remaining)
            for index in kept:
                docs &= self.terms[index].docs
                if not docs:
                    break
            if docs:
                detail = Detail("words", len(kept), count, (len(kept), count))
                yield (detail,), docs, tuple(kept)
                remaining -= docs
            if step == len(steps) or not remaining:
                return
            kept.remove(steps[step])

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
                pair_cost(by_term[left], by_term[right], self.terms[left].term.width)
                for left, right in pairs
            )

        # The cost-0 bucket comes from a cheap adjacency scan; full costs are computed only
        # for the rest, and only if the caller consumes past the first bucket.
        adjacent = self.features.adjacent_docs(bucket, pairs)
        if adjacent is not None:
            if adjacent:
                yield (Detail("proximity", max_cost + 1, max_cost + 1),), adjacent, kept
            bucket = bucket - adjacent
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

        if len(bucket) >= _CLASSED_POSITION_MIN:
            classes = [self._position_classes(bucket, index, term) for index, term, _ in terms]
            for total, docs in cheapest_sums(classes, max_cost, len(bucket)):
                yield detail(total), docs, kept
            return

        def cost(doc: int) -> int:
            total = 0
            for index, term, firsts in terms:
                first = firsts.get(doc)
                if first is not None and first >= term.position:
                    # the first occurrence is the closest one to the query position
                    total += position_cost(first - term.position, term.width)
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
        for cost, (low, high) in enumerate(DISTANCES_BY_COST):
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

    def _position_classes(self, bucket: Bucket, index: int, term: QueryTerm) -> dict[int, Bucket]:
        """One term's wordPosition cost -> the documents of `bucket` with that cost."""
        by_first = self.features.docs_by_first_position(index)
        before = set().union(*(by_first.get(p, ()) for p in range(term.position)))
        fallback = (bucket - self.features.first_positions(index).keys()) | (bucket & before)
        classes: dict[int, Bucket] = {}
        for doc in fallback:
            cost = self._closest_position_cost(doc, index, term)
            classes.setdefault(cost, set()).add(doc)
        pending = bucket - fallback
        for first, docs in by_first.items():
            if first >= term.position:
                found = pending.intersection(docs)
                if found:
                    cost = position_cost(first - term.position, term.width)
                    classes.setdefault(cost, set()).update(found)
        return classes

    def _closest_position_cost(self, doc: int, index: int, term: QueryTerm) -> int:
        distance = self.features.closest_distance(doc, index, term.position)
        if distance is None:
            return MAX_POSITION_COST * term.width
        return position_cost(distance, term.width)

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
