"""Atomic aliases (ARCHITECTURE §6): a name that every client route accepts in place of the
index it names.

Aliases live in the versioned topology, so a flip is one epoch: a request resolves a name
once, with the layout it started with, and a flip never tears it. A flip answers once every
live pod routes with it, so the next request anywhere sees the new target. Authorization
uses the name the client sent: a key scoped to an alias keeps working across flips.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from miroir_proxy.core.changes import Change, RemoveAlias, SetAlias, alias_not_found, apply
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import AliasFlip, Topology
from miroir_proxy.dispatch.catalog import index_not_found
from miroir_proxy.operations.engine import utc_now
from miroir_proxy.operations.epochs import NotAcknowledged

from ..appkeys import CATALOG, CLUSTER, CONFIG, EPOCHS
from ..responses import json_response, read_json
from .admin import require_admin

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

# Meilisearch's rule for an index uid, which an alias stands for.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,400}")
_INDEX_KEYS = ("index_uid", "uid")


# The index name the client sent, where `resolve_request` changed it: tenant-token rules
# and answers are about that name.
SENT_INDEX = web.RequestKey("sent_index", str)


def resolve(topology: Topology, name: str) -> str:
    return topology.aliases.get(name, name)


def concrete_index(topology: Topology, name: str) -> str:
    """The index on the nodes that `name` (an alias, or an index's name) means now."""
    return topology.concrete(topology.aliases.get(name, name))


def resolve_request(request: web.Request) -> None:
    """Point an index route's uid at the alias's target, and a resharded index's name at
    the concrete index it means now, once per request."""
    topology = request.app[CLUSTER].topology
    aliases, names = topology.aliases, topology.names
    renamed = names or topology.reshards or topology.retired
    if not (aliases or renamed) or not request.path.startswith("/indexes/"):
        return
    info = request.match_info
    for key in _INDEX_KEYS:
        name = info.get(key)
        if name is not None:
            concrete = names.get(aliases.get(name, name), aliases.get(name, name))
            if concrete != name:
                info[key] = concrete
                request[SENT_INDEX] = name
            elif topology.client_name(name) != name:
                # The hidden uid of a resharded index, or of a reshard's shadow.
                raise index_not_found(name)
            return


def _check_name(name: object, field: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise MiroirError(
            "invalid_index_uid",
            f"`{name}` is not a valid {field}. It can be an integer or a string containing "
            "only alphanumeric characters, hyphens (-) and underscores (_).",
        )
    return name


def _view(topology: Topology, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "target": topology.aliases[name],
        "history": [_flip(f) for f in topology.alias_history if f.alias == name],
    }


def _flip(flip: AliasFlip) -> dict[str, Any]:
    return {"previous": flip.previous, "target": flip.target, "at": flip.at}


async def publish_everywhere(request: web.Request, change: Change) -> Topology:
    """Publish a change of what names mean and wait until every live pod routes with it,
    so the answer never precedes it on another pod."""
    epochs = request.app[EPOCHS]
    topology = await epochs.publish(change)
    timeout_s = request.app[CONFIG].operations.ack_timeout_ms / 1000
    try:
        await epochs.wait_acknowledged(topology.epoch, timeout_s)
    except NotAcknowledged as e:  # published: the laggards follow at their next poll
        log.warning("%s: %s", change, e)
    return topology


async def _set(request: web.Request, name: str, target: object, *, new: bool) -> Topology:
    require_admin(request)
    _check_name(name, "alias name")
    target = _check_name(target, "alias target")
    catalog = request.app[CATALOG]
    topology = request.app[CLUSTER].topology
    if await catalog.get(name) is not None or name in topology.names:
        raise MiroirError(
            "miroir_alias_conflict",
            f"`{name}` is an index: an alias and an index may not share a name.",
        )
    if new and name in topology.aliases:
        raise MiroirError("miroir_alias_conflict", f"Alias `{name}` already exists.")
    concrete = topology.concrete(target)  # a resharded index lives under a hidden uid
    if await catalog.get(concrete) is None or topology.client_name(concrete) != target:
        raise index_not_found(target)
    change = SetAlias(name, target, utc_now())
    apply(topology, change)  # refuses an alias of an alias
    return await publish_everywhere(request, change)


@routes.get("/_miroir/aliases")
async def list_aliases(request: web.Request) -> web.Response:
    require_admin(request)
    topology = request.app[CLUSTER].topology
    results = [_view(topology, name) for name in sorted(topology.aliases)]
    return json_response({"results": results})


@routes.post("/_miroir/aliases")
async def create_alias(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) != {"name", "target"}:
        raise MiroirError("bad_request", "The body must be a JSON object with `name` and `target`.")
    name = _check_name(body["name"], "alias name")
    topology = await _set(request, name, body["target"], new=True)
    return json_response(_view(topology, name), status=201)


@routes.get("/_miroir/aliases/{name}")
async def get_alias(request: web.Request) -> web.Response:
    require_admin(request)
    topology = request.app[CLUSTER].topology
    name = request.match_info["name"]
    if name not in topology.aliases:
        raise alias_not_found(name)
    return json_response(_view(topology, name))


@routes.put("/_miroir/aliases/{name}")
async def flip_alias(request: web.Request) -> web.Response:
    """Create the alias or point it at another index, atomically for every pod."""
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) != {"target"}:
        raise MiroirError("bad_request", "The body must be a JSON object with `target`.")
    name = request.match_info["name"]
    topology = await _set(request, name, body["target"], new=False)
    return json_response(_view(topology, name))


@routes.delete("/_miroir/aliases/{name}")
async def delete_alias(request: web.Request) -> web.Response:
    require_admin(request)
    name = request.match_info["name"]
    topology = request.app[CLUSTER].topology
    if name not in topology.aliases:
        raise alias_not_found(name)
    await publish_everywhere(request, RemoveAlias(name, utc_now()))
    return json_response({"name": name, "target": None})
