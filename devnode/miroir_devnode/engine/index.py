"""One index's documents, inverted word index, facet index and sort columns.

Documents keep a dense internal id (insertion order, kept on replacement, as milli's
docids). Postings are `field id -> word id -> sorted array of internal ids` (with each
document's first position of the word alongside), so
`attributesToSearchOn` and `disableOnAttributes` restrict matches without per-document work;
each document also keeps its searchable fields as compact word-id arrays (with the indices
that follow a hard separator) for the positional ranking rules. Stored documents are orjson
bytes: a search only decodes the hits it returns.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from operator import methodcaller
from typing import Any

import orjson

from .facets import FacetIndex
from .matching import (
    MAX_QUERY_TERMS,
    TypoPolicy,
    Vocabulary,
    normalize_synonyms,
    parse_query,
)
from .patterns import GEO_FIELD, filter_rule_match, flatten, is_faceted_by
from .querying import Query, QueryInputs
from .ranking import QueryResult, SortRule
from .sorting import custom_rule_field
from .tokenizer import TokenizerConfig, field_positions, index_words, normalize, searchable_text
from .vectors import VECTORS, Embeddings, read_embeddings

_TEXT_SETTINGS = {"searchableAttributes", "separatorTokens", "nonSeparatorTokens", "dictionary"}
_COLUMN_SETTINGS = {
    "filterableAttributes",
    "sortableAttributes",
    "distinctAttribute",
    "rankingRules",
}

FieldTokens = tuple[int, "array[int]", "array[int] | None"]


class Index:
    def __init__(self, uid: str, primary_key: str | None, settings: dict[str, Any]) -> None:
        self.uid = uid
        self.primary_key = primary_key
        self.settings: dict[str, Any] = dict(settings)
        self._configure_storage()
        self._configure()
        self.facets = FacetIndex(self._facet_indexed)

    def _configure_storage(self) -> None:
        self.vocab = Vocabulary()
        self._ext_to_int: dict[str, int] = {}
        self._int_to_ext: dict[int, str] = {}
        self._docs: dict[int, bytes] = {}
        self._next_id = 0
        self._field_ids: dict[str, int] = {}
        self._field_names: list[str] = []
        self._weights: list[int | None] = []
        self._searchable_ids: frozenset[int] | None = None
        self._doc_fields: dict[int, list[FieldTokens]] = {}
        self._postings: dict[int, dict[int, array[int]]] = {}  # field id -> word id -> docs
        self._first_positions: dict[int, dict[int, array[int]]] = {}  # aligned with _postings
        # field id -> (word ids of a whole short field as bytes) -> docs, for exactMatch
        self._full_fields: dict[int, dict[bytes, set[int]]] = {}
        self._columns: dict[str, dict[int, list[Any]]] = {}
        self._geo: dict[int, tuple[float, float]] = {}
        self._field_counts: Counter[str] = Counter()
        self.term_cache: dict[Any, Any] = {}
        # embedder name -> internal id -> the document's embeddings
        self.vectors: dict[str, dict[int, Embeddings]] = {}

    # -- settings --

    def _configure(self) -> None:
        settings = self.settings
        self.tokenizer = TokenizerConfig.from_settings(settings)
        searchable = settings.get("searchableAttributes") or ["*"]
        self.searchable: list[str] | None = None if "*" in searchable else list(searchable)
        self.max_weight = 0 if self.searchable is None else max(len(self.searchable) - 1, 0)
        self._weights = [self._weight_of(name) for name in self._field_names]
        self._searchable_ids = None
        self.typo_policy = TypoPolicy.from_settings(settings)
        self.stop_words = frozenset(normalize(w) for w in settings.get("stopWords") or ())
        self.synonyms = normalize_synonyms(settings.get("synonyms") or {}, self.tokenizer)
        self.ranking_rules: list[str] = list(settings.get("rankingRules") or ())
        columns = set(settings.get("sortableAttributes") or ())
        columns.update(f for f, _ in filter(None, map(custom_rule_field, self.ranking_rules)))
        if settings.get("distinctAttribute"):
            columns.add(settings["distinctAttribute"])
        self._column_fields = sorted(columns - {GEO_FIELD})
        self._geo_sortable = GEO_FIELD in columns

    def _weight_of(self, field: str) -> int | None:
        if self.searchable is None:
            return 0
        for weight, attribute in enumerate(self.searchable):
            if is_faceted_by(field, attribute):
                return weight
        return None

    def _facet_indexed(self, path: str) -> bool:
        settings = self.settings
        if any(
            filter_rule_match(rule, path) for rule in settings.get("filterableAttributes") or ()
        ):
            return True
        if any(is_faceted_by(path, f) for f in settings.get("sortableAttributes") or ()):
            return True
        distinct = settings.get("distinctAttribute")
        return isinstance(distinct, str) and is_faceted_by(path, distinct)

    def replace_settings(self, settings: dict[str, Any]) -> None:
        old, self.settings = self.settings, dict(settings)
        changed = {key for key in set(old) | set(settings) if old.get(key) != settings.get(key)}
        self._configure()
        self.term_cache.clear()
        rebuild = changed & (_TEXT_SETTINGS | _COLUMN_SETTINGS | {"embedders"})
        docs = [(i, self.document(i)) for i in self._docs] if rebuild else []
        if "embedders" in changed:
            self.vectors = {}
            for internal, doc in docs:
                self._index_vectors(internal, doc)
        if changed & _TEXT_SETTINGS:
            self.vocab = Vocabulary()
            self._postings.clear()
            self._first_positions.clear()
            self._full_fields.clear()
            self._doc_fields.clear()
            for internal, doc in docs:
                self._index_text(internal, flatten(doc))
        if changed & _COLUMN_SETTINGS:
            self.facets = FacetIndex(self._facet_indexed)
            self._columns.clear()
            self._geo.clear()
            for internal, doc in docs:
                self.facets.add(internal, doc)
                self._index_columns(internal, doc, flatten(doc))

    # -- documents --

    def upsert(self, docs: Iterable[tuple[str, dict[str, Any]]]) -> None:
        self.term_cache.clear()
        for external, doc in docs:
            internal = self._ext_to_int.get(external)
            if internal is None:
                internal = self._next_id
                self._next_id += 1
                self._ext_to_int[external] = internal
                self._int_to_ext[internal] = external
            else:
                self._unindex(internal)
            self._docs[internal] = orjson.dumps(doc)
            self._index_vectors(internal, doc)
            flat = flatten(doc)
            self._index_text(internal, flat)
            self._index_columns(internal, doc, flat)
            self.facets.add(internal, doc)
            self._field_counts.update(doc.keys())

    def get(self, doc_id: str) -> dict[str, Any] | None:
        internal = self._ext_to_int.get(doc_id)
        return None if internal is None else self.document(internal)

    def internal_id(self, doc_id: str) -> int | None:
        return self._ext_to_int.get(doc_id)

    def external_id(self, internal: int) -> str:
        return self._int_to_ext[internal]

    def document(self, internal: int) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self._docs[internal])
        return doc

    def delete(self, doc_ids: Iterable[str]) -> int:
        deleted = 0
        for external in doc_ids:
            internal = self._ext_to_int.pop(external, None)
            if internal is None:
                continue
            self._unindex(internal)
            del self._int_to_ext[internal], self._docs[internal]
            deleted += 1
        if deleted:
            self.term_cache.clear()
        return deleted

    def clear(self) -> int:
        count = len(self._docs)
        self._configure_storage()
        self.facets = FacetIndex(self._facet_indexed)
        return count

    def ids(self) -> Iterator[str]:
        return iter(list(self._int_to_ext.values()))

    def all_internal(self) -> AbstractSet[int]:
        return self._docs.keys()

    def __len__(self) -> int:
        return len(self._docs)

    def field_names(self) -> list[str]:
        """Every top-level field any document had, in the order the index first saw them."""
        return list(self._field_counts)

    def field_distribution(self) -> dict[str, int]:
        return {field: count for field, count in sorted(self._field_counts.items()) if count}

    # -- indexing internals --

    def _field_id(self, path: str) -> int:
        found = self._field_ids.get(path)
        if found is None:
            found = self._field_ids[path] = len(self._field_names)
            self._field_names.append(path)
            self._weights.append(self._weight_of(path))
            self._searchable_ids = None
        return found

    def field_weight(self, field_id: int) -> int:
        return self._weights[field_id] or 0

    def _index_text(self, internal: int, flat: dict[str, list[Any]]) -> None:
        fields: list[FieldTokens] = []
        known = self.vocab.ids
        intern = self.vocab.intern
        newest = internal >= self._next_id - 1
        for path, values in flat.items():
            if path == VECTORS or path.startswith(VECTORS + "."):
                continue  # embeddings are not searchable text
            field_id = self._field_id(path)
            if self._weights[field_id] is None:
                continue
            words: list[str] = []
            breaks: list[int] = []
            for value in values:
                text = searchable_text(value)
                if text is None:
                    continue
                value_words, value_breaks = index_words(text, self.tokenizer)
                if not value_words:
                    continue
                offset = len(words)
                if offset:
                    breaks.append(offset)
                breaks.extend(offset + b for b in value_breaks)
                words.extend(value_words)
            if not words:
                continue
            found = list(map(known.get, words))
            ids: list[int] = list(map(intern, words)) if None in found else found  # type: ignore[assignment]
            tokens = array("I", ids)
            fields.append((field_id, tokens, array("I", breaks) if breaks else None))
            if not breaks and len(ids) <= MAX_QUERY_TERMS:
                full = self._full_fields.setdefault(field_id, {})
                full.setdefault(tokens.tobytes(), set()).add(internal)
            count = len(ids)
            backwards = field_positions(count, breaks)[::-1] if breaks else range(count - 1, -1, -1)
            first = dict(zip(reversed(ids), backwards, strict=True))
            postings = self._postings.setdefault(field_id, {})
            firsts = self._first_positions.setdefault(field_id, {})
            for word_id in set(first).difference(postings):
                postings[word_id] = array("I")
                firsts[word_id] = array("I")
            if newest:
                # The common case (a new document has the highest id): appends in C loops.
                deque(map(methodcaller("append", internal), map(postings.__getitem__, first)), 0)
                deque(map(array.append, map(firsts.__getitem__, first), first.values()), 0)
            else:
                for word_id, position in first.items():
                    docs = postings[word_id]
                    at = bisect_left(docs, internal)
                    docs.insert(at, internal)
                    firsts[word_id].insert(at, position)
        self._doc_fields[internal] = fields

    def _index_columns(
        self, internal: int, doc: dict[str, Any], flat: dict[str, list[Any]]
    ) -> None:
        for column in self._column_fields:
            values = [v for path, vs in flat.items() if is_faceted_by(path, column) for v in vs]
            if values:
                self._columns.setdefault(column, {})[internal] = values
        geo = doc.get(GEO_FIELD)
        if self._geo_sortable and isinstance(geo, dict):
            try:
                self._geo[internal] = (float(geo["lat"]), float(geo["lng"]))
            except (KeyError, TypeError, ValueError):
                pass

    def _index_vectors(self, internal: int, doc: dict[str, Any]) -> None:
        embedders = self.settings.get("embedders") or {}
        for name, embeddings in read_embeddings(doc, embedders).items():
            self.vectors.setdefault(name, {})[internal] = embeddings

    def _unindex(self, internal: int) -> None:
        for by_doc in self.vectors.values():
            by_doc.pop(internal, None)
        doc = self.document(internal)
        self.facets.remove(internal, doc)
        self._field_counts.subtract(doc.keys())
        for column in self._columns.values():
            column.pop(internal, None)
        self._geo.pop(internal, None)
        for field_id, tokens, breaks in self._doc_fields.pop(internal, ()):
            if not breaks and len(tokens) <= MAX_QUERY_TERMS:
                full = self._full_fields[field_id]
                key = tokens.tobytes()
                full[key].discard(internal)
                if not full[key]:
                    del full[key]
            postings = self._postings[field_id]
            firsts = self._first_positions[field_id]
            for word_id in set(tokens):
                docs = postings[word_id]
                at = bisect_left(docs, internal)
                if at < len(docs) and docs[at] == internal:
                    del docs[at]
                    del firsts[word_id][at]
                if not docs:
                    del postings[word_id], firsts[word_id]

    # -- read access for querying --

    def add_word_docs(
        self, target: set[int], word_id: int, fields: AbstractSet[int] | None
    ) -> None:
        for field_id in self.searchable_field_ids() if fields is None else fields:
            postings = self._postings.get(field_id)
            docs = None if postings is None else postings.get(word_id)
            if docs is not None:
                target.update(docs)

    def first_positions(self, word_id: int, field_id: int) -> tuple[array[int], array[int]] | None:
        """Docs holding the word in the field, and the word's first position in each."""
        docs = self._postings.get(field_id, {}).get(word_id)
        if docs is None:
            return None
        return docs, self._first_positions[field_id][word_id]

    def full_field_docs(self, key: bytes, fields: AbstractSet[int] | None) -> set[int]:
        found: set[int] = set()
        for field_id in self.searchable_field_ids() if fields is None else fields:
            found.update(self._full_fields.get(field_id, {}).get(key, ()))
        return found

    def searchable_field_ids(self) -> frozenset[int]:
        if self._searchable_ids is None:
            self._searchable_ids = frozenset(
                i for i, weight in enumerate(self._weights) if weight is not None
            )
        return self._searchable_ids

    @property
    def column_fields(self) -> list[str]:
        return self._column_fields

    def word_docs(self, word_id: int, fields: AbstractSet[int] | None) -> set[int]:
        found: set[int] = set()
        self.add_word_docs(found, word_id, fields)
        return found

    def doc_fields(self, internal: int) -> list[FieldTokens]:
        return self._doc_fields.get(internal, [])

    def column(self, field: str) -> dict[int, list[Any]]:
        return self._columns.get(field, {})

    def geo_point(self, internal: int) -> tuple[float, float] | None:
        return self._geo.get(internal)

    def fields_matching(self, attributes: Iterable[str]) -> set[int]:
        wanted = list(attributes)
        return {
            field_id
            for field_id, name in enumerate(self._field_names)
            if self._weights[field_id] is not None and any(is_faceted_by(name, a) for a in wanted)
        }

    def query(
        self,
        q: str | None,
        *,
        universe: AbstractSet[int] | None = None,
        matching_strategy: str = "last",
        search_on: list[str] | None = None,
        sort: Iterable[SortRule] = (),
        distinct: str | None = None,
        want: int = 20,
        threshold: float | None = None,
        details: bool = False,
    ) -> QueryResult:
        terms, negatives = parse_query(
            q or "", self.tokenizer, self.typo_policy, self.stop_words, self.synonyms
        )
        if terms and self.settings.get("prefixSearch") == "disabled":
            terms[-1].is_prefix = False
        inputs = QueryInputs(
            terms=terms,
            negatives=negatives,
            universe=universe,
            strategy=matching_strategy,
            search_on=search_on,
            sort=list(sort),
            distinct=distinct,
            want=want,
            threshold=threshold,
            details=details,
        )
        if not terms:
            return Query(self, inputs).placeholder()
        return Query(self, inputs).run()
