"""Just enough of Meilisearch's filter grammar for the planner.

The proxy never evaluates filters (the nodes do, and report syntax errors themselves); it
only needs the expression's shape to see whether the primary key is pinned. So equality
and ``IN`` conditions are parsed into values and every other condition becomes an
opaque ``Other`` that the planner treats as "could match anything". Precedence is
Meilisearch's: NOT binds tighter than AND, AND tighter than OR; keywords are uppercase.
Anything the parser does not understand raises ``FilterSyntax``, and the caller falls
back to asking every shard.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<dq>"(?:[^"\\]|\\.)*")
      | (?P<sq>'(?:[^'\\]|\\.)*')
      | (?P<op>!=|>=|<=|=|>|<)
      | (?P<punct>[()\[\],])
      | (?P<word>[^\s()\[\],=!<>"']+)
    )""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)")


class FilterSyntax(ValueError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "word", "string", "op", "punct"
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Equals:
    attribute: str
    value: str


@dataclasses.dataclass(frozen=True, slots=True)
class In:
    attribute: str
    values: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Other:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclasses.dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Equals | In | Other | Not | And | Or


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position, end = 0, len(text.rstrip())
    while position < end:
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterSyntax(f"unexpected character at {position}")
        position = match.end()
        kind = match.lastgroup or ""
        raw = match.group(kind)
        if kind in ("dq", "sq"):
            tokens.append(Token("string", _ESCAPE.sub(r"\1", raw[1:-1])))
        else:
            tokens.append(Token(kind, raw))
    return tokens


def _is_keyword(token: Token, *words: str) -> bool:
    return token.kind == "word" and token.text in words


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def parse(self) -> Expr:
        expr = self.disjunction()
        if self.peek() is not None:
            raise FilterSyntax("trailing tokens")
        return expr

    def disjunction(self) -> Expr:
        operands = [self.conjunction()]
        while (token := self.peek()) is not None and _is_keyword(token, "OR"):
            self.at += 1
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self) -> Expr:
        operands = [self.negation()]
        while (token := self.peek()) is not None and _is_keyword(token, "AND"):
            self.at += 1
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def negation(self) -> Expr:
        token = self.peek()
        if token is not None and _is_keyword(token, "NOT"):
            self.at += 1
            return Not(self.negation())
        if token is not None and token == Token("punct", "("):
            self.at += 1
            inner = self.disjunction()
            if self.peek() != Token("punct", ")"):
                raise FilterSyntax("unclosed parenthesis")
            self.at += 1
            return inner
        return self.condition()

    def condition(self) -> Expr:
        start, depth = self.at, 0
        while (token := self.peek()) is not None:
            if token.kind == "punct" and token.text in "([":
                depth += 1
            elif token.kind == "punct" and token.text in ")]":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and _is_keyword(token, "AND", "OR"):
                break
            self.at += 1
        if self.at == start:
            raise FilterSyntax("empty condition")
        return _condition(self.tokens[start : self.at])


def _operand(token: Token) -> str | None:
    # Quoting does not change how a node compares a value, so it is not kept.
    return token.text if token.kind in ("string", "word") else None


def _condition(tokens: Sequence[Token]) -> Expr:
    attribute = _operand(tokens[0])
    if attribute is None:
        raise FilterSyntax("a condition starts with an attribute")
    if len(tokens) == 3 and tokens[1] == Token("op", "="):
        value = _operand(tokens[2])
        if value is not None:
            return Equals(attribute, value)
    if (
        len(tokens) >= 4
        and _is_keyword(tokens[1], "IN")
        and tokens[2] == Token("punct", "[")
        and tokens[-1] == Token("punct", "]")
    ):
        inner = tokens[3:-1]
        values = [_operand(token) for token in inner[0::2]]
        separators_ok = all(token == Token("punct", ",") for token in inner[1::2])
        if separators_ok and all(v is not None for v in values):
            return In(attribute, tuple(v for v in values if v is not None))
    return Other()


def parse_filter(text: str) -> Expr:
    return _Parser(tokenize(text)).parse()


def parse_filter_param(value: Any) -> Expr | None:
    """Parse a search's ``filter`` in string or array form; ``None`` when there is none.

    The array form is an AND of its items, each item a string or an OR of strings.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return parse_filter(value) if value.strip() else None
    if isinstance(value, list):
        operands: list[Expr] = []
        for item in value:
            if isinstance(item, str):
                if item.strip():
                    operands.append(parse_filter(item))
            elif isinstance(item, list) and all(isinstance(x, str) for x in item):
                branches = [parse_filter(x) for x in item if x.strip()]
                if branches:
                    operands.append(branches[0] if len(branches) == 1 else Or(tuple(branches)))
            else:
                raise FilterSyntax("array filters hold strings or arrays of strings")
        if not operands:
            return None
        return operands[0] if len(operands) == 1 else And(tuple(operands))
    raise FilterSyntax("a filter is a string or an array")
