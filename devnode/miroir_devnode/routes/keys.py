"""`/keys` routes: list, create, get, update (name and description only) and delete.

Body validation mirrors Meilisearch's `deserr`: fields are checked in the order they
appear in the document and the first problem is reported, then missing fields in
declaration order. The store lives under `KEY_STORE` in the application.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from ..auth import KEY_STORE
from ..errors import MeiliError
from ..http import json_response, read_json
from ..keys import ACTION_SET, ACTIONS, ApiKey, is_index_pattern, parse_uuid
from ..timeutil import now

routes = web.RouteTableDef()

_CREATE_FIELDS = ("description", "name", "uid", "actions", "indexes", "expiresAt")
_REQUIRED = ("actions", "indexes", "expiresAt")
_PATCH_FIELDS = ("description", "name")
_IMMUTABLE = {
    "uid": "immutable_api_key_uid",
    "actions": "immutable_api_key_actions",
    "indexes": "immutable_api_key_indexes",
    "expiresAt": "immutable_api_key_expires_at",
    "createdAt": "immutable_api_key_created_at",
    "updatedAt": "immutable_api_key_updated_at",
}
_CODES = {
    "description": "invalid_api_key_description",
    "name": "invalid_api_key_name",
    "uid": "invalid_api_key_uid",
    "actions": "invalid_api_key_actions",
    "indexes": "invalid_api_key_indexes",
    "expiresAt": "invalid_api_key_expires_at",
}
_POSITIVE_INT = re.compile(r"\+?[0-9]+")
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)
_NAIVE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}:\d{2}))?")


def _kind(value: Any) -> str:
    """deserr's name for a JSON value, with the value itself except for null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "a positive integer" if value >= 0 else "a negative integer"
    elif isinstance(value, float):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "an array"
    else:
        kind = "an object"
    return f"{kind}: `{orjson.dumps(value).decode()}`"


def _wrong_type(code: str, location: str, expected: str, value: Any) -> MeiliError:
    at = f" at `{location}`" if location else ""
    return MeiliError(
        code, f"Invalid value type{at}: expected {expected}, but found {_kind(value)}"
    )


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _did_you_mean(given: str, accepted: tuple[str, ...]) -> str:
    scored = [(_levenshtein(given, a), a) for a in accepted]
    distance, best = min(scored)
    return f"did you mean `{best}`? " if distance <= 2 else ""


def _one_of(accepted: tuple[str, ...]) -> str:
    return ", ".join(f"`{a}`" for a in accepted)


def _unknown_field(field: str, accepted: tuple[str, ...]) -> MeiliError:
    return MeiliError(
        "bad_request",
        f"Unknown field `{field}`: {_did_you_mean(field, accepted)}expected one of "
        f"{_one_of(accepted)}",
    )


def _body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _wrong_type("bad_request", "", "an object", body)
    return body


def _optional_text(field: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _wrong_type(_CODES[field], f".{field}", "a string", value)
    return value


def _string_list(field: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _wrong_type(_CODES[field], f".{field}", "an array", value)
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise _wrong_type(_CODES[field], f".{field}[{position}]", "a string", item)
    return value


def _actions(value: Any) -> tuple[str, ...]:
    actions = _string_list("actions", value)
    for position, action in enumerate(actions):
        if action not in ACTION_SET:
            raise MeiliError(
                "invalid_api_key_actions",
                f"Unknown value `{action}` at `.actions[{position}]`: "
                f"{_did_you_mean(action, ACTIONS)}expected one of {_one_of(ACTIONS)}",
            )
    return tuple(actions)


def _indexes(value: Any) -> tuple[str, ...]:
    patterns = _string_list("indexes", value)
    for position, pattern in enumerate(patterns):
        if not is_index_pattern(pattern):
            raise MeiliError(
                "invalid_api_key_indexes",
                f"Invalid value at `.indexes[{position}]`: `{pattern}` is not a valid index uid "
                "pattern. Index uid patterns can be an integer or a string containing only "
                "alphanumeric characters, hyphens (-), underscores (_), and optionally end with "
                "a star (*).",
            )
    return tuple(patterns)


def parse_expiration(text: str) -> datetime | None:
    """RFC 3339, or `YYYY-MM-DD[( |T)HH:MM:SS]` read as UTC; None if unparsable."""
    try:
        match = _RFC3339.fullmatch(text)
        if match is not None:
            day, clock, fraction, offset = match.groups()
            micros = (fraction or "")[:6].ljust(6, "0")
            zone = "+00:00" if offset in ("Z", "z") else offset
            return datetime.fromisoformat(f"{day}T{clock}.{micros}{zone}").astimezone(UTC)
        match = _NAIVE.fullmatch(text)
        if match is not None:
            day, clock = match.groups()
            return datetime.fromisoformat(f"{day}T{clock or '00:00:00'}").replace(tzinfo=UTC)
    except ValueError:
        return None
    return None


def _expires_at(value: Any) -> datetime | None:
    text = _optional_text("expiresAt", value)
    if text is None:
        return None
    moment = parse_expiration(text)
    if moment is None or moment <= now():
        raise MeiliError(
            "invalid_api_key_expires_at",
            f"Invalid value at `.expiresAt`: `{text}` is not a valid date. It should follow the "
            "RFC 3339 format to represents a date or datetime in the future or specified as a "
            "null value. e.g. 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'.\n",
        )
    return moment


def parse_create(body: Any) -> ApiKey:
    """A new key from a `POST /keys` body, or the first validation error."""
    fields: dict[str, Any] = {}
    for field, value in _body_object(body).items():
        if field == "description" or field == "name":
            fields[field] = _optional_text(field, value)
        elif field == "uid":
            if not isinstance(value, str):
                raise _wrong_type("invalid_api_key_uid", ".uid", "a string", value)
            try:
                fields["uid"] = parse_uuid(value)
            except ValueError as e:
                raise MeiliError("invalid_api_key_uid", f"Invalid value at `.uid`: {e}") from e
        elif field == "actions":
            fields["actions"] = _actions(value)
        elif field == "indexes":
            fields["indexes"] = _indexes(value)
        elif field == "expiresAt":
            fields["expiresAt"] = _expires_at(value)
        else:
            raise _unknown_field(field, _CREATE_FIELDS)
    for field in _REQUIRED:
        if field not in fields:
            code = "missing_api_key_" + ("expires_at" if field == "expiresAt" else field)
            raise MeiliError(code, f"Missing field `{field}`")
    moment = now()
    return ApiKey(
        uid=fields.get("uid") or str(uuid.uuid4()),
        name=fields.get("name"),
        description=fields.get("description"),
        actions=fields["actions"],
        indexes=fields["indexes"],
        expires_at=fields["expiresAt"],
        created_at=moment,
        updated_at=moment,
    )


def parse_patch(body: Any) -> dict[str, str | None]:
    """The fields a `PATCH /keys/{key}` body sets (`null` clears one)."""
    patch: dict[str, str | None] = {}
    for field, value in _body_object(body).items():
        if field in _PATCH_FIELDS:
            patch[field] = _optional_text(field, value)
        elif field in _IMMUTABLE:
            raise MeiliError(
                _IMMUTABLE[field],
                f"Immutable field `{field}`: expected one of {_one_of(_PATCH_FIELDS)}",
            )
        else:
            raise _unknown_field(field, _PATCH_FIELDS)
    return patch


def _pagination(query: Any) -> tuple[int, int]:
    values = {"offset": 0, "limit": 20}
    for name, raw in query.items():
        if name not in values:
            raise MeiliError(
                "bad_request", f"Unknown parameter `{name}`: expected one of `offset`, `limit`"
            )
        if _POSITIVE_INT.fullmatch(raw) is None:
            raise MeiliError(
                f"invalid_api_key_{name}",
                f"Invalid value in parameter `{name}`: could not parse `{raw}` as a positive "
                "integer",
            )
        values[name] = int(raw)
    return values["offset"], values["limit"]


@routes.get("/keys")
async def list_keys(request: web.Request) -> web.Response:
    offset, limit = _pagination(request.query)
    store = request.config_dict[KEY_STORE]
    keys = store.list()
    page = [store.view(k) for k in keys[offset : offset + limit]]
    return json_response({"results": page, "offset": offset, "limit": limit, "total": len(keys)})


@routes.post("/keys")
async def create_key(request: web.Request) -> web.Response:
    key = parse_create(await read_json(request))
    store = request.config_dict[KEY_STORE]
    return json_response(store.view(store.create(key)), status=201)


@routes.get("/keys/{uid_or_key}")
async def get_key(request: web.Request) -> web.Response:
    store = request.config_dict[KEY_STORE]
    return json_response(store.view(store.find(request.match_info["uid_or_key"])))


@routes.patch("/keys/{uid_or_key}")
async def update_key(request: web.Request) -> web.Response:
    patch = parse_patch(await read_json(request))
    store = request.config_dict[KEY_STORE]
    key = store.find(request.match_info["uid_or_key"])
    updated = store.update(
        key,
        name=patch.get("name", key.name),
        description=patch.get("description", key.description),
    )
    return json_response(store.view(updated))


@routes.delete("/keys/{uid_or_key}")
async def delete_key(request: web.Request) -> web.Response:
    store = request.config_dict[KEY_STORE]
    store.delete(store.find(request.match_info["uid_or_key"]))
    return web.Response(status=204)
