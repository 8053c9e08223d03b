"""Query parsing and word matching: which indexed words each query term stands for.

A term derives exact words, prefix completions (the last word only), typo variants
(Damerau-Levenshtein, optimal string alignment, within the `typoTolerance` budget) and
synonyms. Typo candidates come from regex passes over the newline-joined vocabulary, one per
word length the edits can reach: the regex is a trie of every edit pattern of the query word,
so the scan runs in C and only real candidates reach the Python distance check.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from .tokenizer import TokenizerConfig, is_number, tokenize

MAX_QUERY_TERMS = 10
MAX_TYPO_DERIVATIONS = 1000
_Pattern = tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class TypoPolicy:
    enabled: bool = True
    one_typo: int = 5
    two_typos: int = 9
    disabled_words: frozenset[str] = frozenset()
    disabled_attributes: tuple[str, ...] = ()
    disable_on_numbers: bool = False

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> TypoPolicy:
        from .tokenizer import normalize

        typo = settings.get("typoTolerance") or {}
        sizes = typo.get("minWordSizeForTypos") or {}
        return cls(
            enabled=bool(typo.get("enabled", True)),
            one_typo=int(sizes.get("oneTypo", 5)),
            two_typos=int(sizes.get("twoTypos", 9)),
            disabled_words=frozenset(normalize(w) for w in typo.get("disableOnWords") or ()),
            disabled_attributes=tuple(typo.get("disableOnAttributes") or ()),
            disable_on_numbers=bool(typo.get("disableOnNumbers", False)),
        )

    def max_typos(self, word: str) -> int:
        if not self.enabled or word in self.disabled_words:
            return 0
        if self.disable_on_numbers and is_number(word):
            return 0
        size = len(word)
        return 2 if size >= self.two_typos else 1 if size >= self.one_typo else 0


@dataclass(slots=True)
class QueryTerm:
    """One query word or quoted phrase; `position` is its word position in the query."""

    position: int
    word: str
    phrase: tuple[str, ...] | None = None
    is_prefix: bool = False
    max_typos: int = 0
    synonyms: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def width(self) -> int:
        return len(self.phrase) if self.phrase else 1


def _negated(text: str, start: int) -> bool:
    """A `-` glued to the front of a word or phrase, itself after a space or the start."""
    return start > 0 and text[start - 1] == "-" and (start == 1 or text[start - 2].isspace())


def parse_query(
    q: str,
    config: TokenizerConfig,
    policy: TypoPolicy,
    stop_words: frozenset[str],
    synonyms: dict[str, list[tuple[str, ...]]],
) -> tuple[list[QueryTerm], list[tuple[str, ...]]]:
    """Positive terms, and the negated words/phrases (`-word`, `-"a phrase"`) to exclude."""
    terms: list[QueryTerm] = []
    negatives: list[tuple[str, ...]] = []
    position = 0
    ends_with_word = False
    segments = q.split('"')
    for number, segment in enumerate(segments):
        tokens = tokenize(segment, config)
        if number % 2 == 1:
            if tokens:
                phrase = tuple(t.word for t in tokens)
                previous = segments[number - 1]
                if _negated(previous, len(previous)):
                    negatives.append(phrase)
                else:
                    terms.append(QueryTerm(position, phrase[0], phrase=phrase))
                    position += len(phrase)
            ends_with_word = False
            continue
        for token in tokens:
            ends_with_word = False
            if _negated(segment, token.char_start):
                negatives.append((token.word,))
            elif token.word not in stop_words:
                ends_with_word = token.char_start + token.char_len == len(segment)
                terms.append(
                    QueryTerm(
                        position,
                        token.word,
                        max_typos=policy.max_typos(token.word),
                        synonyms=synonyms.get(token.word, []),
                    )
                )
            position += 1
        if not tokens:
            ends_with_word = False
    terms = terms[:MAX_QUERY_TERMS]
    last = terms[-1] if terms else None
    if last is not None and last.phrase is None and ends_with_word and len(segments) % 2 == 1:
        last.is_prefix = True
    return terms, negatives


def normalize_synonyms(
    raw: dict[str, list[str]], config: TokenizerConfig
) -> dict[str, list[tuple[str, ...]]]:
    """Single-word synonym keys only; each alternative is a word or a phrase."""
    table: dict[str, list[tuple[str, ...]]] = {}
    for key, alternatives in raw.items():
        key_words = [t.word for t in tokenize(key, config)]
        if len(key_words) != 1:
            continue
        for alternative in alternatives:
            words = tuple(t.word for t in tokenize(alternative, config))
            if words and words != (key_words[0],):
                table.setdefault(key_words[0], []).append(words)
    return table


def damerau_levenshtein(a: str, b: str) -> int:
    """Optimal string alignment distance."""
    if a == b:
        return 0
    rows = len(a) + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, rows):
        current = [i] + [0] * len(b)
        ca = a[i - 1]
        for j in range(1, len(b) + 1):
            cb = b[j - 1]
            cost = 0 if ca == cb else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
        previous2, previous = previous, current
    return previous[-1]


def bounded_distance(word: str, candidate: str, limit: int, prefix: bool = False) -> int:
    """Optimal string alignment distance if it is <= limit, else limit + 1; with `prefix`,
    the distance to the closest prefix of `candidate`. Only the diagonal band is computed."""
    if prefix:
        candidate = candidate[: len(word) + limit]
    elif abs(len(word) - len(candidate)) > limit:
        return limit + 1
    over = limit + 1
    width = len(candidate)
    before: list[int] = []
    previous = [j if j <= limit else over for j in range(width + 1)]
    for i in range(1, len(word) + 1):
        current = [i if i <= limit else over] + [over] * width
        low, high = max(1, i - limit), min(width, i + limit)
        letter = word[i - 1]
        for j in range(low, high + 1):
            other = candidate[j - 1]
            value = previous[j - 1] + (letter != other)
            if previous[j] + 1 < value:
                value = previous[j] + 1
            if current[j - 1] + 1 < value:
                value = current[j - 1] + 1
            if j > 1 and i > 1 and letter == candidate[j - 2] and word[i - 2] == other:
                value = min(value, before[j - 2] + 1)
            current[j] = value
        if min(current[max(0, low - 1) : high + 1]) > limit:
            return over
        before, previous = previous, current
    if prefix:
        return min(previous[max(0, len(word) - limit) :], default=over)
    return min(previous[width], over)


def prefix_distance(word: str, candidate: str, limit: int) -> int:
    """Smallest distance between `word` and any prefix of `candidate` (limit + 1 if above)."""
    return bounded_distance(word, candidate, limit, prefix=True)


def _edits(pattern: _Pattern) -> set[_Pattern]:
    out: set[_Pattern] = set()
    size = len(pattern)
    for i in range(size):
        out.add(pattern[:i] + pattern[i + 1 :])
        out.add((*pattern[:i], None, *pattern[i + 1 :]))
        if i + 1 < size and pattern[i] != pattern[i + 1]:
            out.add((*pattern[:i], pattern[i + 1], pattern[i], *pattern[i + 2 :]))
    for i in range(size + 1):
        out.add((*pattern[:i], None, *pattern[i:]))
    return out


def _trie_regex(patterns: Iterable[_Pattern]) -> str:
    trie: dict[Any, Any] = {}
    for pattern in patterns:
        node = trie
        for char in pattern:
            node = node.setdefault(char, {})
        node[""] = {}

    def render(node: dict[Any, Any]) -> str:
        branches = []
        for char, child in node.items():
            if char == "":
                branches.append("")
                continue
            head = "[^\\n]" if char is None else re.escape(char)
            branches.append(head + render(child))
        if len(branches) == 1:
            return branches[0]
        return "(?:" + "|".join(branches) + ")"

    return render(trie)


def _two_typo_source(word: str) -> str:
    """A superset filter for words within two edits: the word with at most two edit windows.

    Each edit touches at most two consecutive letters of `word` and turns a region of m
    letters holding e edits into at most m + e letters, so the word is literal outside two
    (possibly merged) regions that become bounded wildcards. ~L²/2 small alternatives
    compile far faster than the exact edit trie; the distance check then filters exactly.
    """
    size = len(word)
    branches = set()
    for first in range(size + 1):
        for second in range(first, size + 1):
            if second < first + 2:
                regions = [(first, min(second + 2, size), 2)]
            else:
                regions = [(first, min(first + 2, size), 1), (second, min(second + 2, size), 1)]
            parts, cursor = [], 0
            for start, end, edits in regions:
                parts.append(re.escape(word[cursor:start]))
                parts.append(f"[^\\n]{{0,{end - start + edits}}}")
                cursor = end
            parts.append(re.escape(word[cursor:]))
            branches.add("".join(parts))
    return "(?:" + "|".join(sorted(branches)) + ")"


@lru_cache(maxsize=1024)
def _typo_regex(word: str, max_typos: int, prefix: bool) -> re.Pattern[str]:
    """Matches, line by line, every word within `max_typos` edits (of a prefix, if `prefix`)."""
    if max_typos >= 2:
        source = _two_typo_source(word)
    else:
        source = _trie_regex({tuple(word)} | _edits(tuple(word)))
    tail = "[^\\n]*" if prefix else ""
    return re.compile(f"^{source}{tail}$", re.MULTILINE)


class Vocabulary:
    """Word <-> id table with prefix and typo lookups; ids are never reused."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.words: list[str] = []
        self._sorted: list[str] | None = None
        self._blobs: dict[int, str] | None = None  # word length -> newline-joined words

    def __len__(self) -> int:
        return len(self.words)

    def intern(self, word: str) -> int:
        found = self.ids.get(word)
        if found is None:
            found = self.ids[word] = len(self.words)
            self.words.append(word)
            self._sorted = None
            self._blobs = None
        return found

    def prefixed(self, prefix: str) -> list[int]:
        if self._sorted is None:
            self._sorted = sorted(self.words)
        start = bisect.bisect_left(self._sorted, prefix)
        end = bisect.bisect_left(self._sorted, prefix + "\U0010ffff")
        ids = self.ids
        return [ids[w] for w in self._sorted[start:end]]

    def _length_blobs(self) -> dict[int, str]:
        if self._blobs is None:
            groups: dict[int, list[str]] = {}
            for word in self.words:
                groups.setdefault(len(word), []).append(word)
            self._blobs = {size: "\n".join(words) for size, words in groups.items()}
        return self._blobs

    def typo_variants(self, word: str, max_typos: int, prefix: bool) -> dict[int, int]:
        """Ids of words within 1..max_typos edits of `word` (of a prefix of them if `prefix`).

        Only words of a length the edits can reach are scanned; candidates are then checked
        in id order so the MAX_TYPO_DERIVATIONS cut keeps the same words whatever the scan.
        """
        if max_typos <= 0 or not self.words:
            return {}
        regex = _typo_regex(word, max_typos, prefix)
        shortest = len(word) - max_typos
        longest = len(word) + max_typos
        ids = self.ids
        candidates: list[int] = []
        for size, blob in self._length_blobs().items():
            if size >= shortest and (prefix or size <= longest):
                candidates.extend(map(ids.__getitem__, regex.findall(blob)))
        candidates.sort()
        found: dict[int, int] = {}
        words = self.words
        for word_id in candidates:
            candidate = words[word_id]
            if candidate == word or (prefix and candidate.startswith(word)):
                continue
            distance = bounded_distance(word, candidate, max_typos, prefix)
            if 0 < distance <= max_typos:
                found[word_id] = distance
                if len(found) >= MAX_TYPO_DERIVATIONS:
                    break
        return found


class MatchInfo(NamedTuple):
    term: int
    matched_chars: int
    typos: int
    is_prefix: bool


class QueryTerms:
    """What the highlighter needs: does a normalized document word match the query, and how much."""

    def __init__(self, terms: list[QueryTerm], typo_words: dict[str, MatchInfo]) -> None:
        self.terms = terms
        self._words: dict[str, MatchInfo] = dict(typo_words)
        self._prefixes: list[tuple[str, int]] = []
        for index, term in enumerate(terms):
            for word in term.phrase or (term.word,):
                self._words.setdefault(word, MatchInfo(index, len(word), 0, False))
            for synonym in term.synonyms:
                for word in synonym:
                    self._words.setdefault(word, MatchInfo(index, len(word), 0, False))
            if term.is_prefix:
                self._prefixes.append((term.word, index))

    def match(self, word: str) -> MatchInfo | None:
        found = self._words.get(word)
        if found is not None:
            return found
        for prefix, index in self._prefixes:
            if word.startswith(prefix):
                return MatchInfo(index, len(prefix), 0, True)
        return None

    @property
    def is_empty(self) -> bool:
        return not self.terms
