"""One search over an Index: term derivations, candidates, rule pipeline, distinct, threshold.

Derivations and their documents are cached on the index per (term, searchable fields) until
the next write, so repeated queries skip the vocabulary scans. A cached value holds only what
its key determines: the query term itself (its position in the query above all) is attached
per query, or an answer would depend on which query cached the term first. Without `distinct` or a
threshold only the first `want` hits are ranked; with either, every candidate is ranked
because both change which documents count.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .features import BUFFERS_KEY, Derivation, Features, TermMatch, indices, position_of
from .matching import MatchInfo, QueryTerm, QueryTerms
from .patterns import flatten, is_faceted_by
from .ranking import QueryRanker, QueryResult, RankedHit, RuleFn, SortRule, TermData, bucket_sort
from .scoring import Detail, details_json, global_score
from .sorting import SortedGroups, column_groups, custom_rule_field, geo_split, sort_split

if TYPE_CHECKING:
    from .index import Index

_TERM_CACHE_LIMIT = 512
_QUERY_RULES = frozenset(
    ("words", "typo", "proximity", "attributeRank", "wordPosition", "attribute", "exactness")
)


@dataclass(slots=True)
class QueryInputs:
    terms: list[QueryTerm]
    negatives: list[tuple[str, ...]]
    universe: AbstractSet[int] | None  # None: every document
    strategy: str
    search_on: list[str] | None
    sort: list[SortRule]
    distinct: str | None
    want: int
    threshold: float | None
    details: bool


def _distinct_key(value: Any) -> tuple[str, Any]:
    if isinstance(value, bool):
        return "s", "true" if value else "false"
    if isinstance(value, int | float):
        return "n", float(value)
    return "s", str(value).strip().lower()


class Query:
    def __init__(self, index: Index, inputs: QueryInputs) -> None:
        self.index = index
        self.inputs = inputs
        self.allowed: frozenset[int] | None = None
        if inputs.search_on is not None:
            self.allowed = frozenset(index.fields_matching(inputs.search_on))

    # -- term derivations --

    def _typo_fields(self) -> frozenset[int] | None:
        disabled = self.index.typo_policy.disabled_attributes
        if not disabled:
            return self.allowed
        base = self.index.searchable_field_ids() if self.allowed is None else self.allowed
        return frozenset(base - self.index.fields_matching(disabled))

    def _term_match(self, term: QueryTerm) -> TermMatch:
        key = (
            term.word,
            term.phrase,
            term.is_prefix,
            term.max_typos,
            tuple(term.synonyms),
            self.allowed,
        )
        found: Derivation | None = self.index.term_cache.get(key)
        if found is None:
            found = self.index.term_cache[key] = self._derive(term)
        data = TermData(term, found.docs, found.by_typo)
        return TermMatch(key, data, found.words, found.exact_id, found.phrases)

    def _derive(self, term: QueryTerm) -> Derivation:
        vocab = self.index.vocab
        if term.phrase is not None:
            ids = [vocab.ids.get(w) for w in term.phrase]
            if any(i is None for i in ids):
                return Derivation(set(), [set()], {}, None, [])
            phrase = tuple(i for i in ids if i is not None)
            docs = self._phrase_docs(phrase)
            return Derivation(docs, [docs], {}, None, [phrase])
        levels: dict[int, int] = {}
        exact_id = vocab.ids.get(term.word)
        if exact_id is not None:
            levels[exact_id] = 0
        if term.is_prefix:
            levels.update(dict.fromkeys(vocab.prefixed(term.word), 0))
        for word_id, typos in vocab.typo_variants(
            term.word, term.max_typos, term.is_prefix
        ).items():
            levels.setdefault(word_id, typos)
        phrases: list[tuple[int, ...]] = []
        for synonym in term.synonyms:
            synonym_ids = [vocab.ids.get(w) for w in synonym]
            if any(i is None for i in synonym_ids):
                continue
            if len(synonym_ids) == 1 and synonym_ids[0] is not None:
                levels.setdefault(synonym_ids[0], 0)
            else:
                phrases.append(tuple(i for i in synonym_ids if i is not None))
        by_typo: list[set[int]] = [set(), set(), set()]
        typo_fields = self._typo_fields()
        for word_id, typos in levels.items():
            fields = self.allowed if typos == 0 else typo_fields
            self.index.add_word_docs(by_typo[typos], word_id, fields)
        for phrase in phrases:
            by_typo[0] |= self._phrase_docs(phrase)
        by_typo[1] -= by_typo[0]
        by_typo[2] -= by_typo[0] | by_typo[1]
        docs = by_typo[0] | by_typo[1] | by_typo[2]
        return Derivation(docs, by_typo, levels, exact_id, phrases)

    def _phrase_docs(self, phrase: tuple[int, ...]) -> set[int]:
        docs: set[int] | None = None
        for word_id in sorted(
            set(phrase), key=lambda w: len(self.index.word_docs(w, self.allowed))
        ):
            found = self.index.word_docs(word_id, self.allowed)
            docs = found if docs is None else docs & found
            if not docs:
                return set()
        if docs is None or len(phrase) == 1:
            return docs or set()
        return {d for d in docs if self.phrase_positions(d, phrase)}

    def fields(self) -> AbstractSet[int]:
        return self.index.searchable_field_ids() if self.allowed is None else self.allowed

    def doc_fields(self, doc: int) -> Iterator[tuple[int, Any, Any]]:
        for field_id, tokens, breaks in self.index.doc_fields(doc):
            if self.allowed is None or field_id in self.allowed:
                yield field_id, tokens, breaks

    def phrase_positions(self, doc: int, phrase: tuple[int, ...]) -> list[tuple[int, int]]:
        found = []
        size = len(phrase)
        for field_id, tokens, breaks in self.doc_fields(doc):
            for index in indices(tokens, phrase[0]):
                if tuple(tokens[index : index + size]) != phrase:
                    continue
                if breaks and bisect_right(breaks, index) != bisect_right(breaks, index + size - 1):
                    continue
                found.append((field_id, position_of(index, breaks)))
        return found

    # -- pipeline --

    def _sort_rule(self, rule: SortRule) -> RuleFn:
        if rule.geo_point is not None:
            return geo_split(rule, self.index.geo_point)
        column = self.index.column(rule.field)
        cache = self.index.term_cache
        key = ("sort", rule.field, rule.ascending)

        def all_groups() -> SortedGroups:
            found: SortedGroups | None = cache.get(key)
            if found is None:
                found = cache[key] = column_groups(column, rule.ascending)
            return found

        return sort_split(rule, column, all_groups)

    def _rules(self, ranker: QueryRanker | None) -> tuple[list[RuleFn], bool]:
        rules: list[RuleFn] = []
        seen: set[str] = set()
        for name in self.index.ranking_rules:
            if name in seen:
                continue
            if name in _QUERY_RULES and ranker is not None:
                # milli inserts `words` before the first rule that needs the query graph.
                if "words" not in seen:
                    seen.add("words")
                    rules.append(ranker.words)
                if name == "attribute":
                    rules.extend((ranker.attribute_rank, ranker.word_position))
                elif name != "words":
                    rules.append(getattr(ranker, _RULE_METHODS[name]))
            elif name == "sort":
                rules.extend(self._sort_rule(rule) for rule in self.inputs.sort)
            elif (custom := custom_rule_field(name)) is not None:
                rules.append(self._sort_rule(SortRule(*custom)))
            seen.add(name)
        if ranker is not None and "words" not in seen:
            rules.append(ranker.words)
        return rules, "attribute" in seen

    def placeholder(self) -> QueryResult:
        rules, _ = self._rules(None)
        source = self.inputs.universe
        universe = set(self.index.all_internal() if source is None else source)
        universe -= self._excluded()
        stream = bucket_sort(universe, rules, ())
        return self._collect(stream, universe, QueryTerms([], {}), False)

    def run(self) -> QueryResult:
        inputs = self.inputs
        cache = self.index.term_cache
        if len(cache) > _TERM_CACHE_LIMIT:
            # The token buffers serve every query; only writes make them stale.
            buffers = cache.get(BUFFERS_KEY)
            cache.clear()
            if buffers is not None:
                cache[BUFFERS_KEY] = buffers
        matches = [self._term_match(term) for term in inputs.terms]
        features = Features(self, matches)
        ranker = QueryRanker(
            [m.data for m in matches], inputs.strategy, features, self.index.max_weight
        )
        required = sorted((matches[i].data.docs for i in ranker.minimal_terms()), key=len)
        candidates = set(required[0])
        for docs in required[1:]:
            candidates &= docs
        if inputs.universe is not None:
            candidates = candidates.intersection(inputs.universe)
        candidates -= self._excluded()
        rules, unified = self._rules(ranker)
        stream = bucket_sort(candidates, rules, tuple(range(len(matches))))
        return self._collect(stream, candidates, self._query_terms(matches), unified)

    def _excluded(self) -> set[int]:
        """Documents holding a negated word (exactly) or a negated phrase."""
        excluded: set[int] = set()
        vocab = self.index.vocab
        for words in self.inputs.negatives:
            ids = [vocab.ids.get(w) for w in words]
            if all(i is not None for i in ids):
                excluded |= self._phrase_docs(tuple(i for i in ids if i is not None))
        return excluded

    def _query_terms(self, matches: list[TermMatch]) -> QueryTerms:
        words = self.index.vocab.words
        typo_words: dict[str, MatchInfo] = {}
        for term_index, match in enumerate(matches):
            term = match.data.term
            for word_id, typos in match.words.items():
                if typos:
                    word = words[word_id]
                    size = min(len(word), len(term.word))
                    typo_words.setdefault(word, MatchInfo(term_index, size, typos, term.is_prefix))
        return QueryTerms(self.inputs.terms, typo_words)

    def _collect(
        self,
        stream: Iterator[tuple[int, tuple[Detail, ...]]],
        candidates: set[int],
        query_terms: QueryTerms,
        unified: bool,
    ) -> QueryResult:
        inputs = self.inputs
        exhaustive = inputs.distinct is not None or inputs.threshold is not None
        ranked: list[RankedHit] = []
        kept: set[int] = set()
        seen: set[tuple[str, Any]] = set()
        for doc, details in stream:
            score = global_score(details)
            if inputs.threshold is not None and score < inputs.threshold:
                continue
            if inputs.distinct is not None:
                keys = {_distinct_key(v) for v in self._field_values(doc, inputs.distinct)}
                if keys & seen:
                    continue
                seen |= keys
            kept.add(doc)
            if len(ranked) < inputs.want:
                shown = details_json(details, unified) if inputs.details else None
                ranked.append(RankedHit(doc, score, shown))
            elif not exhaustive:
                break
        final = kept if exhaustive else candidates
        return QueryResult(ranked, final, len(final), query_terms)

    def _field_values(self, doc: int, field: str) -> list[Any]:
        column = self.index.column(field)
        if column or field in self.index.column_fields:
            return column.get(doc, [])
        flat = flatten(self.index.document(doc))
        return [v for path, vs in flat.items() if is_faceted_by(path, field) for v in vs]


_RULE_METHODS = {
    "typo": "typo",
    "proximity": "proximity",
    "attributeRank": "attribute_rank",
    "wordPosition": "word_position",
    "exactness": "exactness",
}
