"""Word segmentation and normalization, shared by indexing, query parsing and highlighting.

Words are runs of Unicode letters and digits (`_` separates, as in Meilisearch's charabia);
`nonSeparatorTokens` glue extra characters into words, `separatorTokens` split words and
`dictionary` entries are kept whole. Positions count words; a hard separator (end of
sentence, brackets, new line) or the boundary between two array items advances the position
by 8 instead of 1, so words on either side are never "close" for the proximity rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise
from typing import Any, NamedTuple

HARD_GAP = 8
_HARD_SEPARATORS = frozenset(".!?;\n\r()[]{}")
_DEFAULT_WORD = re.compile(r"[^\W_]+")
_ASCII_WORD_BYTES = bytes(
    c if chr(c).isalnum() else 10 if chr(c) in _HARD_SEPARATORS else 32 for c in range(256)
)
_HARD_SPLIT = re.compile(r"[.!?;\n\r()\[\]{}]+")


class Token(NamedTuple):
    word: str
    char_start: int
    char_len: int
    byte_start: int
    byte_len: int
    position: int


@lru_cache(maxsize=65536)
def normalize(word: str) -> str:
    lowered = word.lower()
    if lowered.isascii():
        return lowered
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize_text(text: str) -> str:
    """`normalize` for a whole field; word boundaries are unchanged for indexing purposes."""
    lowered = text.lower()
    if lowered.isascii():
        return lowered
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True, slots=True)
class TokenizerConfig:
    separators: tuple[str, ...] = ()
    non_separators: tuple[str, ...] = ()
    dictionary: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> TokenizerConfig:
        return cls(
            separators=tuple(settings.get("separatorTokens") or ()),
            non_separators=tuple(settings.get("nonSeparatorTokens") or ()),
            dictionary=tuple(settings.get("dictionary") or ()),
        )

    @property
    def word_pattern(self) -> re.Pattern[str]:
        return _word_pattern(self)


@lru_cache(maxsize=64)
def _word_pattern(config: TokenizerConfig) -> re.Pattern[str]:
    if not (config.separators or config.non_separators or config.dictionary):
        return _DEFAULT_WORD

    def alternation(items: tuple[str, ...]) -> str:
        return "|".join(re.escape(i) for i in sorted(set(items), key=len, reverse=True) if i)

    unit = r"[^\W_]"
    if config.non_separators:
        unit = rf"(?:{alternation(config.non_separators)}|[^\W_])"
    if config.separators:
        unit = rf"(?:(?!{alternation(config.separators)}){unit})"
    word = f"{unit}+"
    if config.dictionary:
        # Dictionary entries are tried first and must end on a word boundary of their own.
        word = rf"(?:{alternation(config.dictionary)})|{word}"
    return re.compile(word, re.IGNORECASE)


DEFAULT_CONFIG = TokenizerConfig()


def _has_hard_separator(gap: str) -> bool:
    return any(c in _HARD_SEPARATORS for c in gap)


def tokenize(text: str, config: TokenizerConfig = DEFAULT_CONFIG) -> list[Token]:
    """Tokens with their char and UTF-8 byte offsets in `text` (for highlighting and cropping)."""
    tokens: list[Token] = []
    position = -1
    previous_end = 0
    byte_cursor = 0
    char_cursor = 0
    ascii_text = text.isascii()
    for match in config.word_pattern.finditer(text):
        start, end = match.span()
        gap = text[previous_end:start]
        if position < 0:
            position = 0
        else:
            position += HARD_GAP if _has_hard_separator(gap) else 1
        if ascii_text:
            byte_start, byte_len = start, end - start
        else:
            byte_cursor += len(text[char_cursor:start].encode())
            byte_start = byte_cursor
            byte_len = len(match.group().encode())
            byte_cursor += byte_len
            char_cursor = end
        tokens.append(
            Token(normalize(match.group()), start, end - start, byte_start, byte_len, position)
        )
        previous_end = end
    return tokens


def index_words(text: str, config: TokenizerConfig) -> tuple[list[str], list[int]]:
    """Normalized words of a field value and the word indices that follow a hard separator.

    The indexing hot path, no offsets. ASCII text with the default configuration is split by
    C-level `translate` (hard separators become new lines) and `split`, 8x faster than the
    regex; everything else goes through the word pattern.
    """
    normalized = normalize_text(text)
    if config.dictionary:
        tokens = tokenize(normalized, config)
        breaks = [
            i for i in range(1, len(tokens)) if tokens[i].position - tokens[i - 1].position > 1
        ]
        return [t.word for t in tokens], breaks
    if normalized.isascii() and config == DEFAULT_CONFIG:
        pieces = normalized.encode().translate(_ASCII_WORD_BYTES).decode().split("\n")
        split: Callable[[str], list[str]] = str.split
    else:
        pieces = _HARD_SPLIT.split(normalized)
        split = config.word_pattern.findall
    if len(pieces) == 1:
        return split(pieces[0]), []
    words: list[str] = []
    hard_breaks: list[int] = []
    for piece in pieces:
        found = split(piece)
        if found:
            if words:
                hard_breaks.append(len(words))
            words.extend(found)
    return words, hard_breaks


def query_words(text: str, config: TokenizerConfig = DEFAULT_CONFIG) -> list[str]:
    return [normalize(w) for w in config.word_pattern.findall(text)]


def is_number(word: str) -> bool:
    return word.isdigit()


def searchable_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def field_positions(count: int, breaks: list[int]) -> list[int]:
    """Word positions of a field: +1 per word, +HARD_GAP across a hard separator."""
    bounds = [0, *breaks, count]
    gap = HARD_GAP - 1
    return list(
        chain.from_iterable(
            range(start + gap * n, end + gap * n) for n, (start, end) in enumerate(pairwise(bounds))
        )
    )
