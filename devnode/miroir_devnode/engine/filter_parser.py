"""Parser for one filter string: a port of Meilisearch's `filter-parser` crate.

The crate is a nom parser whose alternatives backtrack on a soft *error* and stop on a
*failure* (nom's `cut`); which one a sub-parser raises decides the message users see,
so this port keeps that distinction (`Fail.fatal`) and the crate's order of
alternatives. Keywords are whole words matched case-sensitively, but the multi-word
operators (`IS NULL`, `NOT EXISTS`...) are prefix tags, quirks included.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from miroir_devnode.engine.filter_syntax import (
    And,
    Cond,
    Fail,
    GeoBox,
    GeoRadius,
    In,
    Node,
    Not,
    Or,
    SyntaxFailure,
    Token,
    failure_message,
    unescape,
)

MAX_DEPTH = 200
KEYWORDS = frozenset(
    {"AND", "OR", "IN", "NOT", "TO", "EXISTS", "IS", "NULL", "EMPTY", "CONTAINS", "STARTS", "WITH"}
    | {"_geoRadius", "_geoBoundingBox"}
)
_ASCII_SPACE = " \t\r\n"
_SYNTAX = "()=<>!"
_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_OPERATORS = ("<=", ">=", "!=", "<", ">", "=")
# (tags after the field, condition op, negated), in the crate's order of alternatives.
_KEYWORD_CONDITIONS = (
    (("IS", "NULL"), "NULL", False),
    (("IS", "NOT", "NULL"), "NULL", True),
    (("IS", "EMPTY"), "EMPTY", False),
    (("IS", "NOT", "EMPTY"), "EMPTY", True),
    (("EXISTS",), "EXISTS", False),
    (("NOT", "EXISTS"), "EXISTS", True),
)
_WORD_CONDITIONS = (
    (("CONTAINS",), "CONTAINS", False),
    (("NOT", "CONTAINS"), "CONTAINS", True),
    (("STARTS WITH",), "STARTS WITH", False),
    (("NOT", "STARTS WITH"), "STARTS WITH", True),
)


@lru_cache(maxsize=2048)
def parse_expression(source: str) -> Node | None:
    """Parse one filter string; None when it is blank. Raises SyntaxFailure."""
    if not source.strip():
        return None
    parser = _Parser(source)
    try:
        pos, node = parser.or_(0, 0)
        if pos != len(source):
            raise Fail("Eof", pos, len(source), fatal=True)
    except Fail as fail:
        raise SyntaxFailure(failure_message(fail, source)) from None
    return node


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self._values: dict[int, tuple[int, Token] | Fail] = {}

    def soft(self, pos: int) -> Fail:
        return Fail("Internal", pos, self.n, fatal=False)

    def ms0(self, pos: int) -> int:
        while pos < self.n and self.text[pos] in _ASCII_SPACE:
            pos += 1
        return pos

    def word_end(self, pos: int) -> int:
        text, n = self.text, self.n
        while pos < n and (text[pos].isalnum() or text[pos] in "_-."):
            pos += 1
        return pos

    def word_is(self, pos: int, word: str) -> int | None:
        end = self.word_end(pos)
        return end if self.text[pos:end] == word else None

    def tags(self, pos: int, words: tuple[str, ...]) -> int:
        """Tags separated by mandatory ASCII whitespace (`IS NOT NULL`, `NOT EXISTS`...)."""
        for index, word in enumerate(words):
            if index:
                after = self.ms0(pos)
                if after == pos:
                    raise self.soft(pos)
                pos = after
            if not self.text.startswith(word, pos):
                raise self.soft(pos)
            pos += len(word)
        return pos

    # -- values --

    def value(self, pos: int) -> tuple[int, Token]:
        cached = self._values.get(pos)
        if cached is None:
            try:
                cached = self._value(pos)
            except Fail as fail:
                cached = fail
            self._values[pos] = cached
        if isinstance(cached, Fail):
            raise cached
        return cached

    def cut_value(self, pos: int) -> tuple[int, Token]:
        try:
            return self.value(pos)
        except Fail as fail:
            raise fail.cut() from None

    def _value(self, pos: int) -> tuple[int, Token]:
        text, n = self.text, self.n
        while pos < n and text[pos].isspace():
            pos += 1
        for reserved in ("_geoPoint", "_geoDistance"):
            if text.startswith(reserved, pos):
                raise Fail("ReservedGeo", pos, n, fatal=True, arg=reserved)
        word_end = self.word_end(pos)
        word = text[pos:word_end]
        if word == "_geo":
            raise Fail("ReservedGeo", pos, n, fatal=True, arg="_geo")
        if word == "_geoRadius":
            raise Fail("MisusedGeoRadius", pos, n, fatal=True)
        if word == "_geoBoundingBox":
            raise Fail("MisusedGeoBoundingBox", pos, n, fatal=True)
        if pos < n and text[pos] in "'\"":
            after, token = self._quoted(pos)
        elif word and word not in KEYWORDS:
            after, token = word_end, Token(word, pos, word_end, text)
        else:
            stop = pos
            while stop < n and not text[stop].isspace() and text[stop] not in _SYNTAX:
                stop += 1
            raise Fail("Keyword" if word in KEYWORDS else "Value", pos, stop, fatal=False)
        if "\\" in token.value:
            token = Token(unescape(token), token.start, token.end, text)
        return self.ms0(after), token

    def _quoted(self, pos: int) -> tuple[int, Token]:
        text, n, quote = self.text, self.n, self.text[pos]
        start = index = pos + 1
        escaped = False
        while index < n and text[index] != quote:
            if text[index] == "\\":
                if index + 1 >= n:
                    raise Fail("Malformed", start, n, fatal=True)
                escaped |= text[index + 1] == quote
                index += 2
            else:
                index += 1
        if index >= n:
            raise Fail("Delimiter", pos, n, fatal=True, arg=quote)
        raw = text[start:index]
        value = raw.replace("\\" + quote, quote) if escaped else raw
        return index + 1, Token(value, start, index, text)

    def floats(self, pos: int, close: str) -> tuple[int, list[Token]]:
        """`float ("," float)*` with optional ASCII spaces, then `close`."""
        tokens: list[Token] = []
        while True:
            match = _FLOAT.match(self.text, self.ms0(pos))
            if not match:
                raise self.soft(pos)
            tokens.append(Token(match.group(), match.start(), match.end(), self.text))
            pos = self.ms0(match.end())
            if self.text.startswith(",", pos):
                pos += 1
            elif self.text.startswith(close, pos):
                return pos + 1, tokens
            else:
                raise self.soft(pos)

    # -- boolean structure --

    def or_(self, pos: int, depth: int) -> tuple[int, Node]:
        return self._chain(pos, depth, "OR", self.and_, Or)

    def and_(self, pos: int, depth: int) -> tuple[int, Node]:
        return self._chain(pos, depth, "AND", self.not_, And)

    def _chain(
        self,
        pos: int,
        depth: int,
        keyword: str,
        inner: Callable[[int, int], tuple[int, Node]],
        build: type[And] | type[Or],
    ) -> tuple[int, Node]:
        if depth > MAX_DEPTH:
            raise Fail("Depth", pos, self.n, fatal=False)
        pos, first = inner(pos, depth + 1)
        items = [first]
        while (end := self.word_is(self.ms0(pos), keyword)) is not None:
            try:
                pos, node = inner(self.ms0(end), depth + 1)
            except Fail as fail:
                raise fail.cut() from None
            items.append(node)
        return pos, items[0] if len(items) == 1 else build(tuple(items))

    def not_(self, pos: int, depth: int) -> tuple[int, Node]:
        if depth > MAX_DEPTH:
            raise Fail("Depth", pos, self.n, fatal=False)
        end = self.word_is(self.ms0(pos), "NOT")
        if end is None:
            return self.primary(pos, depth + 1)
        try:
            pos, node = self.not_(self.ms0(end), depth + 1)
        except Fail as fail:
            raise fail.cut() from None
        return pos, node.child if isinstance(node, Not) else Not(node)

    def primary(self, pos: int, depth: int) -> tuple[int, Node]:
        if depth > MAX_DEPTH:
            raise Fail("Depth", pos, self.n, fatal=False)
        alternatives: tuple[Callable[[int, int], tuple[int, Node]], ...] = (
            self.parenthesized,
            self.geo_radius,
            self.geo_bounding_box,
            self.in_,
            self.comparison,
            self.keyword_condition,
            self.range_,
            self.word_condition,
        )
        for alternative in alternatives:
            try:
                return alternative(pos, depth)
            except Fail as fail:
                if fail.fatal:
                    raise
        try:
            self.comparison(pos, depth)
        except Fail as fail:
            if fail.kind == "Keyword":
                raise fail.cut() from None
        raise Fail("Primary", pos, self.n, fatal=False)

    # -- primaries --

    def parenthesized(self, pos: int, depth: int) -> tuple[int, Node]:
        start = self.ms0(pos)
        if not self.text.startswith("(", start):
            raise self.soft(pos)
        try:
            end, node = self.or_(self.ms0(start + 1), depth + 1)
        except Fail as fail:
            raise fail.cut() from None
        end = self.ms0(end)
        if not self.text.startswith(")", end):
            raise Fail("Delimiter", pos, self.n, fatal=True, arg=")")
        return self.ms0(end + 1), node

    def geo_radius(self, pos: int, depth: int) -> tuple[int, Node]:
        args_start = self.word_is(self.ms0(pos), "_geoRadius")
        if args_start is None:
            raise self.soft(pos)
        end, args = self._geo_args(pos, args_start, "GeoRadius", "(", ")")
        if len(args) != 3:
            raise Fail("GeoRadius", end, self.n, fatal=True)
        return end, GeoRadius(args[0], args[1], args[2])

    def geo_bounding_box(self, pos: int, depth: int) -> tuple[int, Node]:
        args_start = self.word_is(self.ms0(pos), "_geoBoundingBox")
        if args_start is None:
            raise self.soft(pos)
        if not self.text.startswith("(", args_start):
            raise Fail("GeoBoundingBox", pos, self.n, fatal=True)
        points: list[list[Token]] = []
        cursor = args_start
        while True:
            end, point = self._geo_args(pos, self.ms0(cursor + 1), "GeoBoundingBox", "[", "]")
            points.append(point)
            cursor = self.ms0(end)
            if not self.text.startswith(",", cursor):
                break
        if not self.text.startswith(")", cursor):
            raise Fail("GeoBoundingBox", pos, self.n, fatal=True)
        end = cursor + 1
        if len(points) != 2 or len(points[0]) != 2 or len(points[1]) != 2:
            raise Fail("GeoBoundingBox", end, self.n, fatal=True)
        (a, b), (c, d) = points
        return end, GeoBox((a, b), (c, d))

    def _geo_args(
        self, pos: int, at: int, kind: str, opening: str, closing: str
    ) -> tuple[int, list[Token]]:
        if not self.text.startswith(opening, at):
            raise Fail(kind, pos, self.n, fatal=True)
        try:
            return self.floats(at + 1, closing)
        except Fail:
            raise Fail(kind, pos, self.n, fatal=True) from None

    def in_(self, pos: int, depth: int) -> tuple[int, Node]:
        after, fid = self.value(pos)
        negated_end = self.word_is(after, "NOT")
        if self.word_is(self.ms0(after), "IN") is not None:
            return self._in_body(after, fid, negated=False)
        if negated_end is not None:
            return self._in_body(negated_end, fid, negated=True)
        raise self.soft(after)

    def _in_body(self, pos: int, fid: Token, *, negated: bool) -> tuple[int, Node]:
        end = self.word_is(self.ms0(pos), "IN")
        if end is None:
            raise self.soft(pos)
        cursor = self.ms0(end)
        if not self.text.startswith("[", cursor):
            raise Fail("InOpening", cursor, self.n, fatal=True)
        cursor, values = self._value_list(cursor + 1)
        close = self.ms0(cursor)
        if not self.text.startswith("]", close):
            kind = "InClosing" if cursor == self.n else "InValue"
            raise Fail(kind, cursor, self.n, fatal=True)
        node: Node = In(fid, tuple(values))
        return self.ms0(close + 1), Not(node) if negated else node

    def _value_list(self, pos: int) -> tuple[int, list[Token]]:
        try:
            pos, first = self.value(pos)
        except Fail as fail:
            if fail.fatal:
                raise
            return pos, []
        values = [first]
        while self.text.startswith(",", sep := self.ms0(pos)):
            try:
                pos, token = self.value(self.ms0(sep + 1))
            except Fail as fail:
                if fail.fatal:
                    raise
                break
            values.append(token)
        sep = self.ms0(pos)
        return (self.ms0(sep + 1) if self.text.startswith(",", sep) else pos), values

    def comparison(self, pos: int, depth: int) -> tuple[int, Node]:
        after, fid = self.value(pos)
        for op in _OPERATORS:
            if self.text.startswith(op, after):
                end, value = self.cut_value(after + len(op))
                return end, Cond(fid, op, value)
        raise self.soft(after)

    def keyword_condition(self, pos: int, depth: int) -> tuple[int, Node]:
        after, fid = self.value(pos)
        for words, op, negated in _KEYWORD_CONDITIONS:
            try:
                end = self.tags(after, words)
            except Fail:
                continue
            node: Node = Cond(fid, op)
            return end, Not(node) if negated else node
        raise self.soft(after)

    def range_(self, pos: int, depth: int) -> tuple[int, Node]:
        after, fid = self.value(pos)
        after, low = self.value(after)
        end = self.tags(after, ("TO",))
        space = self.ms0(end)
        if space == end:
            raise self.soft(end)
        end, high = self.cut_value(space)
        return end, Cond(fid, "TO", low, high)

    def word_condition(self, pos: int, depth: int) -> tuple[int, Node]:
        after, fid = self.value(pos)
        for words, op, negated in _WORD_CONDITIONS:
            try:
                end = self.tags(after, words)
            except Fail:
                continue
            end, word = self.cut_value(end)
            node: Node = Cond(fid, op, word)
            return end, Not(node) if negated else node
        raise self.soft(after)
