"""Instance-wide routes: health, version, global stats, dumps and snapshots (accepted as
tasks, no file written), experimental features, and Meilisearch's own "feature not
enabled" answers for the features the devnode deliberately leaves out."""

from __future__ import annotations

from typing import Any, NoReturn

from aiohttp import web

from ..auth import AUTH
from ..engine.validation import check_bool, check_object, unknown_field
from ..errors import MeiliError
from ..http import json_response, read_json
from ..node import EXPERIMENTAL_FEATURES, NODE_KEY
from ..sizes import render_bytes
from ..timeutil import now, rfc3339
from .indexes import index_stats, stats_options

routes = web.RouteTableDef()

PKG_VERSION = "1.50.0"


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return json_response({"status": "available"})


@routes.get("/version")
async def version(request: web.Request) -> web.Response:
    return json_response(
        {"commitSha": "miroir-devnode", "commitDate": "unknown", "pkgVersion": PKG_VERSION}
    )


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    human, internal = stats_options(request.query)
    allowed = request[AUTH].allows_index
    per_index = {
        uid: index_stats(node, entry, human=human, internal=internal)
        for uid, entry in sorted(node.entries.items())
        if allowed(uid)
    }
    size = node.storage.size_bytes()
    last = node.queue.last_finished_at
    return json_response(
        {
            "databaseSize": render_bytes(size, human),
            "usedDatabaseSize": render_bytes(size, human),
            "lastUpdate": None if last is None else rfc3339(last),
            "indexes": per_index,
        }
    )


@routes.post("/dumps")
async def create_dump(request: web.Request) -> web.Response:
    moment = now()
    dump_uid = moment.strftime("%Y%m%d-%H%M%S") + f"{moment.microsecond // 1000:03d}"
    task = request.app[NODE_KEY].queue.enqueue("dumpCreation", None, {"dumpUid": dump_uid})
    return json_response(task.summary(), 202)


@routes.post("/snapshots")
async def create_snapshot(request: web.Request) -> web.Response:
    task = request.app[NODE_KEY].queue.enqueue("snapshotCreation", None, None)
    return json_response(task.summary(), 202)


@routes.get("/experimental-features")
async def get_features(request: web.Request) -> web.Response:
    return json_response(request.app[NODE_KEY].features)


@routes.patch("/experimental-features")
async def patch_features(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    body = check_object("bad_request", "", await read_json(request))
    for name, value in body.items():
        if name not in EXPERIMENTAL_FEATURES:
            raise unknown_field("", name, list(EXPERIMENTAL_FEATURES))
        if value is not None:
            check_bool("bad_request", f".{name}", value)
    node.set_features({k: v for k, v in body.items() if v is not None})
    return json_response(node.features)


_DISCUSSIONS = "https://github.com/orgs/meilisearch/discussions/"
# feature -> (the feature's name in Meilisearch's message, its discussion)
_FLAGS: dict[str, tuple[str, str]] = {
    "metrics": ("metrics", "https://github.com/meilisearch/product/discussions/625"),
    "logs": ("logs route", _DISCUSSIONS + "721"),
    "network": ("network", _DISCUSSIONS + "805"),
    "chats": ("chat completions", _DISCUSSIONS + "835"),
    "dynamic-search-rules": ("dynamic search rules", _DISCUSSIONS + "884"),
    "render-template": ("render_route", _DISCUSSIONS + "888"),
}
_FIXED_ACTIONS = {
    "metrics": "Getting metrics",
    "logs": "Modifying logs through the `/logs/*` routes",
    "network": "Using the /network route",
    "dynamic-search-rules": "Using the `/dynamic-search-rules` routes",
    "render-template": "calling the /render-template route",
}


def _chats_action(method: str, path: str) -> str:
    """What Meilisearch says the caller was doing, per chats route."""
    depth = len(path.strip("/").split("/"))
    if path.endswith("/chat/completions"):
        return "using the /chats chat completions route"
    if path.endswith("/settings"):
        return "using the /chats/settings route"
    if depth == 1:
        return "listing the chats"
    return "deleting a chat" if method == "DELETE" else "displaying a chat"


def feature_disabled(feature: str, method: str = "GET", path: str = "") -> NoReturn:
    if feature == "export":
        raise MeiliError(
            "feature_not_enabled",
            "Using the /export route is not supported by the Miroir development node.",
        )
    action = _chats_action(method, path) if feature == "chats" else _FIXED_ACTIONS[feature]
    name, link = _FLAGS[feature]
    raise MeiliError(
        "feature_not_enabled",
        f"{action} requires enabling the `{name}` experimental feature. See {link}",
    )


def _disabled_route(feature: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        feature_disabled(feature, request.method, request.path)

    return handler


for _path, _feature in (
    ("/metrics", "metrics"),
    ("/logs/{tail:.*}", "logs"),
    ("/network", "network"),
    ("/chats{tail:.*}", "chats"),
    ("/dynamic-search-rules{tail:.*}", "dynamic-search-rules"),
    ("/export", "export"),
    ("/render-template", "render-template"),
):
    routes.route("*", _path)(_disabled_route(_feature))
