"""Instance routes that are Miroir's own: `/health` answers for the proxy itself."""

from __future__ import annotations

from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.nodes.errors import NodeUnavailable

from ..appkeys import CLUSTER
from ..responses import json_response, raw_json_response

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "available"})


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    """The version of the Meilisearch nodes behind the proxy (first node that answers)."""
    cluster = request.app[CLUSTER]
    for node in cluster.all_nodes():
        if not cluster.is_healthy(node.id):
            continue
        try:
            response = await cluster.call(
                node.id, "GET", "/version", timeout_ms=cluster.config.timeouts.node_read_ms
            )
        except NodeUnavailable:
            continue
        if response.ok:
            return raw_json_response(response.body, 200)
    raise MiroirError("miroir_shard_unavailable", "No Meilisearch node answered `/version`.")
