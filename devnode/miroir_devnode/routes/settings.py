"""Settings routes: GET/PATCH/DELETE `/settings` and every subroute with its own update
verb (PUT for plain values, PATCH for the object settings). Every update or reset is a
`settingsUpdate` task whose details are the submitted settings (resets as null); it
creates the index when missing."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import MeiliError
from ..http import json_response, read_json
from ..node import NODE_KEY, check_index_uid
from ..settings import (
    CHAT_DISABLED,
    DEFAULTS,
    FOREIGN_KEYS_DISABLED,
    Settings,
    reset_all,
    validate_patch,
    validate_value,
)

routes = web.RouteTableDef()

# subroute -> (setting, update verb)
SUBROUTES: dict[str, tuple[str, str]] = {
    "displayed-attributes": ("displayedAttributes", "PUT"),
    "searchable-attributes": ("searchableAttributes", "PUT"),
    "filterable-attributes": ("filterableAttributes", "PUT"),
    "sortable-attributes": ("sortableAttributes", "PUT"),
    "distinct-attribute": ("distinctAttribute", "PUT"),
    "ranking-rules": ("rankingRules", "PUT"),
    "stop-words": ("stopWords", "PUT"),
    "separator-tokens": ("separatorTokens", "PUT"),
    "non-separator-tokens": ("nonSeparatorTokens", "PUT"),
    "dictionary": ("dictionary", "PUT"),
    "synonyms": ("synonyms", "PUT"),
    "typo-tolerance": ("typoTolerance", "PATCH"),
    "faceting": ("faceting", "PATCH"),
    "pagination": ("pagination", "PATCH"),
    "proximity-precision": ("proximityPrecision", "PUT"),
    "search-cutoff-ms": ("searchCutoffMs", "PUT"),
    "localized-attributes": ("localizedAttributes", "PUT"),
    "facet-search": ("facetSearch", "PUT"),
    "prefix-search": ("prefixSearch", "PUT"),
    "embedders": ("embedders", "PATCH"),
}
_DISABLED_SUBROUTES = {"chat": CHAT_DISABLED, "foreign-keys": FOREIGN_KEYS_DISABLED}
_BASE = "/indexes/{index_uid}/settings"


def _uid(request: web.Request) -> str:
    return check_index_uid(request.match_info["index_uid"])


def _enqueue(request: web.Request, uid: str, patch: Settings) -> web.Response:
    task = request.app[NODE_KEY].queue.enqueue(
        "settingsUpdate", uid, dict(patch), {"settings": patch}
    )
    return json_response(task.summary(), 202)


def _current(request: web.Request) -> Settings:
    settings: Settings = request.app[NODE_KEY].get_index(_uid(request)).settings
    return settings


@routes.get(_BASE)
async def get_settings(request: web.Request) -> web.Response:
    current = _current(request)
    return json_response({key: current[key] for key in DEFAULTS})


@routes.patch(_BASE)
async def update_settings(request: web.Request) -> web.Response:
    uid = _uid(request)
    return _enqueue(request, uid, validate_patch(await read_json(request)))


@routes.delete(_BASE)
async def reset_settings(request: web.Request) -> web.Response:
    return _enqueue(request, _uid(request), reset_all())


def _subroute_handlers(key: str) -> tuple[Any, Any, Any]:
    async def get(request: web.Request) -> web.Response:
        return json_response(_current(request)[key])

    async def update(request: web.Request) -> web.Response:
        uid = _uid(request)
        body = await read_json(request)
        return _enqueue(request, uid, {key: validate_value(key, body, "")})

    async def reset(request: web.Request) -> web.Response:
        return _enqueue(request, _uid(request), {key: None})

    return get, update, reset


for _sub, (_key, _verb) in SUBROUTES.items():
    _get, _update, _reset = _subroute_handlers(_key)
    routes.get(f"{_BASE}/{_sub}")(_get)
    routes.route(_verb, f"{_BASE}/{_sub}")(_update)
    routes.delete(f"{_BASE}/{_sub}")(_reset)


def _disabled(message: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        raise MeiliError("feature_not_enabled", message)

    return handler


for _sub, _message in _DISABLED_SUBROUTES.items():
    routes.route("*", f"{_BASE}/{_sub}")(_disabled(_message))
