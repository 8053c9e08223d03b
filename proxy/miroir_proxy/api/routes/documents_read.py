"""Document listing routes: `GET /indexes/{uid}/documents` and `POST .../documents/fetch`.

Both answer one globally paginated list whose `total` counts each logical document once
(`dispatch.listing`). The GET form is converted to the POST body; when a node refuses it,
the original query string is judged again by one node so the error keeps the wording a
single node gives to a query string.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from miroir_proxy.dispatch.broadcast import NodeRefused
from miroir_proxy.dispatch.listing import body_from_params, list_documents
from miroir_proxy.dispatch.reads import NotUnderstood, ReadResult, enforce_policy

from ..appkeys import CATALOG, CLUSTER, METRICS
from ..responses import json_response, read_json
from .search import judged_by_a_node, refused

routes = web.RouteTableDef()


async def _listing(request: web.Request, body: Any) -> ReadResult:
    uid = request.match_info["uid"]
    meta = await request.app[CATALOG].require(uid)
    return await list_documents(request.app[CLUSTER], uid, meta.shards, meta.primary_key, body)


def _respond(request: web.Request, result: ReadResult) -> web.Response:
    headers = enforce_policy(request.app[CLUSTER], result.degraded)
    request.app[METRICS].observe_fanout("documents", result.fanout)
    return json_response(result.body, headers=headers)


@routes.get("/indexes/{uid}/documents")
async def get_documents(request: web.Request) -> web.Response:
    try:
        result = await _listing(request, body_from_params(request.query))
    except (NotUnderstood, NodeRefused):
        uid = request.match_info["uid"]
        return await judged_by_a_node(
            request, "GET", f"/indexes/{uid}/documents", params=dict(request.query)
        )
    return _respond(request, result)


@routes.post("/indexes/{uid}/documents/fetch")
async def fetch_documents(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        result = await _listing(request, body)
    except NotUnderstood:
        uid = request.match_info["uid"]
        return await judged_by_a_node(
            request, "POST", f"/indexes/{uid}/documents/fetch", json_body=body
        )
    except NodeRefused as e:
        return refused(e)
    return _respond(request, result)
