"""Settings routes: `/indexes/{uid}/settings` and every subroute, on every node.

Updates are proposed to every node, verified and committed or rolled back by
`operations.settingsync` (README "Settings updates"): no index is left with settings on
only part of the fleet. `_miroir_shard`
stays in every node's `filterableAttributes` (re-added to any client update or reset of
them) and in any `displayedAttributes` list but `["*"]` (the search merge orders ties by
it), and is stripped from every answer. An update on a missing index creates it first,
as Meilisearch does; if the very first node then refuses the update, that creation is
undone too. Task details are the settings the client submitted, reported as Meilisearch
reports them: the set-valued settings sorted and without repeats.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch.broadcast import NodeRefused, broadcast, read_any
from miroir_proxy.dispatch.catalog import (
    NODE_FILTERABLE,
    check_searchable,
    visible,
    with_shard_displayed,
    with_shard_field,
)
from miroir_proxy.dispatch.catalog import node_settings as node_update

from ..appkeys import CATALOG, CLUSTER, SETTINGS_SYNC, TASKS
from ..responses import json_response, read_json

routes = web.RouteTableDef()

FILTERABLE = "filterableAttributes"
DISPLAYED = "displayedAttributes"
# Every setting, in `GET /settings` order, then the two that listing leaves out. Each has
# the subroute of its name in kebab case; the object-valued ones are updated with PATCH.
_SETTING_KEYS = (  # noqa: SIM905 - one line per key would be 22 lines
    "displayedAttributes searchableAttributes filterableAttributes sortableAttributes "
    "distinctAttribute rankingRules stopWords separatorTokens nonSeparatorTokens dictionary "
    "synonyms typoTolerance faceting pagination proximityPrecision searchCutoffMs "
    "localizedAttributes facetSearch prefixSearch embedders chat foreignKeys"
).split()
_PATCHED = frozenset({"typoTolerance", "faceting", "pagination", "embedders", "chat"})


def _kebab(key: str) -> str:
    return re.sub("([A-Z])", lambda m: "-" + m.group(1).lower(), key)


# subroute -> (settings key, update verb)
SUBROUTES: dict[str, tuple[str, str]] = {
    _kebab(key): (key, "PATCH" if key in _PATCHED else "PUT") for key in _SETTING_KEYS
}
# What `GET /settings` lists, hence what a reset of everything resets.
ALL_KEYS = tuple(_SETTING_KEYS[:-2])


# Settings Meilisearch holds as ordered sets (and `synonyms` as an ordered map).
_SETS = frozenset(
    {"sortableAttributes", "stopWords", "separatorTokens", "nonSeparatorTokens", "dictionary"}
)


def task_details(update: dict[str, Any]) -> dict[str, Any]:
    """A settings update as a node's task details show it: set-valued settings sorted and
    without repeats, synonyms ordered by word; anything else as submitted."""
    details = dict(update)
    for key, value in update.items():
        if key in _SETS and isinstance(value, list) and all(isinstance(v, str) for v in value):
            details[key] = sorted(set(value))
        elif key == "synonyms" and isinstance(value, dict):
            details[key] = dict(sorted(value.items()))
    return details


async def apply_settings(
    request: web.Request,
    method: str,
    path: str,
    body: Any,
    details: dict[str, Any],
) -> web.Response:
    """Propose one settings write to every node (`operations.settingsync`); the task
    finishes once it is verified on every node or rolled back."""
    uid = request.match_info["index_uid"]
    catalog = request.app[CATALOG]
    created = await catalog.get(uid) is None
    await catalog.ensure(uid)
    try:
        record = await request.app[SETTINGS_SYNC].apply(uid, method, path, body, details)
    except (NodeRefused, MiroirError):
        if created:
            await broadcast(request.app[CLUSTER], "DELETE", f"/indexes/{uid}")
            await catalog.forget(uid)
        raise
    cluster = request.app[CLUSTER]
    for other, _ in cluster.topology.also_written(uid):
        # An index being resharded: its other copy follows (the reshard aligns the two
        # again just before its flip, in case this missed a node).
        other_path = path.replace(f"/indexes/{uid}/", f"/indexes/{other}/", 1)
        await broadcast(cluster, method, other_path, json_body=body)
    catalog.invalidate(uid, pending_task=record.uid)
    return json_response(request.app[TASKS].summary(record), status=202)


def _settings_path(request: web.Request) -> str:
    return f"/indexes/{request.match_info['index_uid']}/settings"


@routes.get("/indexes/{index_uid}/settings")
async def get_settings(request: web.Request) -> web.Response:
    settings = await request.app[CATALOG].settings(request.match_info["index_uid"])
    return json_response(visible(settings))


@routes.patch("/indexes/{index_uid}/settings")
async def update_settings(request: web.Request) -> web.Response:
    body = await read_json(request)
    path = _settings_path(request)
    if not isinstance(body, dict):
        raise NodeRefused(await read_any(request.app[CLUSTER], "PATCH", path, json_body=body))
    return await apply_settings(request, "PATCH", path, node_update(body), task_details(body))


@routes.delete("/indexes/{index_uid}/settings")
async def reset_settings(request: web.Request) -> web.Response:
    reset = dict.fromkeys(ALL_KEYS)
    path = _settings_path(request)
    return await apply_settings(request, "PATCH", path, node_update(reset), reset)


def _subroute_handlers(name: str, key: str, verb: str) -> None:
    async def get_one(request: web.Request) -> web.Response:
        uid = request.match_info["index_uid"]
        settings = await request.app[CATALOG].settings(uid)
        if key in settings:
            return json_response(visible(settings)[key])
        response = await read_any(request.app[CLUSTER], "GET", f"{_settings_path(request)}/{name}")
        if not response.ok:
            raise NodeRefused(response)
        return json_response(response.json())

    async def update_one(request: web.Request) -> web.Response:
        value = await read_json(request, allow_empty=True)
        if value is None and (await request.read()).strip():
            # The JSON body `null` (what SDKs send to reset one setting) resets it.
            return await reset_one(request)
        path = f"{_settings_path(request)}/{name}"
        if key == "searchableAttributes":
            check_searchable(value)
        node_value = (
            with_shard_field(value) if key == FILTERABLE and isinstance(value, list) else value
        )
        if key == DISPLAYED:
            node_value = with_shard_displayed(value)
        return await apply_settings(request, verb, path, node_value, task_details({key: value}))

    async def reset_one(request: web.Request) -> web.Response:
        path = f"{_settings_path(request)}/{name}"
        if key == FILTERABLE:
            return await apply_settings(request, "PUT", path, list(NODE_FILTERABLE), {key: None})
        return await apply_settings(request, "DELETE", path, None, {key: None})

    template = f"/indexes/{{index_uid}}/settings/{name}"
    routes.get(template)(get_one)
    routes.route(verb, template)(update_one)
    routes.delete(template)(reset_one)


for _name, (_key, _verb) in SUBROUTES.items():
    _subroute_handlers(_name, _key, _verb)
