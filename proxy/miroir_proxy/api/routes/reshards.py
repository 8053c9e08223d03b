"""Admin API of one index as Miroir sees it, and its online reshard (ARCHITECTURE §6).

`GET /_miroir/indexes/{uid}` shows the shard count and primary key (and a reshard in
progress); `POST /_miroir/indexes/{uid}/reshard {"shards"}` starts one (`operations.reshard`).
Both take the client's index name (or an alias of it), never the hidden uid a resharded
index lives under on the nodes.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import MAX_SHARDS, Topology
from miroir_proxy.dispatch.catalog import index_not_found
from miroir_proxy.operations.reshard import RESHARD, reshard_params
from miroir_proxy.state.store import IndexMeta

from ..appkeys import CATALOG, CLUSTER, CONFIG, OPERATIONS, STORE
from ..responses import json_response, read_json
from .admin import require_admin

routes = web.RouteTableDef()


async def _index(request: web.Request) -> tuple[str, IndexMeta, Topology]:
    """The client's name of the index the route names, its metadata, and the topology."""
    topology = request.app[CLUSTER].topology
    uid = request.match_info["index_uid"]
    name = topology.aliases.get(uid, uid)
    concrete = topology.concrete(name)
    meta = await request.app[CATALOG].get(concrete)
    if meta is None or topology.client_name(concrete) != name:
        raise index_not_found(uid)
    return name, meta, topology


@routes.get("/_miroir/indexes/{index_uid}")
async def get_index(request: web.Request) -> web.Response:
    require_admin(request)
    name, meta, topology = await _index(request)
    view: dict[str, Any] = {
        "uid": name,
        "shards": meta.shards,
        "primaryKey": meta.primary_key,
        "createdAt": meta.created_at,
        "reshard": None,
    }
    running = [
        r
        for r in await request.app[STORE].list_operations()
        if r.kind == RESHARD and r.params.get("index") == name and not r.finished
    ]
    reshard = topology.reshards.get(name)
    if running or reshard is not None:
        view["reshard"] = {
            "operation": running[0].id if running else None,
            "phase": running[0].phase if running else None,
            "fromShards": reshard.source_shards if reshard else meta.shards,
            "toShards": reshard.target_shards if reshard else running[0].params["shards"],
        }
    return json_response(view)


def _bad(message: str) -> MiroirError:
    return MiroirError("bad_request", message)


@routes.post("/_miroir/indexes/{index_uid}/reshard")
async def start_reshard(request: web.Request) -> web.Response:
    """Give the index a new shard count online: 202 with the operation that does it."""
    require_admin(request)
    body = await read_json(request)
    if not isinstance(body, dict) or "shards" not in body or set(body) - {"shards", "retainS"}:
        raise _bad("The body must be a JSON object with `shards` (and optionally `retainS`).")
    shards = body["shards"]
    if type(shards) is not int or not 1 <= shards <= MAX_SHARDS:
        raise _bad(f"`shards` must be an integer from 1 to {MAX_SHARDS}.")
    retain_s = body.get("retainS", request.app[CONFIG].operations.reshard_retain_s)
    if type(retain_s) not in (int, float) or retain_s < 0:
        raise _bad("`retainS` must be a number of seconds, 0 or more.")
    operations = request.app[OPERATIONS]
    await operations.ensure_idle()
    name, meta, topology = await _index(request)
    if name in topology.reshards:
        raise MiroirError(
            "miroir_operation_in_progress", f"Index `{name}` is being resharded already."
        )
    if meta.shards == shards:
        raise _bad(f"Index `{name}` has {shards} shards already.")
    if meta.primary_key is None:
        raise _bad(f"Index `{name}` has no primary key yet: there is nothing to reshard.")
    # The shadow's uid on the nodes: a valid index uid no client index has.
    target = f"{name[:360]}-reshard-{secrets.token_hex(6)}"
    if await request.app[CATALOG].get(target) is not None:
        raise MiroirError("miroir_operation_in_progress", "Try again.")
    record = await operations.start(RESHARD, reshard_params(name, shards, target, retain_s))
    return json_response(
        {"operation": record.id, "index": name, "shards": shards, "previousShards": meta.shards},
        status=202,
    )
