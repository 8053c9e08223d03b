"""Miroir's admin API under `/_miroir/` (admin key, or the master key when no admin key is
configured): topology, shard map, readiness and metrics.

`PUT /_miroir/topology` publishes a layout as-is (no data moves): the body is the document
`GET` returns, whose `epoch` is the epoch the change is based on; a stale epoch gets 409.
Every pod routes with the new epoch within `coordination.topology_poll_ms`.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from miroir_proxy.core.changes import ReplaceLayout
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import from_document, to_document
from miroir_proxy.dispatch.topowatch import StaleEpoch

from ..appkeys import CLUSTER, CONFIG, EPOCHS, METRICS, OPERATIONS
from ..responses import json_response, read_json

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
    """The layout this pod routes with, each node with its health and how many shards
    (of indexes with the default S) it holds; `/_miroir/shards` shows the tables."""
    require_admin(request)
    cluster = request.app[CLUSTER]
    layout = cluster.layout
    topo = layout.topology
    health = cluster.health.snapshot() if cluster.health else {}
    document = to_document(topo, tables=False)
    for group, shown in zip(topo.groups, document["groups"], strict=True):
        held = layout.placement(group, topo.shards).node_shards
        for node in shown["nodes"]:
            state = health.get(node["id"])
            node["health"] = state.state.value if state else "unknown"
            node["shards"] = len(held.get(node["id"], ()))
    return json_response({"epoch": topo.epoch, **document})


def _invalid(message: str) -> MiroirError:
    return MiroirError("miroir_invalid_topology", message)


def layout_change(body: Any) -> tuple[int, ReplaceLayout]:
    """(expected epoch, the change) from a `PUT /_miroir/topology` body."""
    if not isinstance(body, dict):
        raise _invalid("The topology must be a JSON object.")
    epoch = body.get("epoch")
    if type(epoch) is not int or epoch < 1:
        raise _invalid("`epoch` must be the positive epoch this change is based on.")
    for name in ("shards", "replicationFactor"):
        value = body.get(name)
        if type(value) is not int or value < 1:
            raise _invalid(f"`{name}` must be a positive integer.")
    groups = body.get("groups")
    if not isinstance(groups, list) or not groups:
        raise _invalid("`groups` must be a non-empty array.")
    # Tables are the planner's business: whatever the body says of them is recomputed.
    untabled = [{**g, "tables": {}, "move": None} if isinstance(g, dict) else g for g in groups]
    try:
        parsed = from_document(epoch, {**body, "groups": untabled})
    except ValueError as e:
        raise _invalid(f"{str(e)[:1].upper()}{str(e)[1:]}.") from e
    return epoch, ReplaceLayout(parsed.shards, parsed.replication_factor, parsed.groups)


@routes.put("/_miroir/topology")
async def put_topology(request: web.Request) -> web.Response:
    """Publish a layout as given (no data moves; see the module docstring)."""
    require_admin(request)
    expected, change = layout_change(await read_json(request))
    await request.app[OPERATIONS].ensure_idle()  # it would replace what one is changing
    try:
        topology = await request.app[EPOCHS].publish(change, based_on=expected)
    except StaleEpoch as e:
        raise MiroirError(
            "miroir_topology_epoch_stale",
            f"The topology is at epoch `{e.current}`, not `{e.expected}`: read it again and "
            "reapply the change.",
        ) from e
    return json_response({"epoch": topology.epoch, **to_document(topology, tables=False)})


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
