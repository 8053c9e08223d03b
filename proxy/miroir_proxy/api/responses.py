"""Reading client bodies and writing answers in Meilisearch's shapes (orjson both ways)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from miroir_proxy.core.errors import MiroirError

JSON = "application/json"


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def raw_json_response(
    body: bytes, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """Pass a node's JSON answer through unchanged (errors stay byte-identical)."""
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)


def error_response(error: MiroirError, headers: dict[str, str] | None = None) -> web.Response:
    extra = dict(headers or {})
    if error.status == 503:
        extra.setdefault("Retry-After", "10")
    return json_response(error.to_dict(), status=error.status, headers=extra)


_ACCEPTS_JSON = "Accepted values for the Content-Type header are: `application/json`"


def check_json_content_type(request: web.Request) -> None:
    """Meilisearch's 415s for a JSON route: no Content-Type, or another type than JSON."""
    given = request.headers.get("Content-Type")
    if given is None:
        message = f"A Content-Type header is missing. {_ACCEPTS_JSON}"
        raise MiroirError("missing_content_type", message)
    if request.content_type != JSON:
        message = f"The Content-Type `{given}` is invalid. {_ACCEPTS_JSON}"
        raise MiroirError("invalid_content_type", message)


async def read_json(request: web.Request, *, allow_empty: bool = False) -> Any:
    """The JSON body after Meilisearch's content-type and payload checks (an empty body is
    None when `allow_empty`)."""
    check_json_content_type(request)
    raw = await request.read()
    if raw.strip():
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            message = f"The json payload provided is malformed. `{e}`."
            raise MiroirError("malformed_payload", message) from e
    if allow_empty:
        return None
    raise MiroirError("missing_payload", "A json payload is missing.")
