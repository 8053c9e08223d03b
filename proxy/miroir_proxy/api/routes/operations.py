"""Admin API for long cluster changes (ARCHITECTURE §6): operations, replica groups, nodes.

Every route that starts work answers `202 {"operation": "<id>", ...}`; the operation runs
on whichever pod holds its lease, and `GET /_miroir/operations/{id}` follows it.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from miroir_proxy.core.changes import AddGroup, AddNode, DrainNode, RemoveGroup, RemoveNode, apply
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import (
    GroupState,
    Node,
    Topology,
    check_group_id,
    check_node_id,
    check_node_url,
)
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.operations import nodes as node_ops
from miroir_proxy.operations.groups import ADD, REMOVE, group_params
from miroir_proxy.state.store import OperationRecord

from ..appkeys import CLUSTER, OPERATIONS, STORE
from ..responses import json_response, read_json
from .admin import require_admin

routes = web.RouteTableDef()


def operation_view(record: OperationRecord) -> dict[str, Any]:
    progress = record.progress
    return {
        "id": record.id,
        "kind": record.kind,
        "state": record.state,
        "phase": record.phase,
        "progress": {
            "done": progress.get("done", 0),
            "total": progress.get("total", 0),
            "unit": progress.get("unit", ""),
            **{k: v for k, v in progress.items() if k not in ("done", "total", "unit")},
        },
        "params": record.params,
        "cancelRequested": record.cancel_requested,
        "startedAt": record.started_at,
        "finishedAt": record.finished_at,
        "error": record.error,
    }


async def _operation(request: web.Request) -> OperationRecord:
    op_id = request.match_info["op_id"]
    record = await request.app[STORE].get_operation(op_id)
    if record is None:
        raise MiroirError("miroir_operation_not_found", f"Operation `{op_id}` not found.")
    return record


@routes.get("/_miroir/operations")
async def list_operations(request: web.Request) -> web.Response:
    require_admin(request)
    records = await request.app[STORE].list_operations()
    return json_response({"results": [operation_view(r) for r in records]})


@routes.get("/_miroir/operations/{op_id}")
async def get_operation(request: web.Request) -> web.Response:
    require_admin(request)
    return json_response(operation_view(await _operation(request)))


@routes.post("/_miroir/operations/{op_id}/cancel")
async def cancel_operation(request: web.Request) -> web.Response:
    """Stop at the next safe point, leaving the cluster as before the operation."""
    require_admin(request)
    record = await request.app[OPERATIONS].cancel(request.match_info["op_id"])
    return json_response(operation_view(record), status=202)


# --- replica groups -------------------------------------------------------------------


def _invalid(message: str) -> MiroirError:
    return MiroirError("bad_request", message)


def _group_body(body: Any, topology: Topology) -> AddGroup:
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object with `nodes`.")
    unknown = set(body) - {"id", "nodes"}
    if unknown:
        raise _invalid(f"Unknown field `{sorted(unknown)[0]}`: expected `id` and `nodes`.")
    group_id = body.get("id")
    if group_id is None:
        taken = {g.id for g in topology.groups}
        group_id = next(f"g{i}" for i in range(len(taken) + 1) if f"g{i}" not in taken)
    nodes = body.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise _invalid('`nodes` must be a non-empty array of `{"id", "url"}` objects.')
    members = []
    try:
        check_group_id(group_id)
        for position, node in enumerate(nodes):
            if not isinstance(node, dict) or set(node) != {"id", "url"}:
                raise ValueError(f"`nodes[{position}]` must be an object with `id` and `url`")
            members.append(Node(check_node_id(node["id"]), check_node_url(node["url"])))
    except ValueError as e:
        raise _invalid(f"{str(e)[:1].upper()}{str(e)[1:]}.") from e
    change = AddGroup(str(group_id), tuple(members))
    apply(topology, change)  # refuses what cannot be added, with the reason
    return change


async def _check_node(request: web.Request, node: Node) -> None:
    """400 `miroir_invalid_node` unless `node` answers like an empty Meilisearch that
    accepts the nodes' master key."""
    cluster = request.app[CLUSTER]
    timeout = cluster.config.timeouts.node_read_ms

    async def get(path: str) -> Any:
        try:
            response = await cluster.nodes.request(node.url, "GET", path, timeout_ms=timeout)
        except NodeError as e:
            raise _bad_node(node, f"it did not answer: {e.reason}") from e
        if response.status in (401, 403):
            raise _bad_node(node, "it refuses the nodes' master key")
        try:
            answer = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            answer = None
        if response.status != 200 or not isinstance(answer, dict):
            raise _bad_node(node, f"`GET {path}` answered {response.status}, not Meilisearch's")
        return answer

    if (await get("/health")).get("status") != "available":
        raise _bad_node(node, "`GET /health` is not `available`")
    if "pkgVersion" not in await get("/version"):
        raise _bad_node(node, "`GET /version` has no `pkgVersion`")
    if (await get("/indexes?limit=1")).get("total", 0):
        raise _bad_node(node, "it already holds indexes; a node joining the cluster must be empty")


def _bad_node(node: Node, reason: str) -> MiroirError:
    return MiroirError("miroir_invalid_node", f"Node `{node.id}` ({node.url}): {reason}.")


@routes.post("/_miroir/groups")
async def add_group(request: web.Request) -> web.Response:
    """Add a replica group: it receives writes at once, is synced, then serves searches."""
    require_admin(request)
    body = await read_json(request)
    await request.app[OPERATIONS].ensure_idle()
    change = _group_body(body, request.app[CLUSTER].topology)
    for node in change.nodes:
        await _check_node(request, node)
    record = await request.app[OPERATIONS].start(ADD, group_params(change.group_id, change.nodes))
    return json_response(
        {"group": change.group_id, "operation": record.id, "state": GroupState.INITIALIZING},
        status=202,
    )


async def _group_view(request: web.Request, topology: Topology, group_id: str) -> dict[str, Any]:
    cluster = request.app[CLUSTER]
    group = topology.group(group_id)
    health = cluster.health.snapshot() if cluster.health else {}
    held = cluster.layout.placement(group, topology.shards).node_shards
    view: dict[str, Any] = {
        "id": group.id,
        "state": group.state.value,
        "nodes": [
            {
                "id": n.id,
                "url": n.url,
                "health": health[n.id].state.value if n.id in health else "unknown",
                "shards": len(held.get(n.id, ())),
            }
            for n in group.nodes
        ],
    }
    sync = await _last_sync(request, group_id)
    if sync is not None:
        progress = sync.progress
        total = progress.get("total", 0)
        if sync.phase == "sync":
            synced = progress.get("done", 0)
        else:
            synced = total if sync.phase in ("verify", "activate", "done") else 0
        view["shards"] = {"total": total, "synced": synced}
        view["documentsCopied"] = progress.get("documentsCopied", 0)
        view["operation"] = {"id": sync.id, "state": sync.state, "phase": sync.phase}
    return view


async def _last_sync(request: web.Request, group_id: str) -> OperationRecord | None:
    for record in await request.app[STORE].list_operations():
        if record.kind == ADD and record.params.get("group") == group_id:
            return record
    return None


@routes.get("/_miroir/groups")
async def list_groups(request: web.Request) -> web.Response:
    require_admin(request)
    topology = request.app[CLUSTER].topology
    groups = [await _group_view(request, topology, g.id) for g in topology.groups]
    return json_response({"results": groups})


@routes.get("/_miroir/groups/{group_id}")
async def get_group(request: web.Request) -> web.Response:
    require_admin(request)
    topology = request.app[CLUSTER].topology
    group_id = request.match_info["group_id"]
    if not topology.has_group(group_id):
        raise MiroirError("miroir_group_not_found", f"Replica group `{group_id}` not found.")
    return json_response(await _group_view(request, topology, group_id))


@routes.delete("/_miroir/groups/{group_id}")
async def remove_group(request: web.Request) -> web.Response:
    """Stop routing to the group, then forget it (its nodes keep their data)."""
    require_admin(request)
    topology = request.app[CLUSTER].topology
    group_id = request.match_info["group_id"]
    await request.app[OPERATIONS].ensure_idle()
    apply(topology, RemoveGroup(group_id))  # 404 / last active group, before any work
    record = await request.app[OPERATIONS].start(REMOVE, {"group": group_id})
    return json_response({"group": group_id, "operation": record.id}, status=202)


# --- nodes ----------------------------------------------------------------------------


def _node_body(body: Any, topology: Topology) -> AddNode:
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object with `id`, `url` and `group`.")
    unknown = set(body) - {"id", "url", "group"}
    if unknown:
        raise _invalid(f"Unknown field `{sorted(unknown)[0]}`: expected `id`, `url` and `group`.")
    group_id = body.get("group")
    if group_id is None and len(topology.groups) == 1:
        group_id = topology.groups[0].id
    try:
        node = Node(check_node_id(body.get("id")), check_node_url(body.get("url")))
        check_group_id(group_id)
    except ValueError as e:
        raise _invalid(f"{str(e)[:1].upper()}{str(e)[1:]}.") from e
    change = AddNode(str(group_id), node)
    apply(topology, change)  # unknown group, a node id already taken
    return change


@routes.post("/_miroir/nodes")
async def add_node(request: web.Request) -> web.Response:
    """Add a node to a group; the group's replicas then move onto it (its balanced share)."""
    require_admin(request)
    body = await read_json(request)
    await request.app[OPERATIONS].ensure_idle()
    change = _node_body(body, request.app[CLUSTER].topology)
    await _check_node(request, change.node)
    params = node_ops.node_params(change.node.id, change.group_id, url=change.node.url)
    record = await request.app[OPERATIONS].start(node_ops.ADD, params)
    return _started(change.node.id, change.group_id, record)


@routes.post("/_miroir/nodes/{node_id}/drain")
async def drain_node(request: web.Request) -> web.Response:
    """Move every replica off the node; it stays in its group, holding nothing."""
    require_admin(request)
    await request.app[OPERATIONS].ensure_idle()
    topology = request.app[CLUSTER].topology
    node_id = request.match_info["node_id"]
    apply(topology, DrainNode(node_id))  # unknown node, too few nodes left
    record = await request.app[OPERATIONS].start(
        node_ops.DRAIN, node_ops.node_params(node_id, _group_of(topology, node_id))
    )
    return _started(node_id, _group_of(topology, node_id), record)


@routes.delete("/_miroir/nodes/{node_id}")
async def remove_node(request: web.Request) -> web.Response:
    """Forget a drained node; `?force=true` forgets a dead one and refills its replicas
    from the survivors (its group's, then other groups')."""
    require_admin(request)
    force = request.query.get("force", "false")
    if force not in ("true", "false"):
        raise _invalid("`force` must be `true` or `false`.")
    await request.app[OPERATIONS].ensure_idle()
    topology = request.app[CLUSTER].topology
    node_id = request.match_info["node_id"]
    change = RemoveNode(node_id, force=force == "true")
    apply(topology, change)  # unknown node, not drained, too few nodes left
    group_id = _group_of(topology, node_id)
    params = node_ops.node_params(node_id, group_id, force=change.force)
    record = await request.app[OPERATIONS].start(node_ops.REMOVE, params)
    return _started(node_id, group_id, record)


@routes.get("/_miroir/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    """Every node with its group, health, whether it drains, and the shards it serves
    (of indexes with the default S)."""
    require_admin(request)
    cluster = request.app[CLUSTER]
    topology = cluster.topology
    health = cluster.health.snapshot() if cluster.health else {}
    results = []
    for group in topology.groups:
        held = cluster.layout.placement(group, topology.shards).node_shards
        for node in group.nodes:
            results.append(
                {
                    "id": node.id,
                    "url": node.url,
                    "group": group.id,
                    "health": health[node.id].state.value if node.id in health else "unknown",
                    "draining": node.draining,
                    "shards": len(held.get(node.id, ())),
                }
            )
    return json_response({"results": results})


def _group_of(topology: Topology, node_id: str) -> str:
    for group in topology.groups:
        if node_id in group.node_ids:
            return group.id
    raise MiroirError("miroir_node_not_found", f"Node `{node_id}` not found.")


def _started(node_id: str, group_id: str, record: OperationRecord) -> web.Response:
    return json_response({"node": node_id, "group": group_id, "operation": record.id}, status=202)
