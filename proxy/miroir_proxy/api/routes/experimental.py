"""Routes of Meilisearch features Miroir does not offer, refused as a fresh node refuses them.

A fresh Meilisearch answers these routes with `400 feature_not_enabled` until an
experimental flag is set (network, chats, dynamic search rules, the template renderer,
editing documents by function). Miroir does not implement them across shards, so it keeps
that answer whatever the flags say: forwarding to one node would expose that node's own,
partial state (its network, its chat workspaces) or edit one node's documents only.
The messages are Meilisearch's own: "<action> requires enabling the `<feature>`
experimental feature. See <discussion>".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from miroir_proxy.core.errors import MiroirError

routes = web.RouteTableDef()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# feature -> (name in the message, discussion link)
_FEATURES = {
    "network": ("network", "https://github.com/orgs/meilisearch/discussions/805"),
    "chats": ("chat completions", "https://github.com/orgs/meilisearch/discussions/835"),
    "rules": ("dynamic search rules", "https://github.com/orgs/meilisearch/discussions/884"),
    "render": ("render_route", "https://github.com/orgs/meilisearch/discussions/888"),
    "edit": ("edit documents by function", "https://github.com/orgs/meilisearch/discussions/762"),
}

_RULES = "Using the `/dynamic-search-rules` routes"
_CHAT_SETTINGS = "using the /chats/settings route"
# (methods, path, feature, the action Meilisearch names in its message)
REFUSED: tuple[tuple[str, str, str, str], ...] = (
    ("GET PATCH", "/network", "network", "Using the /network route"),
    ("GET", "/chats", "chats", "listing the chats"),
    ("GET", "/chats/{workspace}", "chats", "displaying a chat"),
    ("DELETE", "/chats/{workspace}", "chats", "deleting a chat"),
    ("GET PATCH DELETE", "/chats/{workspace}/settings", "chats", _CHAT_SETTINGS),
    (
        "POST",
        "/chats/{workspace}/chat/completions",
        "chats",
        "using the /chats chat completions route",
    ),
    ("POST", "/dynamic-search-rules", "rules", _RULES),
    ("GET PATCH DELETE", "/dynamic-search-rules/{rule}", "rules", _RULES),
    ("POST", "/render-template", "render", "calling the /render-template route"),
    ("POST", "/indexes/{index_uid}/documents/edit", "edit", "Using the documents edit route"),
)


def not_enabled_message(feature: str, action: str) -> str:
    name, link = _FEATURES[feature]
    return f"{action} requires enabling the `{name}` experimental feature. See {link}"


def _refuse(message: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise MiroirError("feature_not_enabled", message)

    return handler


for _methods, _path, _feature, _action in REFUSED:
    for _method in _methods.split():
        routes.route(_method, _path)(_refuse(not_enabled_message(_feature, _action)))
