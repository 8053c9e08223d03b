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


def check_json_content_type(request: web.Request) -> None:
    raw = request.headers.get("Content-Type")
    if raw is None:
        raise MiroirError(
            "missing_content_type",
            "A Content-Type header is missing. Accepted values for the Content-Type header are: "
            "`application/json`",
        )
    if request.content_type != JSON:
        raise MiroirError(
            "invalid_content_type",
            f"The Content-Type `{raw}` is invalid. Accepted values for the Content-Type header "
            "are: `application/json`",
        )


async def read_json(request: web.Request, *, allow_empty: bool = False) -> Any:
    """The JSON body after Meilisearch's content-type and payload checks."""
    check_json_content_type(request)
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return None
        raise MiroirError("missing_payload", "A json payload is missing.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise MiroirError(
            "malformed_payload", f"The json payload provided is malformed. `{e}`."
        ) from e
