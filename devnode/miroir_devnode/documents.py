"""Document payloads (JSON, NDJSON, CSV), primary-key inference and document ids.

Parsing happens in the route, so a malformed payload is a synchronous 400 as in
Meilisearch; id checks and primary-key inference happen when the task runs, so their
errors land in the failed task.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from typing import Any

import orjson

from .errors import MeiliError

JSON, NDJSON, CSV = "application/json", "application/x-ndjson", "text/csv"
_FORMAT_NAMES = {JSON: "json", NDJSON: "ndjson", CSV: "csv"}
_ACCEPTED = "`application/json`, `application/x-ndjson`, `text/csv`"
_DOCUMENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,511}$")
_MISSING = object()

Document = dict[str, Any]


def payload_format(raw_content_type: str | None, content_type: str, has_delimiter: bool) -> str:
    """The payload's MIME type, after Meilisearch's 415 checks."""
    if raw_content_type is None:
        raise MeiliError(
            "missing_content_type",
            "A Content-Type header is missing. Accepted values for the Content-Type header "
            f"are: {_ACCEPTED}",
        )
    if content_type not in _FORMAT_NAMES:
        raise MeiliError(
            "invalid_content_type",
            f"The Content-Type `{raw_content_type}` is invalid. Accepted values for the "
            f"Content-Type header are: {_ACCEPTED}",
        )
    if has_delimiter and content_type != CSV:
        raise MeiliError(
            "invalid_content_type",
            f"The Content-Type `{raw_content_type}` does not support the use of a csv "
            "delimiter. The csv delimiter can only be used with the Content-Type `text/csv`.",
        )
    return content_type


def csv_delimiter(raw: str | None) -> str:
    if raw is None:
        return ","
    if len(raw) != 1:
        raise MeiliError(
            "invalid_document_csv_delimiter",
            "Invalid value in parameter `csvDelimiter`: expected a string of one character, "
            f"but found the following string of {len(raw)} characters: `{raw}`",
        )
    if not raw.isascii():
        raise MeiliError(
            "invalid_document_csv_delimiter",
            f"Invalid value in parameter `csvDelimiter`: csv delimiter must be an ascii "
            f"character. Found: `{raw}`",
        )
    return raw


def _malformed(fmt: str, detail: str) -> MeiliError:
    return MeiliError(
        "malformed_payload",
        f"The `{_FORMAT_NAMES[fmt]}` payload provided is malformed. `{detail}`.",
    )


_NOT_DOCUMENTS = (
    "Couldn't serialize document value: data are neither an object nor a list of objects"
)


def parse_documents(body: bytes, fmt: str, delimiter: str = ",") -> list[Document]:
    if not body.strip():
        raise MeiliError("missing_payload", f"A {_FORMAT_NAMES[fmt]} payload is missing.")
    if fmt == JSON:
        return _parse_json(body)
    if fmt == NDJSON:
        return _parse_ndjson(body)
    return _parse_csv(body, delimiter)


def _parse_json(body: bytes) -> list[Document]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _malformed(JSON, str(e)) from e
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(doc, dict) for doc in value):
        return value
    raise _malformed(JSON, _NOT_DOCUMENTS)


def _parse_ndjson(body: bytes) -> list[Document]:
    docs = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise _malformed(NDJSON, f"{e} at line {number}") from e
        if not isinstance(doc, dict):
            raise _malformed(NDJSON, _NOT_DOCUMENTS)
        docs.append(doc)
    return docs


def _csv_column(header: str) -> tuple[str, str]:
    name, sep, kind = header.rpartition(":")
    if sep and kind in ("string", "number", "boolean"):
        return name, kind
    return header, "string"


def _csv_value(raw: str, kind: str, line: int) -> Any:
    if raw == "":
        return None
    if kind == "string":
        return raw
    if kind == "boolean":
        if raw.strip() in ("true", "false"):
            return raw.strip() == "true"
        raise _malformed(
            CSV,
            f"Error parsing boolean {orjson.dumps(raw).decode()} at line {line}: "
            "provided string was not `true` or `false`",
        )
    text = raw.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise _malformed(
            CSV,
            f"Error parsing number {orjson.dumps(raw).decode()} at line {line}: "
            "invalid float literal",
        )
    return number


def _parse_csv(body: bytes, delimiter: str) -> list[Document]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _malformed(CSV, f"CSV error: invalid utf-8: {e}") from e
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(rows)
    except StopIteration:
        return []
    columns = [_csv_column(h) for h in header]
    docs = []
    for row in rows:
        if not row:
            continue
        line = rows.line_num
        if len(row) != len(columns):
            raise _malformed(
                CSV,
                f"CSV error: record {line - 1} (line: {line}): found record with {len(row)} "
                f"fields, but the previous record has {len(columns)} fields",
            )
        docs.append(
            {
                name: _csv_value(raw, kind, line)
                for (name, kind), raw in zip(columns, row, strict=True)
            }
        )
    return docs


def infer_primary_key(doc: Document) -> str:
    candidates = [field for field in doc if field.lower().endswith("id")]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise MeiliError(
            "index_primary_key_no_candidate_found",
            "The primary key inference failed as the engine did not find any field ending with "
            "`id` in its name. Please specify the primary key manually using the `primaryKey` "
            "query parameter.",
        )
    raise MeiliError(
        "index_primary_key_multiple_candidates_found",
        f"The primary key inference failed as the engine found {len(candidates)} fields ending "
        f"with `id` in their names: '{candidates[0]}' and '{candidates[1]}'. Please specify the "
        "primary key manually using the `primaryKey` query parameter.",
    )


def _lookup(doc: Document, path: str) -> Any:
    value = doc.get(path, _MISSING)
    if value is not _MISSING or "." not in path:
        return value
    head, _, rest = path.partition(".")
    inner = doc.get(head, _MISSING)
    return _lookup(inner, rest) if isinstance(inner, dict) else _MISSING


def normalize_id(value: Any) -> str | None:
    """The external id of a primary-key value, or None when it is not a valid id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and _DOCUMENT_ID.match(value) is not None:
        return value
    return None


def invalid_id(value: Any) -> MeiliError:
    return MeiliError(
        "invalid_document_id",
        f"Document identifier `{orjson.dumps(value).decode()}` is invalid. A document identifier "
        "can be of type integer or string, only composed of alphanumeric characters (a-z A-Z "
        "0-9), hyphens (-) and underscores (_), and can not be more than 511 bytes.",
    )


def document_id(doc: Document, primary_key: str) -> str:
    value = _lookup(doc, primary_key)
    if value is _MISSING:
        raise MeiliError(
            "missing_document_id",
            f"Document doesn't have a `{primary_key}` attribute: `{orjson.dumps(doc).decode()}`.",
        )
    doc_id = normalize_id(value)
    if doc_id is None:
        raise invalid_id(value)
    return doc_id


def prepare_documents(
    docs: list[Document],
    primary_key: str,
    *,
    merge: bool,
    skip_creation: bool,
    existing: Callable[[str], Document | None],
) -> dict[str, Document]:
    """id -> document to store. `merge` (PUT) merges top-level fields into the current
    document; `skip_creation` drops documents that do not exist yet. Later duplicates win."""
    out: dict[str, Document] = {}
    for doc in docs:
        doc_id = document_id(doc, primary_key)
        if merge or skip_creation:
            current = out.get(doc_id)
            if current is None:
                current = existing(doc_id)
            if current is None and skip_creation:
                continue
            if merge and current is not None:
                doc = {**current, **doc}
        out[doc_id] = doc
    return out
