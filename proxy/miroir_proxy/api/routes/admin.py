"""Miroir's admin API under `/_miroir/` (admin key, or the master key when no admin key is
configured): topology, shard map, readiness and metrics."""

from __future__ import annotations

import hmac

from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import to_document

from ..appkeys import CLUSTER, CONFIG, METRICS
from ..responses import json_response

routes = web.RouteTableDef()


def require_admin(request: web.Request) -> None:
    config = request.app[CONFIG]
    expected = config.admin_key or config.master_key
    if expected is None:
        return
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise MiroirError(
            "missing_authorization_header",
            "The Authorization header is missing. It must use the bearer authorization method.",
        )
    if not hmac.compare_digest(header.removeprefix("Bearer ").encode(), expected.encode()):
        raise MiroirError("invalid_api_key", "The provided API key is invalid.")


@routes.get("/_miroir/topology")
async def topology(request: web.Request) -> web.Response:
    require_admin(request)
    cluster = request.app[CLUSTER]
    topo = cluster.topology
    health = cluster.health.snapshot() if cluster.health else {}
    document = to_document(topo)
    for group in document["groups"]:
        for node in group["nodes"]:
            state = health.get(node["id"])
            node["health"] = state.state.value if state else "unknown"
    return json_response({"epoch": topo.epoch, **document})


@routes.get("/_miroir/shards")
async def shards(request: web.Request) -> web.Response:
    """Which nodes hold each shard, per group, for indexes created with the default S."""
    require_admin(request)
    cluster = request.app[CLUSTER]
    topo = cluster.topology
    count = int(request.query.get("shards", topo.shards))
    layout = {
        group.id: [list(replicas) for replicas in cluster.placement(group, count).replicas]
        for group in topo.groups
    }
    return json_response({"shards": count, "groups": layout})


@routes.get("/_miroir/ready")
async def ready(request: web.Request) -> web.Response:
    """200 once every shard has a live replica in some active group (no auth: a probe)."""
    cluster = request.app[CLUSTER]
    covering = cluster.covering(cluster.topology.shards)
    if covering.complete:
        return json_response({"status": "ready"})
    return json_response(
        {"status": "unavailable", "uncoveredShards": list(covering.uncovered)}, status=503
    )


@routes.get("/_miroir/metrics")
async def metrics(request: web.Request) -> web.Response:
    require_admin(request)
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain")
