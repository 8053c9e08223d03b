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
from pydantic import ValidationError

from miroir_proxy.config import NodeConfig
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import GroupState, to_document
from miroir_proxy.dispatch.topowatch import StaleEpoch

from ..appkeys import CLUSTER, CONFIG, METRICS, TOPOLOGY
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


def _invalid(message: str) -> MiroirError:
    return MiroirError("miroir_invalid_topology", message)


def _positive(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if type(value) is not int or value < 1:
        raise _invalid(f"`{name}` must be a positive integer.")
    return value


def _check_group(group: Any, replication_factor: int) -> None:
    if not isinstance(group, dict) or not isinstance(group.get("id"), str) or not group["id"]:
        raise _invalid("Every group needs a non-empty string `id`.")
    state = group.get("state", "active")
    if not isinstance(state, str) or state not in {s.value for s in GroupState}:
        states = ", ".join(f"`{s.value}`" for s in GroupState)
        raise _invalid(f"Group `{group['id']}`: `state` must be one of {states}.")
    nodes = group.get("nodes")
    if not isinstance(nodes, list) or len(nodes) < replication_factor:
        raise _invalid(
            f"Group `{group['id']}` needs at least `replicationFactor` ({replication_factor}) "
            "nodes."
        )
    for node in nodes:
        if not isinstance(node, dict):
            raise _invalid(f"Group `{group['id']}`: every node is an object with `id` and `url`.")
        try:
            NodeConfig(id=node.get("id"), url=node.get("url"))
        except ValidationError as e:
            raise _invalid(f"Group `{group['id']}`: {e.errors()[0]['msg']}.") from e


def topology_document(body: Any) -> tuple[int, dict[str, Any]]:
    """(expected epoch, layout document) from a `PUT /_miroir/topology` body."""
    if not isinstance(body, dict):
        raise _invalid("The topology must be a JSON object.")
    epoch = body.get("epoch")
    if type(epoch) is not int or epoch < 1:
        raise _invalid("`epoch` must be the positive epoch this change is based on.")
    shards = _positive(body, "shards")
    replication_factor = _positive(body, "replicationFactor")
    groups = body.get("groups")
    if not isinstance(groups, list) or not groups:
        raise _invalid("`groups` must be a non-empty array.")
    for group in groups:
        _check_group(group, replication_factor)
    document = {
        "shards": shards,
        "replicationFactor": replication_factor,
        "groups": [
            {
                "id": g["id"],
                "state": g.get("state", "active"),
                "nodes": [{"id": n["id"], "url": str(n["url"]).rstrip("/")} for n in g["nodes"]],
            }
            for g in groups
        ],
    }
    return epoch, document


@routes.put("/_miroir/topology")
async def put_topology(request: web.Request) -> web.Response:
    require_admin(request)
    expected, document = topology_document(await read_json(request))
    try:
        topology = await request.app[TOPOLOGY].publish(expected, document)
    except StaleEpoch as e:
        raise MiroirError(
            "miroir_topology_epoch_stale",
            f"The topology is at epoch `{e.current}`, not `{e.expected}`: read it again and "
            "reapply the change.",
        ) from e
    except ValueError as e:  # two groups or nodes sharing an id
        raise _invalid(str(e)) from e
    return json_response({"epoch": topology.epoch, **to_document(topology)})


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
