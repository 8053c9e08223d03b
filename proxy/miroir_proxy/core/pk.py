"""Primary keys: inference, extraction from documents, id validation, reserved fields.

Errors carry Meilisearch's code and message; the api layer renders them (status and type
come from the code table). Messages embed values as compact JSON, as serde_json prints
them, because clients and tests compare them verbatim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from miroir_proxy.core.errors import MiroirError

RESERVED_PREFIX = "_miroir_"
# The one `_miroir_` field clients may set: when the document expires, in milliseconds
# since the Unix epoch (searches hide it from then on; the TTL sweep deletes it).
EXPIRES_FIELD = "_miroir_expires_at"
MAX_ID_BYTES = 511
_VALID_ID = re.compile(r"[A-Za-z0-9_-]+")
_MANUAL_HINT = "Please specify the primary key manually using the `primaryKey` query parameter."


class DocumentError(MiroirError):
    """A document or primary-key problem the client must fix."""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def infer_primary_key(first_document: Mapping[str, Any]) -> str:
    """Meilisearch's rule: the single top-level field whose lowercased name ends with `id`."""
    candidates = sorted(name for name in first_document if name.lower().endswith("id"))
    if not candidates:
        raise DocumentError(
            "index_primary_key_no_candidate_found",
            "The primary key inference failed as the engine did not find any field ending "
            f"with `id` in its name. {_MANUAL_HINT}",
        )
    if len(candidates) > 1:
        raise DocumentError(
            "index_primary_key_multiple_candidates_found",
            f"The primary key inference failed as the engine found {len(candidates)} fields "
            f"ending with `id` in their names: '{candidates[0]}' and '{candidates[1]}'. "
            f"{_MANUAL_HINT}",
        )
    return candidates[0]


def resolve_primary_key(
    index_primary_key: str | None,
    requested: str | None,
    first_document: Mapping[str, Any] | None,
) -> str | None:
    """The key a batch uses: the index's, else the `primaryKey` parameter, else inferred.

    ``None`` only when nothing decides it yet (an empty batch on an index without one).
    """
    if index_primary_key is not None:
        return index_primary_key
    if requested is not None:
        return requested
    if first_document is None:
        return None
    return infer_primary_key(first_document)


_MISSING = object()


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    # `a.b` may be a literal key, a nested object, or a mix (`{"a": {"b": 1}}` or
    # `{"a.b": 1}`); like Meilisearch, try the longest literal prefix first.
    value = document.get(path, _MISSING)
    if value is not _MISSING:
        return value
    cut = path.rfind(".")
    while cut > 0:
        head = document.get(path[:cut], _MISSING)
        if isinstance(head, Mapping):
            found = _lookup(head, path[cut + 1 :])
            if found is not _MISSING:
                return found
        cut = path.rfind(".", 0, cut)
    return _MISSING


def document_id(document: Mapping[str, Any], primary_key: str) -> str | int:
    """The validated id of ``document`` under ``primary_key`` (dotted paths allowed)."""
    value = (
        _lookup(document, primary_key)
        if "." in primary_key
        else document.get(primary_key, _MISSING)
    )
    if value is _MISSING:
        raise DocumentError(
            "missing_document_id",
            f"Document doesn't have a `{primary_key}` attribute: `{_json(document)}`.",
        )
    return validate_document_id(value)


def validate_document_id(value: Any) -> str | int:
    if type(value) is int:
        return value
    if type(value) is str and _VALID_ID.fullmatch(value) is not None and len(value) <= MAX_ID_BYTES:
        return value
    raise DocumentError(
        "invalid_document_id",
        f"Document identifier `{_json(value)}` is invalid. A document identifier can be of "
        "type integer or string, only composed of alphanumeric characters (a-z A-Z 0-9), "
        "hyphens (-) and underscores (_), and can not be more than 511 bytes.",
    )


def reserved_fields(document: Mapping[str, Any]) -> list[str]:
    """Top-level `_miroir_*` fields a client tried to set (they are Miroir's own)."""
    return [name for name in document if name.startswith(RESERVED_PREFIX) and name != EXPIRES_FIELD]


def check_reserved_fields(document: Mapping[str, Any]) -> None:
    """Refuse Miroir's own fields; `_miroir_expires_at` must be a non-negative integer."""
    expires = document.get(EXPIRES_FIELD, _MISSING)
    if expires is not _MISSING and (type(expires) is not int or expires < 0):
        raise DocumentError(
            "miroir_invalid_expires_at",
            f"The field `{EXPIRES_FIELD}` must be a non-negative integer (milliseconds since "
            f"the Unix epoch), not `{_json(expires)}`.",
        )
    fields = reserved_fields(document)
    if fields:
        raise DocumentError(
            "miroir_reserved_field",
            f"The field `{fields[0]}` is reserved: fields starting with `{RESERVED_PREFIX}` "
            "belong to Miroir and cannot be set by clients.",
        )


def is_reserved(name: str) -> bool:
    return name.startswith(RESERVED_PREFIX)
