"""The search shortcuts (length-bucketed typo scans, the adjacency pass of the proximity
rule, whole-field token buffers) must give exactly the results of the plain computation."""

from __future__ import annotations

import random
from typing import Any

import pytest

from miroir_devnode.engine import features, matching, ranking
from miroir_devnode.engine.features import Features
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.matching import Vocabulary, bounded_distance

RULES = ["words", "typo", "proximity", "attribute", "exactness"]
WORDS = ["alpha", "alpah", "beta", "gamma", "gamme", "delta", "omega", "sigma", "tau", "pi"]


def _corpus(seed: int, count: int) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        body = " ".join(
            rng.choice(WORDS) + rng.choice(["", "", "", ".", ","])
            for _ in range(rng.randint(1, 14))
        )
        title = [" ".join(rng.choices(WORDS, k=2)), rng.choice(WORDS)]
        docs.append((str(i), {"id": i, "title": title, "body": body}))
    return docs


def _results(index: Index, q: str, **kwargs: Any) -> list[tuple[str, float, Any]]:
    result = index.query(q, want=1000, details=True, **kwargs)
    return [(index.external_id(h.internal_id), h.score, h.details) for h in result.ranked]


QUERIES = ["alpha beta", "beta alpha gamma", "gamma gamma", "alpha bet", "delta omeg", "tau pi"]


@pytest.mark.parametrize("path", ["plain", "per_document", "buffers"])
def test_proximity_shortcuts_keep_scores_and_order(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = Index("t", "id", {"rankingRules": RULES, "searchableAttributes": ["title", "body"]})
    index.upsert(_corpus(3, 300))
    with monkeypatch.context() as patch:
        patch.setattr(Features, "adjacent_docs", lambda *_: None)
        expected = {q: _results(index, q) for q in QUERIES}
        expected["only"] = _results(index, "alpha beta", search_on=["body"])
    if path == "per_document":
        monkeypatch.setattr(features, "token_buffers", lambda *_: None)
    elif path == "buffers":
        build = features.token_buffers
        monkeypatch.setattr(features, "token_buffers", lambda index, _: build(index, True))
    index.term_cache.clear()
    found = {q: _results(index, q) for q in QUERIES}
    found["only"] = _results(index, "alpha beta", search_on=["body"])
    assert found == expected
    assert any(hits for hits in expected.values())


def test_adjacency_respects_hard_separators_and_document_bounds() -> None:
    index = Index("t", "id", {"rankingRules": RULES})
    index.upsert(
        [
            ("a", {"id": 0, "body": "alpha. beta"}),  # a sentence ends between the words
            ("b", {"id": 1, "body": "x alpha", "more": "beta"}),  # different fields
            ("c", {"id": 2, "body": "beta alpha beta"}),
            ("d", {"id": 3, "body": "alpha"}),
            ("e", {"id": 4, "body": "beta tau"}),  # follows "alpha" of `d` in the buffer
        ]
    )
    for build in (False, True):
        index.upsert([])  # forget the buffers
        if build:
            features.token_buffers(index, True)
        ranked = index.query("alpha beta", want=10, details=True).ranked
        proximity = {index.external_id(h.internal_id): h.details["proximity"] for h in ranked}  # type: ignore[index]
        assert proximity["c"]["score"] == 1.0
        assert all(proximity[doc]["score"] < 1.0 for doc in "ab")


def _brute_force(vocab: Vocabulary, word: str, typos: int, prefix: bool) -> dict[int, int]:
    found = {}
    for word_id, candidate in enumerate(vocab.words):
        if candidate == word or (prefix and candidate.startswith(word)):
            continue
        distance = bounded_distance(word, candidate, typos, prefix)
        if 0 < distance <= typos:
            found[word_id] = distance
    return found


def test_typo_variants_match_a_full_scan_in_id_order(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    vocab = Vocabulary()
    for _ in range(3000):
        vocab.intern("".join(rng.choice("abcde") for _ in range(rng.randint(2, 11))))
    for word in ("abcde", "abcdeabcd", "eeddcc", "aabbccdde"):
        for prefix in (False, True):
            typos = 2 if len(word) >= 9 else 1
            expected = _brute_force(vocab, word, typos, prefix)
            assert vocab.typo_variants(word, typos, prefix) == expected
            assert list(vocab.typo_variants(word, typos, prefix)) == sorted(expected)
    monkeypatch.setattr(matching, "MAX_TYPO_DERIVATIONS", 5)
    capped = vocab.typo_variants("abcdeabcd", 2, True)
    assert list(capped) == sorted(_brute_force(vocab, "abcdeabcd", 2, True))[:5]


def test_word_position_cost_classes_match_per_document_costs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = Index("t", "id", {"rankingRules": ["wordPosition", "words", "typo"]})
    index.upsert(_corpus(5, 300))
    queries = [*QUERIES, 'beta "alpha gamma"', "omega sigma delta"]
    monkeypatch.setattr(ranking, "_CLASSED_POSITION_MIN", 10**9)
    expected = {q: _results(index, q) for q in queries}
    monkeypatch.setattr(ranking, "_CLASSED_POSITION_MIN", 0)
    index.term_cache.clear()
    assert {q: _results(index, q) for q in queries} == expected
    assert len({tuple(s for _, s, _ in hits) for hits in expected.values()}) > 1


def _closest_from_matches(self: Features, doc: int, term: int, position: int) -> int | None:
    fields = self.matches(doc).by_term[term].values()
    return min((abs(p - position) for ps in fields for p in ps), default=None)


def test_closest_distance_scans_only_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    index = Index("t", "id", {"rankingRules": ["wordPosition", "words"]})
    index.upsert(_corpus(8, 200))
    queries = ["tau gamma alpha", "pi delta omeg", "sigma alpah", 'tau "beta alpha"']
    with monkeypatch.context() as patch:
        patch.setattr(Features, "closest_distance", _closest_from_matches)
        expected = {q: _results(index, q) for q in queries}
    index.term_cache.clear()
    assert {q: _results(index, q) for q in queries} == expected
