"""Document payloads (JSON, NDJSON, CSV) turned into documents, with Meilisearch's checks.

The proxy parses a payload once and forwards JSON to the nodes whatever the client sent,
so CSV typing (`price:number`, `sold:boolean`, `name:string`) is applied here exactly as
Meilisearch applies it: an empty cell is `null`, a `number` cell is an integer when it
parses as one and a float otherwise, an unannotated column is a string.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

import orjson

from miroir_proxy.core.errors import MiroirError

JSON, NDJSON, CSV = "application/json", "application/x-ndjson", "text/csv"
FORMAT_NAMES = {JSON: "json", NDJSON: "ndjson", CSV: "csv"}
_ACCEPTED = "`application/json`, `application/x-ndjson`, `text/csv`"
_NOT_DOCUMENTS = (
    "Couldn't serialize document value: data are neither an object nor a list of objects"
)
_CSV_TYPES = frozenset({"string", "number", "boolean"})

Document = dict[str, Any]


def payload_format(raw_content_type: str | None, content_type: str, has_delimiter: bool) -> str:
    """The payload's MIME type after Meilisearch's 415 checks (`content_type` has no params)."""
    if raw_content_type is None:
        raise MiroirError(
            "missing_content_type",
            "A Content-Type header is missing. Accepted values for the Content-Type header "
            f"are: {_ACCEPTED}",
        )
    if content_type not in FORMAT_NAMES:
        raise MiroirError(
            "invalid_content_type",
            f"The Content-Type `{raw_content_type}` is invalid. Accepted values for the "
            f"Content-Type header are: {_ACCEPTED}",
        )
    if has_delimiter and content_type != CSV:
        raise MiroirError(
            "invalid_content_type",
            f"The Content-Type `{raw_content_type}` does not support the use of a csv "
            "delimiter. The csv delimiter can only be used with the Content-Type `text/csv`.",
        )
    return content_type


def csv_delimiter(raw: str | None) -> str:
    if raw is None:
        return ","
    if len(raw) != 1:
        raise MiroirError(
            "invalid_document_csv_delimiter",
            "Invalid value in parameter `csvDelimiter`: expected a string of one character, "
            f"but found the following string of {len(raw)} characters: `{raw}`",
        )
    if not raw.isascii():
        raise MiroirError(
            "invalid_document_csv_delimiter",
            "Invalid value in parameter `csvDelimiter`: csv delimiter must be an ascii "
            f"character. Found: `{raw}`",
        )
    return raw


def malformed(fmt: str, detail: str) -> MiroirError:
    return MiroirError(
        "malformed_payload", f"The `{FORMAT_NAMES[fmt]}` payload provided is malformed. `{detail}`."
    )


def parse_documents(body: bytes, fmt: str, delimiter: str = ",") -> list[Document]:
    """Every document of a payload in `fmt` (one of JSON, NDJSON, CSV), in order."""
    if not body.strip():
        raise MiroirError("missing_payload", f"A {FORMAT_NAMES[fmt]} payload is missing.")
    if fmt == JSON:
        return _parse_json(body)
    if fmt == NDJSON:
        return _parse_ndjson(body)
    return _parse_csv(body, delimiter)


def _parse_json(body: bytes) -> list[Document]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise malformed(JSON, str(e)) from e
    if type(value) is dict:
        return [value]
    if type(value) is list and all(type(doc) is dict for doc in value):
        return value
    raise malformed(JSON, _NOT_DOCUMENTS)


def _parse_ndjson(body: bytes) -> list[Document]:
    docs: list[Document] = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise malformed(NDJSON, f"{e} at line {number}") from e
        if type(doc) is not dict:
            raise malformed(NDJSON, _NOT_DOCUMENTS)
        docs.append(doc)
    return docs


def csv_column(header: str) -> tuple[str, str]:
    """`(name, type)` of a CSV header; an unknown `:suffix` is part of the name."""
    name, sep, kind = header.rpartition(":")
    if sep and kind in _CSV_TYPES:
        return name, kind
    return header, "string"


def _json_text(value: str) -> str:
    return orjson.dumps(value).decode()


def csv_value(raw: str, kind: str, line: int) -> Any:
    if kind == "string":
        return raw if raw else None
    text = raw.strip()
    if not text:
        return None
    if kind == "boolean":
        if text in ("true", "false"):
            return text == "true"
        raise malformed(
            CSV,
            f"Error parsing boolean {_json_text(raw)} at line {line}: "
            "provided string was not `true` or `false`",
        )
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    # Python accepts `nan`/`inf`, Rust's f64 parser does too, but JSON cannot carry them.
    if number != number or number in (float("inf"), float("-inf")):
        raise malformed(
            CSV, f"Error parsing number {_json_text(raw)} at line {line}: invalid float literal"
        )
    return number


def _parse_csv(body: bytes, delimiter: str) -> list[Document]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise malformed(CSV, f"CSV error: invalid utf-8: {e}") from e
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(rows)
    except (StopIteration, csv.Error) as e:
        if isinstance(e, csv.Error):
            raise malformed(CSV, f"CSV error: {e}") from e
        return []
    columns = [csv_column(h) for h in header]
    plain = all(kind == "string" for _, kind in columns)
    names = [name for name, _ in columns]
    docs: list[Document] = []
    try:
        for row in rows:
            if not row:
                continue
            line = rows.line_num
            if len(row) != len(columns):
                raise malformed(
                    CSV,
                    f"CSV error: record {line - 1} (line: {line}): found record with "
                    f"{len(row)} fields, but the previous record has {len(columns)} fields",
                )
            if plain:
                docs.append({n: (v if v else None) for n, v in zip(names, row, strict=True)})
            else:
                docs.append(
                    {
                        name: csv_value(raw, kind, line)
                        for (name, kind), raw in zip(columns, row, strict=True)
                    }
                )
    except csv.Error as e:
        raise malformed(CSV, f"CSV error: {e}") from e
    return docs


def check_parameters(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """Meilisearch refuses unknown query parameters with `bad_request`."""
    for name in params:
        if name not in allowed:
            expected = ", ".join(f"`{a}`" for a in allowed)
            raise MiroirError(
                "bad_request", f"Unknown parameter `{name}`: expected one of {expected}"
            )


def bool_parameter(params: Mapping[str, str], name: str, code: str) -> bool:
    raw = params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise MiroirError(
            code,
            f"Invalid value in parameter `{name}`: could not parse `{raw}` as a boolean, "
            "expected either `true` or `false`",
        )
    return raw == "true"
