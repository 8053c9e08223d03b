"""Request/response helpers shared by every route: orjson bodies and Meilisearch's
content-type and payload rules (415 for a missing or wrong Content-Type, 400
`missing_payload` for an empty body, 400 `malformed_payload` for broken JSON)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .errors import MeiliError

JSON = "application/json"


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def check_json_content_type(request: web.Request) -> None:
    raw = request.headers.get("Content-Type")
    if raw is None:
        raise MeiliError(
            "missing_content_type",
            "A Content-Type header is missing. Accepted values for the Content-Type header are: "
            "`application/json`",
        )
    if request.content_type != JSON:
        raise MeiliError(
            "invalid_content_type",
            f"The Content-Type `{raw}` is invalid. Accepted values for the Content-Type header "
            "are: `application/json`",
        )


async def read_json(request: web.Request, *, allow_empty: bool = False) -> Any:
    """The request's JSON body, after the Content-Type check.

    An empty body is `missing_payload` unless `allow_empty`, in which case it reads as None.
    """
    check_json_content_type(request)
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return None
        raise MeiliError("missing_payload", "A json payload is missing.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise MeiliError(
            "malformed_payload", f"The json payload provided is malformed. `{e}`."
        ) from e
