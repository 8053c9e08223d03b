"""Meilisearch's request-deserialization error messages (the `deserr` crate's wording).

Meilisearch validates bodies field by field in the order the client wrote them and
stops at the first problem, so the checkers here raise immediately. JSON locations
are rendered like `.queries[0].limit`; the root has no location at all, which is why
the unknown-field message for a plain search reads "Unknown field `x`: …" while one
inside multi-search reads "Unknown field `x` inside `.queries[0]`: …".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from miroir_devnode.errors import MeiliError

_KIND_ORDER = ("null", "boolean", "integer", "negative", "float", "string", "array", "object")
_KIND_TEXT = {
    "null": "null",
    "boolean": "a boolean",
    "integer": "a positive integer",
    "negative": "a negative integer",
    "float": "a number",
    "string": "a string",
    "array": "an array",
    "object": "an object",
}


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if value >= 0 else "negative"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def describe(value: Any) -> str:
    """`a string: \\`"x"\\`` — the value's kind followed by its compact JSON."""
    if value is None:
        return "null"
    return f"{_KIND_TEXT[kind(value)]}: `{orjson.dumps(value).decode()}`"


def _expected(kinds: Sequence[str]) -> str:
    texts = [_KIND_TEXT[k] for k in sorted(set(kinds), key=_KIND_ORDER.index)]
    if len(texts) == 1:
        return texts[0]
    return ", ".join(texts[:-1]) + " or " + texts[-1]


def _at(path: str, word: str) -> str:
    return f" {word} `{path}`" if path else ""


def type_error(code: str, path: str, expected: Sequence[str], value: Any) -> MeiliError:
    return MeiliError(
        code,
        f"Invalid value type{_at(path, 'at')}: expected {_expected(expected)}, "
        f"but found {describe(value)}",
    )


def value_error(code: str, path: str, message: str) -> MeiliError:
    return MeiliError(code, f"Invalid value{_at(path, 'at')}: {message}")


def missing_field(code: str, path: str, field: str) -> MeiliError:
    return MeiliError(code, f"Missing field `{field}`{_at(path, 'inside')}")


def _one_of(accepted: Sequence[str]) -> str:
    return ", ".join(f"`{a}`" for a in accepted)


def unknown_field(
    path: str, field: str, accepted: Sequence[str], code: str = "bad_request"
) -> MeiliError:
    return MeiliError(
        code,
        f"Unknown field `{field}`{_at(path, 'inside')}: "
        f"{did_you_mean(field, accepted)}expected one of {_one_of(accepted)}",
    )


def unknown_value(code: str, path: str, value: str, accepted: Sequence[str]) -> MeiliError:
    return MeiliError(
        code,
        f"Unknown value `{value}`{_at(path, 'at')}: "
        f"{did_you_mean(value, accepted)}expected one of {_one_of(accepted)}",
    )


def unknown_parameter(name: str, accepted: Sequence[str]) -> MeiliError:
    return MeiliError(
        "bad_request",
        f"Unknown parameter `{name}`: {did_you_mean(name, accepted)}"
        f"expected one of {_one_of(accepted)}",
    )


def unknown_parameter_value(
    code: str, name: str, value: str, accepted: Sequence[str]
) -> MeiliError:
    return MeiliError(
        code,
        f"Unknown value `{value}` for parameter `{name}`: "
        f"{did_you_mean(value, accepted)}expected one of {_one_of(accepted)}",
    )


def parameter_error(code: str, name: str, message: str) -> MeiliError:
    return MeiliError(code, f"Invalid value in parameter `{name}`: {message}")


def did_you_mean(received: str, accepted: Sequence[str]) -> str:
    """deserr's suggestion: the closest accepted name within a length-based typo budget."""
    size = len(received.encode())
    if size <= 3:
        return ""
    budget = 1 if size <= 7 else 2 if size <= 12 else 3 if size <= 17 else 4 if size <= 24 else 5
    best: tuple[int, str] | None = None
    for candidate in accepted:
        distance = _damerau_levenshtein(received, candidate)
        if distance <= budget and (best is None or distance < best[0]):
            best = (distance, candidate)
    return f"did you mean `{best[1]}`? " if best else ""


def _damerau_levenshtein(a: str, b: str) -> int:
    """Optimal-string-alignment distance: edits plus adjacent transpositions."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


# -- typed checkers: return the value or raise the matching MeiliError --


def check_object(code: str, path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise type_error(code, path, ["object"], value)
    return value


def check_usize(code: str, path: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise type_error(code, path, ["integer"], value)
    return value


def check_bool(code: str, path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise type_error(code, path, ["boolean"], value)
    return value


def check_str(code: str, path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise type_error(code, path, ["string"], value)
    return value


def check_float(code: str, path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise type_error(code, path, ["float"], value)
    return float(value)


def check_str_list(code: str, path: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise type_error(code, path, ["array"], value)
    for position, item in enumerate(value):
        check_str(code, f"{path}[{position}]", item)
    return value


def check_float_list(code: str, path: str, value: Any) -> list[float]:
    if not isinstance(value, list):
        raise type_error(code, path, ["array"], value)
    return [check_float(code, f"{path}[{i}]", item) for i, item in enumerate(value)]
