"""Tokenizer, query parsing and word matching (prefix, typo) of the devnode engine."""

from __future__ import annotations

import random

import pytest

from miroir_devnode.engine.matching import (
    TypoPolicy,
    Vocabulary,
    damerau_levenshtein,
    normalize_synonyms,
    parse_query,
    prefix_distance,
)
from miroir_devnode.engine.tokenizer import (
    TokenizerConfig,
    index_words,
    normalize,
    query_words,
    tokenize,
)

DEFAULT = TokenizerConfig()
POLICY = TypoPolicy()


def test_normalize_lowercases_and_strips_accents() -> None:
    assert normalize("Éléphant") == "elephant"
    assert normalize("CAFÉ") == "cafe"
    assert normalize("Ａｂ") == "ab"  # NFKD folds full-width forms


def test_tokenize_words_offsets_and_positions() -> None:
    text = "Hello, wörld! Fine_day (ok)"
    tokens = tokenize(text)
    assert [t.word for t in tokens] == ["hello", "world", "fine", "day", "ok"]
    world = tokens[1]
    assert text[world.char_start : world.char_start + world.char_len] == "wörld"
    assert world.byte_start == len(b"Hello, ")
    assert world.byte_len == len("wörld".encode())
    fine = tokens[2]
    assert fine.byte_start == len("Hello, wörld! ".encode())
    # "!" and "(" are hard separators: +8 instead of +1.
    assert [t.position for t in tokens] == [0, 1, 9, 10, 18]


def test_index_words_reports_hard_breaks() -> None:
    words, breaks = index_words("One two. Three; four five", DEFAULT)
    assert words == ["one", "two", "three", "four", "five"]
    assert breaks == [2, 3]
    assert index_words("plain words here", DEFAULT) == (["plain", "words", "here"], [])


def test_custom_separators_non_separators_and_dictionary() -> None:
    config = TokenizerConfig(separators=("x",), non_separators=("@", "#"), dictionary=("J.R.R.",))
    assert query_words("c# and foo@bar", config) == ["c#", "and", "foo@bar"]
    assert query_words("boxcar", config) == ["bo", "car"]
    assert query_words("J.R.R. Tolkien", config) == ["j.r.r.", "tolkien"]
    assert query_words("J.R.R. Tolkien", DEFAULT) == ["j", "r", "r", "tolkien"]


def test_config_from_settings() -> None:
    config = TokenizerConfig.from_settings(
        {"separatorTokens": ["&"], "nonSeparatorTokens": [], "dictionary": ["a.b"]}
    )
    assert config == TokenizerConfig(separators=("&",), dictionary=("a.b",))


def parse(q: str, stop: frozenset[str] = frozenset()) -> list[tuple[str, bool, int]]:
    return [
        (t.word, t.is_prefix, t.max_typos) for t in parse_query(q, DEFAULT, POLICY, stop, {})[0]
    ]


def test_last_word_is_prefix_unless_followed_by_separator() -> None:
    assert parse("hello wor") == [("hello", False, 1), ("wor", True, 0)]
    assert parse("hello wor ") == [("hello", False, 1), ("wor", False, 0)]
    assert parse("hello wor,") == [("hello", False, 1), ("wor", False, 0)]


def test_typo_budget_follows_word_length() -> None:
    assert [m for *_, m in parse("abcd abcde abcdefgh abcdefghi ")] == [0, 1, 1, 2]
    policy = TypoPolicy(disabled_words=frozenset({"abcdefghi"}), disable_on_numbers=True)
    terms, _ = parse_query("abcdefghi 123456789 ", DEFAULT, policy, frozenset(), {})
    assert [t.max_typos for t in terms] == [0, 0]
    assert TypoPolicy(enabled=False).max_typos("abcdefghij") == 0
    assert TypoPolicy(one_typo=2, two_typos=3).max_typos("abc") == 2


def test_phrases_stop_words_and_word_limit() -> None:
    terms, _ = parse_query('the "new york" city', DEFAULT, POLICY, frozenset({"the"}), {})
    assert [(t.word, t.phrase, t.position) for t in terms] == [
        ("new", ("new", "york"), 1),
        ("city", None, 3),
    ]
    assert terms[-1].is_prefix
    assert len(parse(" ".join(f"w{i}" for i in range(15)))) == 10


def test_negative_words_and_phrases() -> None:
    terms, negatives = parse_query(
        'matrix -reloaded -"the end" a-b', DEFAULT, POLICY, frozenset(), {}
    )
    assert [t.word for t in terms] == ["matrix", "a", "b"]
    assert negatives == [("reloaded",), ("the", "end")]
    assert terms[-1].is_prefix
    terms, negatives = parse_query("matrix -reloaded", DEFAULT, POLICY, frozenset(), {})
    assert not terms[0].is_prefix and negatives == [("reloaded",)]


def test_synonyms_are_normalized_single_word_keys() -> None:
    table = normalize_synonyms({"NYC": ["New York", "big apple"], "a b": ["c"]}, DEFAULT)
    assert table == {"nyc": [("new", "york"), ("big", "apple")]}


def test_damerau_levenshtein() -> None:
    assert damerau_levenshtein("kitten", "sitting") == 3
    assert damerau_levenshtein("hello", "hlelo") == 1
    assert damerau_levenshtein("hello", "hello") == 0
    assert damerau_levenshtein("", "abc") == 3
    assert prefix_distance("helo", "hello world", 1) == 1


@pytest.fixture
def vocab() -> Vocabulary:
    words = Vocabulary()
    for word in [
        "hello",
        "help",
        "helmet",
        "hallo",
        "world",
        "hlelo",
        "yellow",
        "hellos",
        "mellow",
    ]:
        words.intern(word)
    return words


def names(vocab: Vocabulary, ids: dict[int, int]) -> dict[str, int]:
    return {vocab.words[i]: typos for i, typos in ids.items()}


def test_prefix_lookup(vocab: Vocabulary) -> None:
    assert sorted(vocab.words[i] for i in vocab.prefixed("hel")) == [
        "hello",
        "hellos",
        "helmet",
        "help",
    ]
    assert vocab.prefixed("zzz") == []


def test_typo_variants_exact_words(vocab: Vocabulary) -> None:
    assert names(vocab, vocab.typo_variants("hello", 1, prefix=False)) == {
        "hallo": 1,
        "hlelo": 1,
        "hellos": 1,
    }
    two = names(vocab, vocab.typo_variants("hello", 2, prefix=False))
    assert two["yellow"] == 2 and two["mellow"] == 2 and two["help"] == 2
    assert vocab.typo_variants("hello", 0, prefix=False) == {}


def test_two_typo_candidates_are_never_missed() -> None:
    rng = random.Random(1)
    letters = "abcd"
    vocab = Vocabulary()
    word = "abcdabcdab"
    expected: dict[str, int] = {}
    for _ in range(600):  # stays under MAX_TYPO_DERIVATIONS
        candidate = list(word)
        for _ in range(2):
            edit = rng.randrange(4)
            at = rng.randrange(len(candidate))
            if edit == 0:
                candidate[at] = rng.choice(letters)
            elif edit == 1:
                del candidate[at]
            elif edit == 2:
                candidate.insert(at, rng.choice(letters))
            elif at + 1 < len(candidate):
                candidate[at], candidate[at + 1] = candidate[at + 1], candidate[at]
        text = "".join(candidate)
        distance = damerau_levenshtein(word, text)
        vocab.intern(text)
        if 0 < distance <= 2:
            expected[text] = distance
    assert names(vocab, vocab.typo_variants(word, 2, prefix=False)) == expected


def test_typo_variants_prefix_words(vocab: Vocabulary) -> None:
    found = names(vocab, vocab.typo_variants("hallo", 1, prefix=True))
    # words starting with something one edit away from "hallo"; exact prefixes are excluded
    assert found == {"hello": 1, "hellos": 1}
