"""Hit assembly: attribute selection, `_formatted` (highlight and crop) and `_matchesPosition`.

Follows Meilisearch's `HitMaker`: `_formatted` holds every retrieved attribute plus the
displayed ones asked for highlighting/cropping (even when not retrieved), with numbers
rendered as strings; `_matchesPosition` covers every displayed attribute and counts UTF-8
bytes. A crop window is chosen by words around the best group of matches and grows
towards soft separators rather than across sentence ends. Only returned hits are
formatted, so the cost is per hit, never per candidate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from miroir_devnode.engine.matching import QueryTerms
from miroir_devnode.engine.patterns import is_faceted_by
from miroir_devnode.engine.tokenizer import Token, TokenizerConfig, tokenize
from miroir_devnode.engine.vectors import shown_vectors

_HARD = frozenset(".!?;\n\r()[]{}")
_VECTORS = "_vectors"

# (word index in the value, token, query term index, matched chars of the token)
Match = tuple[int, Token, int, int]


def select_values(value: Mapping[str, Any], selectors: Iterable[str]) -> dict[str, Any]:
    """Keep the parts of `value` named by dotted selectors (Meilisearch's permissive pointer)."""
    wanted = list(selectors)
    if "*" in wanted:
        return dict(value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        # A selector also keeps dotted keys below it: "a" keeps {"a.b": 1}.
        if key in wanted or any(key.startswith(s + ".") for s in wanted):
            out[key] = item
            continue
        prefix = key + "."
        nested = [s[len(prefix) :] for s in wanted if s.startswith(prefix)]
        if not nested:
            continue
        picked = _select_nested(item, nested)
        if picked is not None:
            out[key] = picked
    return out


def _select_nested(item: Any, selectors: list[str]) -> Any:
    if isinstance(item, dict):
        picked = select_values(item, selectors)
        return picked if picked else None
    if isinstance(item, list):
        parts = [_select_nested(element, selectors) for element in item]
        kept = [p for p in parts if p is not None]
        return kept if kept else None
    return None


def retrieved_names(settings: Mapping[str, Any], requested: Sequence[str] | None) -> list[str]:
    """attributesToRetrieve ∩ displayedAttributes, as selectors (`*` = everything shown)."""
    displayed = list(settings.get("displayedAttributes") or ["*"])
    if requested is None or "*" in requested:
        return displayed
    if "*" in displayed:
        return list(requested)
    return [a for a in requested if a in displayed] + [
        d for d in displayed if any(is_faceted_by(d, a) and d != a for a in requested)
    ]


def number_text(value: int | float) -> str:
    """serde_json's rendering of a JSON number."""
    if isinstance(value, int):
        return str(value)
    return repr(value).replace("e+", "e")


@dataclass(frozen=True, slots=True)
class FormatOptions:
    highlight: bool
    crop: int | None


@dataclass(frozen=True, slots=True)
class FormatSettings:
    highlight: tuple[str, ...] = ()
    crop: tuple[str, ...] = ()
    crop_length: int = 10
    crop_marker: str = "…"
    pre_tag: str = "<em>"
    post_tag: str = "</em>"
    show_matches_position: bool = False


class HitFormatter:
    """Builds the hit objects of one search; construct once, call `make_hit` per hit."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        retrieve: Sequence[str] | None,
        fmt: FormatSettings,
        terms: QueryTerms | None,
        known_field: Callable[[str], bool],
        *,
        retrieve_vectors: bool = False,
    ) -> None:
        self.fmt = fmt
        self.terms = terms if terms is not None and not terms.is_empty else None
        self.config = TokenizerConfig.from_settings(dict(settings))
        self.displayed = list(settings.get("displayedAttributes") or ["*"])
        self.retrieve = retrieved_names(settings, retrieve)
        # Meilisearch hides `_vectors` that displayedAttributes does not show.
        self.retrieve_vectors = retrieve_vectors and self._shown(_VECTORS)
        self.embedders = settings.get("embedders") or {}
        self.options = self._options(known_field)
        named = [n for n in self.options if n != "*"]
        if "*" in self.options:
            named += self.displayed
        self.formatted_keys = self.retrieve + named if self.options else []

    def _shown(self, name: str) -> bool:
        return "*" in self.displayed or name in self.displayed

    def _options(self, known: Callable[[str], bool]) -> dict[str, FormatOptions]:
        options: dict[str, FormatOptions] = {}
        everything = "*" in self.fmt.highlight
        for name in self.fmt.highlight:
            if name != "*" and known(name) and self._shown(name):
                options[name] = FormatOptions(True, None)
        for raw in self.fmt.crop:
            name, length = _crop_spec(raw, self.fmt.crop_length)
            if name == "*" or (known(name) and self._shown(name)):
                previous = options.get(name)
                options[name] = FormatOptions(bool(previous and previous.highlight), length)
        if everything:
            options["*"] = FormatOptions(True, options.get("*", FormatOptions(True, None)).crop)
        return options

    def make_hit(self, document: Mapping[str, Any]) -> dict[str, Any]:
        hit = select_values(document, self.retrieve)
        hit.pop(_VECTORS, None)
        if self.retrieve_vectors:
            vectors = shown_vectors(document, self.embedders)
            if vectors is not None:
                hit[_VECTORS] = vectors
        if not self.fmt.show_matches_position and not self.options:
            return hit
        source = self.displayed if self.fmt.show_matches_position else self.formatted_keys
        base = select_values(document, source)
        base.pop(_VECTORS, None)
        positions: dict[str, list[dict[str, Any]]] = {}
        mapped = {key: self._map(key, value, [], positions) for key, value in base.items()}
        if self.options:
            formatted = select_values(mapped, self.formatted_keys)
            if formatted:
                hit["_formatted"] = formatted
        if self.fmt.show_matches_position:
            hit["_matchesPosition"] = dict(sorted(positions.items()))
        return hit

    def _map(self, path: str, value: Any, indices: list[int], positions: dict[str, Any]) -> Any:
        if isinstance(value, dict):
            return {k: self._map(f"{path}.{k}", v, indices, positions) for k, v in value.items()}
        if isinstance(value, list):
            return [self._map(path, v, [*indices, i], positions) for i, v in enumerate(value)]
        if isinstance(value, bool) or value is None:
            return value
        text = value if isinstance(value, str) else number_text(value)
        return self._format_text(path, text, indices, positions)

    def _format_text(
        self, path: str, text: str, indices: list[int], positions: dict[str, Any]
    ) -> str:
        option = self._option_for(path)
        want_format = option is not None and (option.highlight or bool(option.crop))
        if not want_format and not self.fmt.show_matches_position:
            return text
        tokens = tokenize(text, self.config)
        matches = self._matches(tokens)
        if self.fmt.show_matches_position and matches:
            bounds = positions.setdefault(path, [])
            for _word, token, _term, chars in matches:
                part = text[token.char_start : token.char_start + chars]
                entry: dict[str, Any] = {"start": token.byte_start, "length": len(part.encode())}
                if indices:
                    entry["indices"] = list(indices)
                bounds.append(entry)
        if option is None or not want_format:
            return text
        return render(text, tokens, matches, option, self.fmt)

    def _option_for(self, path: str) -> FormatOptions | None:
        merged: FormatOptions | None = None
        for name, option in self.options.items():
            if name == "*" or is_faceted_by(path, name) or is_faceted_by(name, path):
                if merged is None:
                    merged = option
                else:
                    merged = FormatOptions(
                        merged.highlight or option.highlight,
                        merged.crop if merged.crop is not None else option.crop,
                    )
        return merged

    def _matches(self, tokens: list[Token]) -> list[Match]:
        if self.terms is None:
            return []
        found = []
        for word, token in enumerate(tokens):
            info = self.terms.match(token.word)
            if info is not None:
                found.append((word, token, info.term, min(info.matched_chars, token.char_len)))
        return found


def _crop_spec(raw: str, default: int) -> tuple[str, int]:
    name, sep, length = raw.rpartition(":")
    if not sep:
        return raw, default
    return name, int(length) if length.isdigit() else default


def render(
    text: str,
    tokens: list[Token],
    matches: list[Match],
    option: FormatOptions,
    fmt: FormatSettings,
) -> str:
    """Highlight and/or crop one string value."""
    start, end = 0, len(text)
    if option.crop:
        start, end = crop_bounds(text, tokens, matches, option.crop)
    pieces: list[str] = []
    if start > 0 and fmt.crop_marker:
        pieces.append(fmt.crop_marker)
    cursor = start
    if option.highlight:
        for _word, token, _term, chars in matches:
            if token.char_start < start or token.char_start + token.char_len > end:
                continue
            cut = token.char_start + chars
            pieces.extend(
                (text[cursor : token.char_start], fmt.pre_tag, text[token.char_start : cut])
            )
            pieces.append(fmt.post_tag)
            cursor = cut
    pieces.append(text[cursor:end])
    if end < len(text) and fmt.crop_marker:
        pieces.append(fmt.crop_marker)
    return "".join(pieces)


def _best_interval(matches: list[tuple[int, int]], crop: int) -> list[tuple[int, int]]:
    """Meilisearch's choice of the matches a crop window should show (word index, term)."""
    if len(matches) <= 1:
        return matches
    best = (0, 0)
    best_score = _interval_score(matches[0:1])
    first = 0
    last = 0
    for position in range(1, len(matches)):
        word = matches[position][0]
        if word - matches[first][0] >= crop:
            score = _interval_score(matches[first:position])
            if score > best_score:
                best, best_score = (first, position - 1), score
            while word - matches[first][0] >= crop:
                first += 1
        last = position
    score = _interval_score(matches[first : last + 1])
    if score > best_score:
        best = (first, last)
    return matches[best[0] : best[1] + 1]


def _interval_score(matches: list[tuple[int, int]]) -> tuple[int, int, int]:
    order = 0
    distance = 0
    for (word, term), (next_word, next_term) in itertools.pairwise(matches):
        if next_term > term:
            order += 1
        distance -= min(next_word - word, 7)
    return len({term for _, term in matches}), distance, order


def crop_bounds(text: str, tokens: list[Token], matches: list[Match], crop: int) -> tuple[int, int]:
    """Char bounds of the crop window: `crop` words grown around the best matches."""
    if not tokens:
        return 0, len(text)
    # One sequence of word and separator items: (start, end, kind) with kind None for a word.
    items: list[tuple[int, int, str | None]] = []
    word_item: list[int] = []
    cursor = 0
    for token in tokens:
        if token.char_start > cursor:
            items.append((cursor, token.char_start, _gap_kind(text[cursor : token.char_start])))
        word_item.append(len(items))
        items.append((token.char_start, token.char_start + token.char_len, None))
        cursor = token.char_start + token.char_len
    if cursor < len(text):
        items.append((cursor, len(text), _gap_kind(text[cursor:])))
    chosen = _best_interval([(word, term) for word, _token, term, _chars in matches], crop)
    first_word = chosen[0][0] if chosen else 0
    last_word = chosen[-1][0] if chosen else 0
    remaining = crop + first_word - last_word
    before = word_item[first_word] - 1
    after = word_item[last_word]
    while remaining > 0:
        left = items[before][2] if before >= 0 else "end"
        right = items[after][2] if after < len(items) else "end"
        if left != "end" and right != "end":
            if left is not None and right is not None:
                if left == right:
                    before -= 1
                    if remaining > 1:
                        after += 1
                elif left == "hard":
                    after += 1
                else:
                    before -= 1
            elif left is None and right is not None:
                before -= 1
                remaining -= 1
            elif right is None and left is not None:
                after += 1
                remaining -= 1
            else:
                before -= 1
                remaining -= 1
                if remaining > 0:
                    after += 1
                    remaining -= 1
        elif left != "end":
            before -= 1
            if left is None:
                remaining -= 1
        elif right != "end":
            after += 1
            if right is None:
                remaining -= 1
        else:
            break
    start = items[before][1] if before >= 0 else 0
    end = items[after][0] if after < len(items) else len(text)
    return start, end


def _gap_kind(gap: str) -> str:
    return "hard" if any(c in _HARD for c in gap) else "soft"
