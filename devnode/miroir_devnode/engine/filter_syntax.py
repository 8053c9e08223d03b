"""Syntax tree, tokens and error texts of Meilisearch's filter language.

Error texts and spans are those of Meilisearch's `filter-parser` crate: a span is the
1-based char column range of the offending part (often "the rest of the input" rather
than one token) followed by the whole filter text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    start: int
    end: int
    source: str


@dataclass(frozen=True, slots=True)
class Cond:
    """`fid op value`; op is one of = != > >= < <= TO EXISTS NULL EMPTY CONTAINS STARTS WITH."""

    fid: Token
    op: str
    value: Token | None = None
    upper: Token | None = None


@dataclass(frozen=True, slots=True)
class In:
    fid: Token
    values: tuple[Token, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class GeoRadius:
    lat: Token
    lng: Token
    radius: Token


@dataclass(frozen=True, slots=True)
class GeoBox:
    top_right: tuple[Token, Token]
    bottom_left: tuple[Token, Token]


Node = Cond | In | Not | And | Or | GeoRadius | GeoBox


class SyntaxFailure(Exception):
    """A parse error; `str()` is Meilisearch's text including the span line."""


def render_error(first_line: str, source: str, start: int, end: int) -> str:
    column = start - (source.rfind("\n", 0, start) + 1) + 1
    return f"{first_line}\n{column}:{column + end - start} {source}"


def escape_debug(text: str) -> str:
    """Rust's `str::escape_debug`, used when the crate quotes input in a message."""
    out = []
    for ch in text:
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "\n\r\t\0":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}[ch])
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return "".join(out)


class Fail(Exception):
    """A parse error in flight. `fatal` is nom's *failure* (stop) versus *error* (backtrack)."""

    def __init__(self, kind: str, start: int, end: int, *, fatal: bool, arg: str = "") -> None:
        super().__init__(kind)
        self.kind, self.start, self.end, self.fatal, self.arg = kind, start, end, fatal, arg

    def cut(self) -> Fail:
        return (
            self if self.fatal else Fail(self.kind, self.start, self.end, fatal=True, arg=self.arg)
        )


_MESSAGES = {
    "Depth": "The filter exceeded the maximum depth limit. Try rewriting the filter so that it "
    "contains fewer nested conditions.",
    "Eof": "Found unexpected characters at the end of the filter: `{f}`. You probably forgot an "
    "`OR` or an `AND` rule.",
    "GeoRadius": "The `_geoRadius` filter expects three arguments: "
    "`_geoRadius(latitude, longitude, radius)`.",
    "GeoBoundingBox": "The `_geoBoundingBox` filter expects two pairs of arguments: "
    "`_geoBoundingBox([latitude, longitude], [latitude, longitude])`.",
    "ReservedGeo": "`{a}` is a reserved keyword and thus can't be used as a filter expression. "
    "Use the `_geoRadius(latitude, longitude, distance)` or `_geoBoundingBox([latitude, "
    "longitude], [latitude, longitude])` built-in rules to filter on `_geo` coordinates.",
    "MisusedGeoRadius": "The `_geoRadius` filter is an operation and can't be used as a value.",
    "MisusedGeoBoundingBox": "The `_geoBoundingBox` filter is an operation and can't be used "
    "as a value.",
    "Keyword": "Was expecting a value but instead got `{f}`, which is a reserved keyword. To use "
    "`{f}` as a field name or a value, surround it by quotes.",
    "Value": "Was expecting a value but instead got `{f}`.",
    "Malformed": "Malformed value: `{f}`.",
    "InvalidEscapedNumber": "Found an invalid escaped sequence number: `{f}`.",
    "Delimiter": "Expression `{f}` is missing the following closing delimiter: `{a}`.",
    "InOpening": "Expected `[` after `IN` keyword.",
    "InClosing": "Expected matching `]` after the list of field names given to `IN[`",
    "InValue": "Expected only comma-separated field names inside `IN[..]` but instead found `{f}`.",
}
_PRIMARY = (
    "Was expecting an operation `=`, `!=`, `>=`, `>`, `<=`, `<`, `IN`, `NOT IN`, `TO`, `EXISTS`, "
    "`NOT EXISTS`, `IS NULL`, `IS NOT NULL`, `IS EMPTY`, `IS NOT EMPTY`, `CONTAINS`, "
    "`NOT CONTAINS`, `STARTS WITH`, `NOT STARTS WITH`, `_geoRadius`, or `_geoBoundingBox` "
)


def failure_message(fail: Fail, source: str) -> str:
    fragment = source[fail.start : fail.end]
    if fail.kind == "Primary":
        nothing = not fragment.strip()
        first = _PRIMARY + (
            "but instead got nothing." if nothing else f"at `{escape_debug(fragment)}`."
        )
    elif fail.kind in ("Keyword", "Value") and not fragment.strip():
        first = "Was expecting a value but instead got nothing."
    else:
        first = _MESSAGES[fail.kind].format(f=escape_debug(fragment), a=fail.arg)
    return render_error(first, source, fail.start, fail.end)


def unescape(token: Token) -> str:
    """The `unescaper` crate: backslash escapes in a value, after quote unescaping."""
    text, out, index = token.value, [], 0
    while index < len(text):
        ch = text[index]
        if ch != "\\":
            out.append(ch)
            index += 1
            continue
        nxt = text[index + 1] if index + 1 < len(text) else ""
        simple = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "0": "\0"}
        if nxt in ("\\", "'", '"', "/"):
            out.append(nxt)
            index += 2
        elif nxt in simple:
            out.append(simple[nxt])
            index += 2
        elif nxt in ("x", "u"):
            digits, index = _escape_digits(text, index, nxt, token)
            out.append(chr(int(digits, 16)))
        else:
            raise Fail("Malformed", token.start, token.end, fatal=False)
    return "".join(out)


def _escape_digits(text: str, index: int, kind: str, token: Token) -> tuple[str, int]:
    if kind == "u" and text.startswith("{", index + 2):
        close = text.find("}", index + 3)
        digits, after = text[index + 3 : close], close + 1
        if close < 0:
            raise Fail("Malformed", token.start, token.end, fatal=False)
    else:
        width = 2 if kind == "x" else 4
        digits, after = text[index + 2 : index + 2 + width], index + 2 + width
    if (
        not digits
        or any(c not in "0123456789abcdefABCDEF" for c in digits)
        or int(digits, 16) > 0x10FFFF
    ):
        raise Fail("InvalidEscapedNumber", token.start, token.end, fatal=False)
    return digits, after
