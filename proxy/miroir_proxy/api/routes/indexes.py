"""Index routes: create, list, get, update, delete, swap, and statistics.

Index changes are broadcasts to every node of every group. Creation goes through the
catalog so that `_miroir_shard` is made filterable on every node and a node that refuses
rolls the creation back; an index the catalog already knows gets Meilisearch's failed
task (`index_already_exists`) without touching a node. The catalog follows a change when
it is enqueued: the nodes apply their queues in order, so later requests already route
against the new state. Reads answer from one live node, like a single Meilisearch.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from miroir_proxy.core.changes import ForgetName
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import Topology
from miroir_proxy.dispatch.broadcast import (
    NodeRefused,
    broadcast,
    mark_held_shards,
    read_any,
    task_refs,
)
from miroir_proxy.dispatch.fields import list_fields
from miroir_proxy.dispatch.payloads import check_parameters
from miroir_proxy.dispatch.reads import enforce_policy
from miroir_proxy.dispatch.stats import count_documents, human_sizes, index_stats, instance_stats

from ..appkeys import CATALOG, CLUSTER, TASKS
from ..auth import AUTH, invalid_key
from ..responses import json_response, raw_json_response, read_json
from .aliases import SENT_INDEX, publish_everywhere

routes = web.RouteTableDef()

LIST_ALL = 1_000_000


def uint_parameter(request: web.Request, name: str, code: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise MiroirError(
            code,
            f"Invalid value in parameter `{name}`: could not parse `{raw}` as a positive integer",
        )
    return int(raw)


async def _with_primary_key(request: web.Request, index: dict[str, Any]) -> dict[str, Any]:
    # A node that has not seen a document yet may not know the key the proxy resolved.
    if index.get("primaryKey") is None:
        meta = await request.app[CATALOG].get(str(index.get("uid")))
        if meta is not None and meta.primary_key is not None:
            index["primaryKey"] = meta.primary_key
    return index


@routes.get("/indexes")
async def list_indexes(request: web.Request) -> web.Response:
    check_parameters(request.query, ("offset", "limit"))
    offset = uint_parameter(request, "offset", "invalid_index_offset", 0)
    limit = uint_parameter(request, "limit", "invalid_index_limit", 20)
    response = await read_any(request.app[CLUSTER], "GET", "/indexes", params={"limit": LIST_ALL})
    if not response.ok:
        raise NodeRefused(response)
    auth = request[AUTH]
    topology = request.app[CLUSTER].topology
    # Indexes by the names clients know them by: a resharded index's hidden uid shows as
    # the client's name, a reshard's shadow (or the old copy it keeps) not at all.
    visible: list[tuple[str, dict[str, Any]]] = []
    for index in response.json()["results"]:
        name = topology.client_name(str(index["uid"]))
        if name is not None and auth.allows_index(name):
            visible.append((name, index))
    visible.sort(key=lambda item: item[0])
    page = [
        {**await _with_primary_key(request, index), "uid": name}
        for name, index in visible[offset : offset + limit]
    ]
    return json_response({"results": page, "offset": offset, "limit": limit, "total": len(visible)})


@routes.get("/indexes/{index_uid}")
async def get_index(request: web.Request) -> web.Response:
    uid = request.match_info["index_uid"]
    response = await read_any(request.app[CLUSTER], "GET", f"/indexes/{uid}")
    if not response.ok:
        raise NodeRefused(response)
    index = await _with_primary_key(request, response.json())
    index["uid"] = request.app[CLUSTER].topology.client_name(uid) or uid
    return json_response(index)


@routes.post("/indexes")
async def create_index(request: web.Request) -> web.Response:
    body = await read_json(request)
    uid = body.get("uid") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(uid, str):
        # Malformed: one node gives the client the exact error (and creates nothing).
        response = await read_any(request.app[CLUSTER], "POST", "/indexes", json_body=body)
        raise NodeRefused(response)
    if not request[AUTH].allows_index(uid):
        raise invalid_key()
    if uid in request.app[CLUSTER].topology.aliases:
        raise MiroirError(
            "miroir_alias_conflict",
            f"`{uid}` is an alias: an alias and an index may not share a name.",
        )
    tasks = request.app[TASKS]
    details = {"primaryKey": body.get("primaryKey")}
    resharded = uid in request.app[CLUSTER].topology.names  # it lives under a hidden uid
    created = None if resharded else await request.app[CATALOG].create(uid, body)
    if created is None:
        error = MiroirError("index_already_exists", f"Index `{uid}` already exists.")
        record = await tasks.enqueue_failed(uid, "indexCreation", error, details=details)
    else:
        record = await tasks.enqueue(
            uid, "indexCreation", created[1], details=details, policy="all"
        )
    return json_response(tasks.summary(record), status=202)


def _not_resharded(topology: Topology, names: list[Any]) -> None:
    """Renames and swaps move node indexes by name, which a resharded index (living under
    a hidden uid) or one being resharded cannot follow."""
    for name in names:
        if isinstance(name, str) and (
            name in topology.names or topology.also_written(topology.concrete(name))
        ):
            raise MiroirError(
                "bad_request",
                f"Index `{name}` was resharded online or is being resharded: it cannot be "
                "renamed or swapped.",
            )


@routes.patch("/indexes/{index_uid}")
async def update_index(request: web.Request) -> web.Response:
    uid = request.match_info["index_uid"]
    body = await read_json(request)
    cluster, catalog = request.app[CLUSTER], request.app[CATALOG]
    if isinstance(body, dict) and body.get("uid") not in (None, uid):
        _not_resharded(cluster.topology, [request.get(SENT_INDEX, uid), body.get("uid")])
    refs = task_refs(await broadcast(cluster, "PATCH", f"/indexes/{uid}", json_body=body))
    details: dict[str, Any] = {"primaryKey": body.get("primaryKey")}
    new_uid = body.get("uid")
    primary_key = body.get("primaryKey")
    meta = await catalog.get(uid)
    # Nodes refuse a new key once documents exist; the catalog must agree with them.
    if (
        meta is not None
        and isinstance(primary_key, str)
        and primary_key != meta.primary_key
        and (meta.primary_key is None or (await count_documents(cluster, meta)).documents == 0)
    ):
        await catalog.set_primary_key(uid, primary_key)
    if isinstance(new_uid, str) and new_uid != uid:
        details.update(oldIndexUid=uid, newIndexUid=new_uid)
        await catalog.rename(uid, new_uid)
    tasks = request.app[TASKS]
    record = await tasks.enqueue(uid, "indexUpdate", refs, details=details, policy="all")
    return json_response(tasks.summary(record), status=202)


@routes.delete("/indexes/{index_uid}")
async def delete_index(request: web.Request) -> web.Response:
    uid = request.match_info["index_uid"]
    topology = request.app[CLUSTER].topology
    if topology.also_written(uid):
        raise MiroirError(
            "miroir_operation_in_progress",
            f"Index `{topology.client_name(uid) or uid}` is being resharded; wait for the "
            "reshard to finish or cancel it first.",
        )
    meta = await request.app[CATALOG].get(uid)
    refs = task_refs(await broadcast(request.app[CLUSTER], "DELETE", f"/indexes/{uid}"))
    name = topology.client_name(uid)
    if name is not None and name != uid:
        # The name is free again on every pod before the answer: a creation through any
        # pod makes a new index, never reaches the deleted one.
        await publish_everywhere(request, ForgetName(name))
    if meta is not None:
        # Each node counts the documents of its shards: divided by the copies, once each.
        mark_held_shards(request.app[CLUSTER], refs, meta.shards)
    await request.app[CATALOG].forget(uid)
    tasks = request.app[TASKS]
    record = await tasks.enqueue(
        uid, "indexDeletion", refs, details={"deletedDocuments": None}, policy="all"
    )
    return json_response(tasks.summary(record), status=202)


@routes.post("/indexes/{index_uid}/fields")
async def list_index_fields(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        answer = await list_fields(request.app[CLUSTER], request.match_info["index_uid"], body)
    except NodeRefused as e:
        return raw_json_response(e.response.body, e.response.status)
    return json_response(answer)


@routes.post("/indexes/{index_uid}/compact")
async def compact_index(request: web.Request) -> web.Response:
    """Every node compacts its copy; the task adds up their sizes before and after."""
    uid = request.match_info["index_uid"]
    refs = task_refs(await broadcast(request.app[CLUSTER], "POST", f"/indexes/{uid}/compact"))
    tasks = request.app[TASKS]
    record = await tasks.enqueue(uid, "indexCompaction", refs, details={}, policy="all")
    return json_response(tasks.summary(record), status=202)


@routes.post("/swap-indexes")
async def swap_indexes(request: web.Request) -> web.Response:
    body = await read_json(request)
    if isinstance(body, list):
        swapped = [n for s in body if isinstance(s, dict) for n in s.get("indexes") or ()]
        _not_resharded(request.app[CLUSTER].topology, swapped)
    refs = task_refs(await broadcast(request.app[CLUSTER], "POST", "/swap-indexes", json_body=body))
    catalog = request.app[CATALOG]
    swaps = []
    for swap in body:
        first, second = swap["indexes"]
        rename = bool(swap.get("rename", False))
        swaps.append({"indexes": [first, second], "rename": rename})
        if rename:
            await catalog.rename(first, second)
        else:
            await catalog.swap(first, second)
    tasks = request.app[TASKS]
    record = await tasks.enqueue(None, "indexSwap", refs, details={"swaps": swaps}, policy="all")
    return json_response(tasks.summary(record), status=202)


async def _stats_options(request: web.Request, path: str) -> tuple[bool, bool]:
    """(human sizes, internal database sizes); a node judges any other query string."""
    query = request.query
    if not query:
        return False, False
    known = {"showInternalDatabaseSizes": ("true", "false"), "sizeFormat": ("raw", "human")}
    if any(name not in known or value not in known[name] for name, value in query.items()):
        response = await read_any(request.app[CLUSTER], "GET", path, params=dict(query))
        if not response.ok:
            raise NodeRefused(response)
    return query.get("sizeFormat") == "human", query.get("showInternalDatabaseSizes") == "true"


@routes.get("/indexes/{index_uid}/stats")
async def get_index_stats(request: web.Request) -> web.Response:
    meta = await request.app[CATALOG].require(request.match_info["index_uid"])
    cluster = request.app[CLUSTER]
    try:
        human, internal = await _stats_options(request, f"/indexes/{meta.uid}/stats")
    except NodeRefused as e:
        return raw_json_response(e.response.body, e.response.status)
    body, counted = await index_stats(cluster, meta, internal=internal)
    body = human_sizes(body) if human else body
    return json_response(body, headers=enforce_policy(cluster, counted.degraded))


@routes.get("/stats")
async def get_stats(request: web.Request) -> web.Response:
    auth = request[AUTH]
    try:
        human, internal = await _stats_options(request, "/stats")
    except NodeRefused as e:
        return raw_json_response(e.response.body, e.response.status)
    cluster = request.app[CLUSTER]
    topology = cluster.topology
    known = await request.app[CATALOG].indexes()
    # By the names clients know them by (see `list_indexes`).
    names = {m.uid: topology.client_name(m.uid) for m in known}
    metas = [m for m in known if (name := names[m.uid]) is not None and auth.allows_index(name)]
    body, degraded = await instance_stats(cluster, metas, internal=internal)
    renamed = {names[uid] or uid: stats for uid, stats in body["indexes"].items()}
    body["indexes"] = dict(sorted(renamed.items()))
    body = human_sizes(body) if human else body
    return json_response(body, headers=enforce_policy(cluster, degraded))
