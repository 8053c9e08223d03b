"""API key routes: a key created through Miroir exists identically on every node.

Every node gets `POST /keys` with the same `uid` (generated here when the client gives
none); the nodes share one master key and derive a key's value from its uid, so the same
uid means the same key value everywhere. A creation some node refuses is deleted again
from the nodes that accepted it. Reads answer from one node. The middleware refuses
these routes when no client master key is configured (`missing_master_key`).

Key values are shown as derived from the clients' master key (`dispatch.keyring`), and a
route may name a key by that value: it reaches the nodes as the key's uid.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from aiohttp import web

from miroir_proxy.dispatch.broadcast import (
    NodeOutcome,
    NodeRefused,
    broadcast,
    first_refusal,
    raise_refusal,
    read_any,
)
from miroir_proxy.dispatch.keyring import with_client_values
from miroir_proxy.nodes.client import NodeResponse

from ..appkeys import CLUSTER, CONFIG, KEYS
from ..responses import json_response, read_json

routes = web.RouteTableDef()
# A key value (a uid is a UUID, with hyphens).
_VALUE = re.compile(r"^[0-9a-fA-F]{64}$")


def _passed(request: web.Request, response: NodeResponse) -> web.Response:
    if not response.ok:
        raise NodeRefused(response)
    answer = with_client_values(response.json(), request.app[CONFIG].master_key)
    return json_response(answer, status=response.status)


async def _key_path(request: web.Request) -> str:
    """`/keys/{uid}` for the key the route names by uid or by its (client) value."""
    named = request.match_info["key"]
    found = await request.app[KEYS].by_value(named) if _VALUE.match(named) else None
    return f"/keys/{named if found is None else found.uid}"


@routes.get("/keys")
async def list_keys(request: web.Request) -> web.Response:
    answer = await read_any(request.app[CLUSTER], "GET", "/keys", params=request.query)
    return _passed(request, answer)


@routes.get("/keys/{key}")
async def get_key(request: web.Request) -> web.Response:
    return _passed(request, await read_any(request.app[CLUSTER], "GET", await _key_path(request)))


@routes.post("/keys")
async def create_key(request: web.Request) -> web.Response:
    body = await read_json(request)
    cluster = request.app[CLUSTER]
    if isinstance(body, dict) and body.get("uid") is None:
        body = {**body, "uid": str(uuid.uuid4())}
    outcomes = await broadcast(cluster, "POST", "/keys", json_body=body)
    request.app[KEYS].invalidate()
    refusal = first_refusal(outcomes)
    if refusal is not None:
        accepted = [o.target for o in outcomes if o.accepted]
        if accepted:
            await broadcast(cluster, "DELETE", f"/keys/{body['uid']}", only=accepted)
        raise_refusal(refusal)
    return _passed(request, _settle(outcomes))


def _settle(outcomes: Sequence[NodeOutcome]) -> NodeResponse:
    """The first node's answer once every node agreed. A node that does not know the key
    (a node's own default key, say) does not stop the change on the others."""
    answers = [o.response for o in outcomes if o.accepted and o.response is not None]
    for outcome in outcomes:
        missing = outcome.response is not None and outcome.response.status == 404
        if not outcome.accepted and not (answers and missing):
            raise_refusal(outcome)
    if not answers:
        raise_refusal(outcomes[0])
    return answers[0]


@routes.patch("/keys/{key}")
async def update_key(request: web.Request) -> web.Response:
    body = await read_json(request)
    path = await _key_path(request)
    outcomes = await broadcast(request.app[CLUSTER], "PATCH", path, json_body=body)
    request.app[KEYS].invalidate()
    return _passed(request, _settle(outcomes))


@routes.delete("/keys/{key}")
async def delete_key(request: web.Request) -> web.Response:
    outcomes = await broadcast(request.app[CLUSTER], "DELETE", await _key_path(request))
    request.app[KEYS].invalidate()
    _settle(outcomes)
    return web.Response(status=204)
