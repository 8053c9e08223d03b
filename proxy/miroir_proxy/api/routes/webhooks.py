"""`/webhooks` kept in Miroir's store, not on the nodes.

A webhook registered on the nodes would fire once per node with node task uids the
client has never seen, and Meilisearch generates webhook uuids itself, so the nodes could
not even agree on one. The proxy therefore keeps the list (one store entry, shared by
every proxy pod) in Meilisearch's shapes; delivering task notifications is not done yet.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.state.store import Store

from ..appkeys import STORE
from ..responses import json_response, read_json

routes = web.RouteTableDef()

STORE_KEY = "webhooks"
FOREVER_S = 100 * 365 * 24 * 3600.0
MAX_WEBHOOKS = 20
FIELDS = ("url", "headers")


async def _load(store: Store) -> dict[str, dict[str, Any]]:
    raw = await store.kv_get(STORE_KEY)
    return {} if raw is None else dict(orjson.loads(raw))


async def _save(store: Store, webhooks: dict[str, dict[str, Any]]) -> None:
    await store.kv_set(STORE_KEY, orjson.dumps(webhooks), FOREVER_S)


def _check_body(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise MiroirError("bad_request", "Invalid value type: expected an object")
    for field in raw:
        if field in ("uuid", "isEditable"):
            code = "immutable_webhook_uuid" if field == "uuid" else "immutable_webhook_is_editable"
            raise MiroirError(code, f"Immutable field `{field}`: expected one of `url`, `headers`")
        if field not in FIELDS:
            raise MiroirError(
                "bad_request", f"Unknown field `{field}`: expected one of `url`, `headers`"
            )
    return raw


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise MiroirError("invalid_webhook_url", "Invalid value type at `.url`: expected a string")
    scheme, sep, rest = value.partition("://")
    if not sep or not scheme.isalpha() or not rest:
        raise MiroirError(
            "invalid_webhook_url", f"Invalid URL `{value}`: relative URL without a base"
        )
    return value


def _headers(current: dict[str, str], value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MiroirError(
            "invalid_webhook_headers", "Invalid value type at `.headers`: expected an object"
        )
    merged = dict(current)
    for name, header in value.items():
        if header is None:
            merged.pop(name, None)
        elif isinstance(header, str):
            merged[name] = header
        else:
            raise MiroirError(
                "invalid_webhook_headers",
                f"Invalid value type at `.headers.{name}`: expected a string",
            )
    return merged


async def _find(request: web.Request) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    raw = request.match_info["webhook_uuid"]
    try:
        key = str(uuid.UUID(raw))
    except ValueError as e:
        raise MiroirError("invalid_webhook_uuid", f"Invalid UUID: {e}") from None
    webhooks = await _load(request.app[STORE])
    webhook = webhooks.get(key)
    if webhook is None:
        raise MiroirError("webhook_not_found", f"Webhook `{key}` not found.")
    return webhooks, webhook


@routes.get("/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    return json_response({"results": list((await _load(request.app[STORE])).values())})


@routes.post("/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    body = _check_body(await read_json(request))
    webhook_uuid = str(uuid.uuid4())
    if body.get("url") is None:
        raise MiroirError(
            "invalid_webhook_url", f"The URL for the webhook `{webhook_uuid}` is missing."
        )
    webhook = {
        "uuid": webhook_uuid,
        "isEditable": True,
        "url": _url(body["url"]),
        "headers": _headers({}, body.get("headers")),
    }
    store = request.app[STORE]
    webhooks = await _load(store)
    if len(webhooks) >= MAX_WEBHOOKS:
        raise MiroirError(
            "invalid_webhooks",
            "Defining too many webhooks would crush the server. Please limit the number of "
            f"webhooks to {MAX_WEBHOOKS}. You may use a third-party proxy server to dispatch "
            f"events to more than {MAX_WEBHOOKS} endpoints.",
        )
    webhooks[webhook_uuid] = webhook
    await _save(store, webhooks)
    return json_response(webhook, status=201)


@routes.get("/webhooks/{webhook_uuid}")
async def get_webhook(request: web.Request) -> web.Response:
    return json_response((await _find(request))[1])


@routes.patch("/webhooks/{webhook_uuid}")
async def update_webhook(request: web.Request) -> web.Response:
    webhooks, current = await _find(request)
    body = _check_body(await read_json(request))
    webhook = dict(current)
    if "url" in body:
        webhook["url"] = _url(body["url"])
    if "headers" in body:
        webhook["headers"] = _headers(webhook["headers"], body["headers"])
    webhooks[webhook["uuid"]] = webhook
    await _save(request.app[STORE], webhooks)
    return json_response(webhook)


@routes.delete("/webhooks/{webhook_uuid}")
async def delete_webhook(request: web.Request) -> web.Response:
    webhooks, webhook = await _find(request)
    del webhooks[webhook["uuid"]]
    await _save(request.app[STORE], webhooks)
    return web.Response(status=204)
