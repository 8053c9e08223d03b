"""Document payloads (JSON, NDJSON, CSV) turned into documents, with Meilisearch's checks.

The proxy parses a payload once and forwards JSON to the nodes whatever the client sent, so
it types CSV cells as Meilisearch does (MEILI_API.md, documents): a header `name:type` with
type `string`, `number` or `boolean` types its column (any other suffix is part of the
name), an untyped column holds strings, an empty cell is `null`, and a `number` cell is an
`i64` when it parses as one, else an `f64` (Rust's grammar: no `_`, no NaN or infinity in
JSON). Error texts are Meilisearch's, kept in one table.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from miroir_proxy.core.errors import MiroirError

JSON, NDJSON, CSV = "application/json", "application/x-ndjson", "text/csv"
FORMAT_NAMES = {JSON: "json", NDJSON: "ndjson", CSV: "csv"}
_ACCEPTED = ", ".join(f"`{mime}`" for mime in FORMAT_NAMES)
_TEXTS = {
    "no_type": "A Content-Type header is missing. Accepted values for the Content-Type "
    "header are: {accepted}",
    "bad_type": "The Content-Type `{given}` is invalid. Accepted values for the Content-Type "
    "header are: {accepted}",
    "no_delimiter": "The Content-Type `{given}` does not support the use of a csv delimiter. "
    "The csv delimiter can only be used with the Content-Type `text/csv`.",
    "delimiter_size": "Invalid value in parameter `csvDelimiter`: expected a string of one "
    "character, but found the following string of {size} characters: `{given}`",
    "delimiter_ascii": "Invalid value in parameter `csvDelimiter`: csv delimiter must be an "
    "ascii character. Found: `{given}`",
    "malformed": "The `{fmt}` payload provided is malformed. `{detail}`.",
    "missing": "A {fmt} payload is missing.",
    "not_documents": "Couldn't serialize document value: data are neither an object nor a "
    "list of objects",
    "boolean": "Error parsing boolean {raw} at line {line}: provided string was not `true` "
    "or `false`",
    "number": "Error parsing number {raw} at line {line}: invalid float literal",
    "ragged": "CSV error: record {record} (line: {line}): found record with {found} fields, "
    "but the previous record has {expected} fields",
    "unknown_parameter": "Unknown parameter `{name}`: expected one of {expected}",
    "not_boolean": "Invalid value in parameter `{name}`: could not parse `{raw}` as a "
    "boolean, expected either `true` or `false`",
}
_I64 = range(-(2**63), 2**63)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

Document = dict[str, Any]
Cell = Callable[[str, int], Any]


def _text(key: str, **values: Any) -> str:
    return _TEXTS[key].format(**values)


def malformed(fmt: str, detail: str) -> MiroirError:
    return MiroirError(
        "malformed_payload", _text("malformed", fmt=FORMAT_NAMES[fmt], detail=detail)
    )


def payload_format(raw_content_type: str | None, content_type: str, has_delimiter: bool) -> str:
    """The payload's MIME type after Meilisearch's 415 checks (`content_type` has no params)."""
    if raw_content_type is None:
        raise MiroirError("missing_content_type", _text("no_type", accepted=_ACCEPTED))
    if content_type not in FORMAT_NAMES:
        given = raw_content_type
        raise MiroirError(
            "invalid_content_type", _text("bad_type", given=given, accepted=_ACCEPTED)
        )
    if has_delimiter and content_type != CSV:
        raise MiroirError("invalid_content_type", _text("no_delimiter", given=raw_content_type))
    return content_type


def csv_delimiter(raw: str | None) -> str:
    """The `csvDelimiter` parameter: one ASCII character (`,` when absent)."""
    if raw is None:
        return ","
    code = "invalid_document_csv_delimiter"
    if len(raw) != 1:
        raise MiroirError(code, _text("delimiter_size", size=len(raw), given=raw))
    if not raw.isascii():
        raise MiroirError(code, _text("delimiter_ascii", given=raw))
    return raw


def parse_documents(body: bytes, fmt: str, delimiter: str = ",") -> list[Document]:
    """Every document of a payload in `fmt` (one of JSON, NDJSON, CSV), in order."""
    if body.isspace() or not body:
        raise MiroirError("missing_payload", _text("missing", fmt=FORMAT_NAMES[fmt]))
    parse = {JSON: _from_json, NDJSON: _from_ndjson}.get(fmt)
    return _from_csv(body, delimiter) if parse is None else parse(body)


def _decoded(raw: bytes, fmt: str, where: str = "") -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise malformed(fmt, f"{e}{where}") from e


def _from_json(body: bytes) -> list[Document]:
    value = _decoded(body, JSON)
    documents = [value] if type(value) is dict else value
    if type(documents) is not list or any(type(d) is not dict for d in documents):
        raise malformed(JSON, _text("not_documents"))
    return documents


def _from_ndjson(body: bytes) -> list[Document]:
    documents: list[Document] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if line.isspace() or not line:
            continue
        value = _decoded(line, NDJSON, f" at line {number}")
        if type(value) is not dict:
            raise malformed(NDJSON, _text("not_documents"))
        documents.append(value)
    return documents


def _quoted(raw: str) -> str:
    return orjson.dumps(raw).decode()


def _string_cell(raw: str, line: int) -> Any:
    return raw or None


def _boolean_cell(raw: str, line: int) -> Any:
    word = raw.strip()
    if not word:
        return None
    if word not in ("true", "false"):
        raise malformed(CSV, _text("boolean", raw=_quoted(raw), line=line))
    return word == "true"


def _number_cell(raw: str, line: int) -> Any:
    word = raw.strip()
    if not word:
        return None
    if _INTEGER.fullmatch(word) and int(word) in _I64:
        return int(word)
    if _FLOAT.fullmatch(word):
        number = float(word)
        if number not in (float("inf"), float("-inf")):
            return number
    raise malformed(CSV, _text("number", raw=_quoted(raw), line=line))


_CELLS: dict[str, Cell] = {
    "string": _string_cell,
    "number": _number_cell,
    "boolean": _boolean_cell,
}


def _column(header: str) -> tuple[str, Cell]:
    """A header's field name and cell reader: `name:type` for a known type, else a string."""
    name, colon, suffix = header.rpartition(":")
    cell = _CELLS.get(suffix) if colon else None
    return (header, _string_cell) if cell is None else (name, cell)


def _csv_text(body: bytes) -> io.StringIO:
    """The payload as text: UTF-8, a leading byte-order mark dropped."""
    try:
        return io.StringIO(body.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise malformed(CSV, f"CSV error: invalid utf-8: {e}") from e


def _from_csv(body: bytes, delimiter: str) -> list[Document]:
    reader = csv.reader(_csv_text(body), delimiter=delimiter)
    documents: list[Document] = []
    try:
        columns = [_column(header) for header in next(reader, [])]
        for record in reader:
            if not record:
                continue
            line = reader.line_num
            if len(record) != len(columns):
                details = {"record": line - 1, "line": line, "expected": len(columns)}
                raise malformed(CSV, _text("ragged", found=len(record), **details))
            documents.append(
                {name: cell(raw, line) for (name, cell), raw in zip(columns, record, strict=True)}
            )
    except csv.Error as e:
        raise malformed(CSV, f"CSV error: {e}") from e
    return documents


def check_parameters(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """Meilisearch refuses unknown query parameters with `bad_request`."""
    unknown = next((name for name in params if name not in allowed), None)
    if unknown is not None:
        expected = ", ".join(map("`{}`".format, allowed))
        raise MiroirError(
            "bad_request", _text("unknown_parameter", name=unknown, expected=expected)
        )


def bool_parameter(params: Mapping[str, str], name: str, code: str) -> bool:
    """A `true`/`false` query parameter (false when absent)."""
    raw = params.get(name, "false")
    if raw in ("true", "false"):
        return raw == "true"
    raise MiroirError(code, _text("not_boolean", name=name, raw=raw))
