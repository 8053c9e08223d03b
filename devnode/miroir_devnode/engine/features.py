"""Per-term document features for the positional ranking rules, computed column-wise.

Postings keep each word's first position per document and field, so wordPosition,
attributeRank and exactness mostly need set and dict operations that run in C; only the
proximity rule and a few corner cases (a first occurrence before the query position,
phrases) look inside individual documents. Results live in the index's term cache, as do
the per-field token buffers that let proximity find adjacent word pairs with `bytes.find`.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from itertools import accumulate, compress
from operator import not_
from typing import TYPE_CHECKING, Any, NamedTuple

from .ranking import DocMatches, TermData
from .tokenizer import HARD_GAP

if TYPE_CHECKING:
    from .index import Index
    from .querying import Query


# A word id no document holds: separates documents in a TokenBuffer so no pair spans two.
_DOC_SEPARATOR = array("I", (0xFFFFFFFF,)).tobytes()
# Beyond this many word-id combinations (typo-rich terms), the per-position scan is cheaper.
_MAX_PAIR_NEEDLES = 16


class Derivation(NamedTuple):
    """What a query term matches, cached per term key: nothing here may depend on the term's
    position in the query (or on anything else outside the key)."""

    docs: set[int]
    by_typo: list[set[int]]  # disjoint: docs whose best derivation has exactly i typos
    words: dict[int, int]  # word id -> typos
    exact_id: int | None
    phrases: list[tuple[int, ...]]  # word ids: the term's own phrase or multi-word synonyms


class TermMatch(NamedTuple):
    """One query term with its derivation; built per query, never cached."""

    key: tuple[Any, ...]
    data: TermData
    words: dict[int, int]  # word id -> typos
    exact_id: int | None
    phrases: list[tuple[int, ...]]  # word ids: the term's own phrase or multi-word synonyms


def indices(tokens: Any, word_id: int) -> Iterator[int]:
    start = 0
    while True:
        try:
            index: int = tokens.index(word_id, start)
        except ValueError:
            return
        yield index
        start = index + 1


def position_of(index: int, breaks: Any) -> int:
    return index + (HARD_GAP - 1) * bisect_right(breaks, index) if breaks else index


def _merge_min(left: dict[int, int], right: dict[int, int]) -> dict[int, int]:
    """Per-document minimum of two maps, with the bulk of the work in C."""
    if len(left) < len(right):
        left, right = right, left
    common = right.keys() & left.keys()
    only_right = right.keys() - common
    left.update(zip(only_right, map(right.__getitem__, only_right), strict=True))
    shared = list(common)
    lower = map(min, map(left.__getitem__, shared), map(right.__getitem__, shared))
    left.update(zip(shared, lower, strict=True))
    return left


class TokenBuffer(NamedTuple):
    """One field of every document as a single byte string of packed word ids."""

    data: bytes
    starts: list[int]  # byte offset of each document's tokens in `data`
    docs: list[int]
    breaks: list[array[int] | None]


BUFFERS_KEY = "token_buffers"


def token_buffers(index: Index, build: bool) -> dict[int, TokenBuffer] | None:
    """Per field, all documents' tokens in one buffer (for C-speed pair searches), kept in
    the term cache until the next write; None when not built yet and `build` is false."""
    found: dict[int, TokenBuffer] | None = index.term_cache.get(BUFFERS_KEY)
    if found is not None or not build:
        return found
    found = {}
    chunks: dict[int, list[array[int]]] = {}
    for internal in index.all_internal():
        for field_id, tokens, breaks in index.doc_fields(internal):
            field = found.get(field_id)
            if field is None:
                field = found[field_id] = TokenBuffer(b"", [], [], [])
                chunks[field_id] = []
            chunks[field_id].append(tokens)
            field.docs.append(internal)
            field.breaks.append(breaks)
    for field_id, field in found.items():
        parts = chunks[field_id]
        sizes = (4 * len(part) + len(_DOC_SEPARATOR) for part in parts[:-1])
        starts = list(accumulate(sizes, initial=0))
        # bytes.join takes the arrays' buffers directly: no per-document copy
        found[field_id] = field._replace(data=_DOC_SEPARATOR.join(parts), starts=starts)
    index.term_cache[BUFFERS_KEY] = found
    return found


def _adjacent(data: bytes, breaks: Any, needle: bytes) -> bool:
    """`needle` (two packed word ids) at a token boundary, with no hard separator inside."""
    at = data.find(needle)
    while at >= 0:
        if not at & 3 and (not breaks or (at >> 2) + 1 not in breaks):
            return True
        at = data.find(needle, at + 1)
    return False


class Features:
    """TermFeatures over one query's terms; column-wise results live in the index's term cache."""

    def __init__(self, query: Query, matches: list[TermMatch]) -> None:
        self.query = query
        self.index = query.index
        self.terms = matches
        self._owners: dict[int, list[int]] = {}
        self._phrases: list[tuple[int, tuple[int, ...]]] = []
        for term_index, match in enumerate(matches):
            for word_id in match.words:
                self._owners.setdefault(word_id, []).append(term_index)
            self._phrases.extend((term_index, phrase) for phrase in match.phrases)
        self._owned = set(self._owners)
        self._matches: dict[int, DocMatches] = {}

    def _cached(self, kind: str, term: int, compute: Callable[[TermMatch], Any]) -> Any:
        key = (kind, self.terms[term].key)
        found = self.index.term_cache.get(key)
        if found is None:
            found = self.index.term_cache[key] = compute(self.terms[term])
        return found

    def matches(self, doc: int) -> DocMatches:
        found = self._matches.get(doc)
        if found is not None:
            return found
        owners = self._owners
        by_term: list[dict[int, list[int]]] = [{} for _ in self.terms]
        for field_id, tokens, breaks in self.query.doc_fields(doc):
            for word_id in self._owned.intersection(tokens):
                found_at = [position_of(i, breaks) for i in indices(tokens, word_id)]
                for term_index in owners[word_id]:
                    by_term[term_index].setdefault(field_id, []).extend(found_at)
        for term_index, phrase in self._phrases:
            for field_id, position in self.query.phrase_positions(doc, phrase):
                by_term[term_index].setdefault(field_id, []).append(position)
        for fields in by_term:
            for positions in fields.values():
                positions.sort()
        found = self._matches[doc] = DocMatches(by_term)
        return found

    def closest_distance(self, doc: int, term: int, position: int) -> int | None:
        """Smallest distance between `position` and the term in `doc` (None if absent)."""
        match = self.terms[term]
        if match.phrases:
            fields = self.matches(doc).by_term[term].values()
            return min((abs(p - position) for ps in fields for p in ps), default=None)
        best: int | None = None
        for _, tokens, breaks in self.query.doc_fields(doc):
            for word_id in match.words:
                for index in indices(tokens, word_id):
                    at = position_of(index, breaks)
                    if best is None or abs(at - position) < best:
                        best = abs(at - position)
                    if at >= position:
                        break  # later occurrences are only farther
        return best

    def adjacent_docs(
        self, bucket: AbstractSet[int], pairs: list[tuple[int, int]]
    ) -> set[int] | None:
        """Documents of `bucket` where every pair of terms is adjacent (proximity cost 0).

        A byte search for the packed word-id pairs in each field replaces building the
        documents' match positions. None when a term is a phrase (or has a multi-word
        synonym) or both terms share a word, as those make cost 0 without adjacency.
        """
        needles: list[list[bytes]] = []
        for left, right in pairs:
            first, second = self.terms[left], self.terms[right]
            if first.phrases or second.phrases or first.words.keys() & second.words.keys():
                return None
            combos = [array("I", (a, b)).tobytes() for a in first.words for b in second.words]
            if len(combos) > _MAX_PAIR_NEEDLES:
                return None
            needles.append(combos)
        # Scanning one buffer per field beats per-document scans once a good share of the
        # index is in the bucket; the buffers then serve every query until the next write.
        buffers = token_buffers(self.index, len(bucket) * 8 > len(self.index))
        if buffers is not None:
            key = ("adjacent", tuple((self.terms[a].key, self.terms[b].key) for a, b in pairs))
            everywhere: set[int] | None = self.index.term_cache.get(key)
            if everywhere is None:
                hits: set[int] | None = None
                for combos in needles:
                    hits = self._adjacent_in_buffers(buffers, hits, combos)
                everywhere = self.index.term_cache[key] = hits or set()
            return everywhere.intersection(bucket)
        found = set()
        doc_fields = self.query.doc_fields
        for doc in bucket:
            fields = [(tokens.tobytes(), breaks) for _, tokens, breaks in doc_fields(doc)]
            if all(
                any(_adjacent(data, breaks, needle) for data, breaks in fields for needle in combos)
                for combos in needles
            ):
                found.add(doc)
        return found

    def _adjacent_in_buffers(
        self, buffers: dict[int, TokenBuffer], among: set[int] | None, needles: list[bytes]
    ) -> set[int]:
        """Documents (of `among`, if given) holding one of the pairs in some field."""
        hits: set[int] = set()
        for field_id in self.query.fields():
            buffer = buffers.get(field_id)
            if buffer is None:
                continue
            data, starts, docs, breaks = buffer
            last = len(starts) - 1
            for needle in needles:
                at = data.find(needle)
                while at >= 0:
                    if at & 3:
                        at = data.find(needle, at + 1)
                        continue
                    segment = bisect_right(starts, at) - 1
                    doc = docs[segment]
                    if among is None or doc in among:
                        marks = breaks[segment]
                        if marks and ((at - starts[segment]) >> 2) + 1 in marks:
                            at = data.find(needle, at + 1)
                            continue
                        hits.add(doc)
                    # one hit per document is enough, and other documents do not count
                    at = data.find(needle, starts[segment + 1]) if segment < last else -1
        return hits

    def first_positions(self, term: int) -> dict[int, int]:
        def compute(match: TermMatch) -> dict[int, int]:
            result: dict[int, int] = {}
            for word_id in match.words:
                for field_id in self.query.fields():
                    pair = self.index.first_positions(word_id, field_id)
                    if pair is not None:
                        result = _merge_min(result, dict(zip(*pair, strict=True)))
            return result

        found: dict[int, int] = self._cached("first", term, compute)
        return found

    def _expected(self, kept: tuple[int, ...]) -> list[int] | None:
        """The word ids a field must start with to match the query exactly."""
        expected: list[int] = []
        for index in kept:
            match = self.terms[index]
            if match.data.term.phrase is not None and match.phrases:
                expected.extend(match.phrases[0])
            elif match.exact_id is not None:
                expected.append(match.exact_id)
            else:
                return None
        return expected

    def exact_full(self, kept: tuple[int, ...]) -> AbstractSet[int]:
        expected = self._expected(kept)
        if expected is None:
            return set()
        return self.index.full_field_docs(array("I", expected).tobytes(), self.query.allowed)

    def exact_attribute(self, doc: int, kept: tuple[int, ...]) -> int:
        expected = self._expected(kept)
        if expected is None:
            return 1
        size = len(expected)
        best = 1
        for _, tokens, breaks in self.query.doc_fields(doc):
            if (
                len(tokens) >= size
                and tokens[0] == expected[0]
                and tokens[:size].tolist() == expected
                and (not breaks or breaks[0] >= size)
            ):
                if len(tokens) == size:
                    return 3
                best = 2
        return best

    def docs_by_first_position(self, term: int) -> dict[int, set[int]]:
        def compute(_: TermMatch) -> dict[int, set[int]]:
            inverted: dict[int, set[int]] = {}
            for doc, first in self.first_positions(term).items():
                inverted.setdefault(first, set()).add(doc)
            return inverted

        found: dict[int, set[int]] = self._cached("by_first", term, compute)
        return found

    def min_weights(self, term: int) -> dict[int, int]:
        def compute(match: TermMatch) -> dict[int, int]:
            assigned: dict[int, int] = {}
            weight = self.index.field_weight
            for field_id in sorted(self.query.fields(), key=weight):
                docs: set[int] = set()
                for word_id in match.words:
                    pair = self.index.first_positions(word_id, field_id)
                    if pair is not None:
                        docs.update(pair[0])
                fresh = docs - assigned.keys()
                assigned.update(dict.fromkeys(fresh, weight(field_id)))
            for doc in match.data.docs - assigned.keys():
                fields = self.matches(doc).by_term[term]
                assigned[doc] = min(map(weight, fields), default=0)
            return assigned

        found: dict[int, int] = self._cached("weights", term, compute)
        return found

    def exact_docs(self, term: int) -> AbstractSet[int]:
        def compute(match: TermMatch) -> set[int]:
            if match.data.term.phrase is not None:
                return match.data.docs
            if match.exact_id is None:
                return set()
            return self.index.word_docs(match.exact_id, self.query.allowed)

        found: set[int] = self._cached("exact", term, compute)
        return found

    def exact_starts(self, term: int) -> AbstractSet[int]:
        def compute(match: TermMatch) -> set[int]:
            if match.data.term.phrase is not None:
                return {
                    doc
                    for doc in match.data.docs
                    if any(ps[0] == 0 for ps in self.matches(doc).by_term[term].values())
                }
            starts: set[int] = set()
            for field_id in self.query.fields() if match.exact_id is not None else ():
                pair = self.index.first_positions(match.exact_id, field_id)  # type: ignore[arg-type]
                if pair is not None:
                    starts.update(compress(pair[0], map(not_, pair[1])))
            return starts

        found: set[int] = self._cached("starts", term, compute)
        return found
