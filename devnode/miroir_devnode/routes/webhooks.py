"""`/webhooks` CRUD. Webhooks are stored and listed like Meilisearch's, but the devnode
never calls them (it sends no task notifications)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from ..engine.validation import check_object, check_str, type_error, unknown_field
from ..errors import MeiliError
from ..http import json_response, read_json
from ..keys import parse_uuid
from ..node import NODE_KEY, Node

routes = web.RouteTableDef()

MAX_WEBHOOKS = 20
MAX_HEADERS = 200
_FIELDS = ["url", "headers"]


def _check_body(raw: Any) -> dict[str, Any]:
    body = check_object("bad_request", "", raw)
    for field in body:
        if field == "uuid":
            raise MeiliError(
                "immutable_webhook_uuid", "Immutable field `uuid`: expected one of `url`, `headers`"
            )
        if field == "isEditable":
            raise MeiliError(
                "immutable_webhook_is_editable",
                "Immutable field `isEditable`: expected one of `url`, `headers`",
            )
        if field not in _FIELDS:
            raise unknown_field("", field, _FIELDS)
    return body


def _url(value: Any) -> str:
    url = check_str("invalid_webhook_url", ".url", value)
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.isalpha() or not rest:
        raise MeiliError("invalid_webhook_url", f"Invalid URL `{url}`: relative URL without a base")
    return url


def _apply_headers(webhook: dict[str, Any], value: Any) -> None:
    if value is None:
        webhook["headers"] = {}
        return
    headers = check_object("invalid_webhook_headers", ".headers", value)
    merged = dict(webhook["headers"])
    for name, header in headers.items():
        if header is None:
            merged.pop(name, None)
        else:
            merged[name] = check_str("invalid_webhook_headers", f".headers.{name}", header)
    if len(merged) > MAX_HEADERS:
        raise MeiliError(
            "invalid_webhook_headers",
            f"Too many headers for the webhook `{webhook['uuid']}`. Please limit the number of "
            f"headers to {MAX_HEADERS}. Hint: To remove an already defined header set its value "
            "to `null`",
        )
    webhook["headers"] = merged


def _find(request: web.Request) -> tuple[Node, dict[str, Any]]:
    node = request.app[NODE_KEY]
    raw = request.match_info["webhook_uuid"]
    try:
        key = parse_uuid(raw)
    except ValueError as e:
        raise MeiliError("invalid_webhook_uuid", f"Invalid UUID: {e}") from None
    webhook = node.webhooks.get(key)
    if webhook is None:
        raise MeiliError("webhook_not_found", f"Webhook `{key}` not found.")
    return node, webhook


def _save(node: Node, webhook: dict[str, Any]) -> None:
    node.storage.put_webhook(webhook)
    node.webhooks[webhook["uuid"]] = webhook


@routes.get("/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    return json_response({"results": list(request.app[NODE_KEY].webhooks.values())})


@routes.post("/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    body = _check_body(await read_json(request))
    webhook: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "isEditable": True,
        "url": "",
        "headers": {},
    }
    if body.get("url") is None:
        raise MeiliError(
            "invalid_webhook_url", f"The URL for the webhook `{webhook['uuid']}` is missing."
        )
    webhook["url"] = _url(body["url"])
    _apply_headers(webhook, body.get("headers"))
    if len(node.webhooks) >= MAX_WEBHOOKS:
        raise MeiliError(
            "invalid_webhooks",
            f"Defining too many webhooks would crush the server. Please limit the number of "
            f"webhooks to {MAX_WEBHOOKS}. You may use a third-party proxy server to dispatch "
            f"events to more than {MAX_WEBHOOKS} endpoints.",
        )
    _save(node, webhook)
    return json_response(webhook, 201)


@routes.get("/webhooks/{webhook_uuid}")
async def get_webhook(request: web.Request) -> web.Response:
    return json_response(_find(request)[1])


@routes.patch("/webhooks/{webhook_uuid}")
async def update_webhook(request: web.Request) -> web.Response:
    node, current = _find(request)
    body = _check_body(await read_json(request))
    webhook = dict(current)
    if "url" in body:
        if body["url"] is None:
            raise type_error("invalid_webhook_url", ".url", ["string"], None)
        webhook["url"] = _url(body["url"])
    if "headers" in body:
        _apply_headers(webhook, body["headers"])
    _save(node, webhook)
    return json_response(webhook)


@routes.delete("/webhooks/{webhook_uuid}")
async def delete_webhook(request: web.Request) -> web.Response:
    node, webhook = _find(request)
    node.storage.delete_webhook(webhook["uuid"])
    del node.webhooks[webhook["uuid"]]
    return web.Response(status=204)
