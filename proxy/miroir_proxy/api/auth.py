"""Client authentication in front of the nodes: master key, API keys and tenant tokens.

The proxy checks every request itself, then calls nodes with the node master key, so a
node never sees a client's key. API keys live on the nodes (created there identically
through `/keys`); `dispatch.keyring.KeyCache` keeps a copy read from one node. Routes map
to Meilisearch's actions by their template with placeholder names erased, so other route
modules may name them freely; the index a route touches is the path segment after
`/indexes/`. Admin routes (`/_miroir/`) check the admin key themselves.
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.tokens import (
    KEYS_ACTIONS,
    SearchRules,
    TokenError,
    decode,
    looks_like_token,
    patterns_allow,
)
from miroir_proxy.dispatch.keyring import ApiKey

from .appkeys import CONFIG, KEYS

PUBLIC = "public"
MASTER_ONLY = "master"
TENANT_TOKEN_ACTIONS = frozenset({"search", "chatCompletions"})

# Meilisearch's action for each route Miroir serves, listed by action; `{}` stands for any
# path parameter. Settings routes are handled apart; any other route needs the master key.
_ROUTES_BY_ACTION: dict[str, tuple[str, ...]] = {
    PUBLIC: ("GET /health",),
    "search": (
        "GET /indexes/{}/search POST /indexes/{}/search POST /indexes/{}/facet-search "
        "POST /multi-search",
    ),
    "indexes.get": ("GET /indexes GET /indexes/{}",),
    "indexes.create": ("POST /indexes",),
    "indexes.update": ("PATCH /indexes/{}",),
    "indexes.delete": ("DELETE /indexes/{}",),
    "indexes.swap": ("POST /swap-indexes",),
    "stats.get": ("GET /indexes/{}/stats GET /stats",),
    "documents.get": (
        "GET /indexes/{}/documents POST /indexes/{}/documents/fetch GET /indexes/{}/documents/{}",
    ),
    "documents.add": ("POST /indexes/{}/documents PUT /indexes/{}/documents",),
    "documents.delete": (
        "DELETE /indexes/{}/documents DELETE /indexes/{}/documents/{} "
        "POST /indexes/{}/documents/delete-batch POST /indexes/{}/documents/delete",
    ),
    "documents.*": ("POST /indexes/{}/documents/edit",),
    "tasks.get": ("GET /tasks GET /tasks/{} GET /batches GET /batches/{}",),
    "tasks.cancel": ("POST /tasks/cancel",),
    "tasks.delete": ("DELETE /tasks",),
    "keys.get": ("GET /keys GET /keys/{}",),
    "keys.create": ("POST /keys",),
    "keys.update": ("PATCH /keys/{}",),
    "keys.delete": ("DELETE /keys/{}",),
    "version": ("GET /version",),
    "dumps.create": ("POST /dumps",),
    "snapshots.create": ("POST /snapshots",),
    "experimental.get": ("GET /experimental-features",),
    "experimental.update": ("PATCH /experimental-features",),
    "webhooks.get": ("GET /webhooks GET /webhooks/{}",),
    "webhooks.create": ("POST /webhooks",),
    "webhooks.update": ("PATCH /webhooks/{}",),
    "webhooks.delete": ("DELETE /webhooks/{}",),
    # Refused with `feature_not_enabled` (routes/experimental.py), after the key check.
    "network.get": ("GET /network",),
    "network.update": ("PATCH /network",),
    "chats.get": ("GET /chats GET /chats/{}",),
    "chats.delete": ("DELETE /chats/{}",),
    "chatsSettings.get": ("GET /chats/{}/settings",),
    "chatsSettings.update": ("PATCH /chats/{}/settings DELETE /chats/{}/settings",),
    "chatCompletions": ("POST /chats/{}/chat/completions",),
    "dynamicSearchRules.get": ("POST /dynamic-search-rules GET /dynamic-search-rules/{}",),
    "dynamicSearchRules.update": ("PATCH /dynamic-search-rules/{}",),
    "dynamicSearchRules.delete": ("DELETE /dynamic-search-rules/{}",),
}
_ACTIONS: dict[tuple[str, str], str] = {}
for _action, _listed in _ROUTES_BY_ACTION.items():
    _words = " ".join(_listed).split()
    _ACTIONS.update(
        ((method, path), _action) for method, path in zip(_words[::2], _words[1::2], strict=True)
    )
_PARAMETER = re.compile(r"\{[^}]*\}")
_SETTINGS = "/indexes/{}/settings"


@lru_cache(maxsize=512)
def required_action(method: str, canonical: str) -> str:
    """The action a route needs; `PUBLIC` for Miroir's own routes (admin checks its key)."""
    if canonical.startswith("/_miroir/"):
        return PUBLIC
    verb = "GET" if method == "HEAD" else method
    route = _PARAMETER.sub("{}", canonical).rstrip("/") or "/"
    if route == _SETTINGS or route.startswith(_SETTINGS + "/"):
        return "settings.get" if verb == "GET" else "settings.update"
    return _ACTIONS.get((verb, route), MASTER_ONLY)


def index_of(path: str) -> str | None:
    """The index uid a path names (`/indexes/{uid}/...`), if any."""
    parts = path.split("/")
    return parts[2] or None if len(parts) > 2 and parts[1] == "indexes" else None


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What a request may touch; handlers filter index lists and searches with it.

    The default is the master key's: every index, no tenant rules.
    """

    is_master: bool = True
    key_indexes: tuple[str, ...] = ("*",)
    search_rules: SearchRules | None = None
    can_create_indexes: bool = True

    def allows_index(self, uid: str) -> bool:
        """The key's `indexes` and, for a tenant token, its search rules both allow `uid`."""
        by_rules = self.search_rules.allows(uid) if self.search_rules is not None else True
        return by_rules and patterns_allow(self.key_indexes, uid)

    def allows_index_creation(self, uid: str) -> bool:
        return self.allows_index(uid) if self.can_create_indexes else False

    def tenant_filter(self, uid: str) -> Any:
        """The tenant token's filter for `uid` (to AND into the search), else None."""
        rules = self.search_rules
        return None if rules is None else rules.filter_for(uid)


OPEN = AuthContext()
AUTH = web.RequestKey("auth", AuthContext)

_INVALID = "The provided API key is invalid."
_NO_HEADER = "The Authorization header is missing. It must use the bearer authorization method."
_NO_MASTER = (
    "Meilisearch is running without a master key. To access this API endpoint, you must have "
    "set a master key at launch."
)


def invalid_key(message: str = _INVALID) -> MiroirError:
    return MiroirError("invalid_api_key", message)


def missing_header() -> MiroirError:
    return MiroirError("missing_authorization_header", _NO_HEADER)


def missing_master_key() -> MiroirError:
    return MiroirError("missing_master_key", _NO_MASTER)


def _rust_list(items: list[str]) -> str:
    """How Rust's `{:?}` prints a list of strings (Meilisearch's messages use it)."""
    return "[{}]".format(", ".join(map('"{}"'.format, items)))


class KeyLookup(Protocol):
    async def by_value(self, value: str) -> ApiKey | None: ...

    async def by_uid(self, uid: str) -> ApiKey | None: ...


# SDKs reuse one token for many searches; decoding is pure, verification is not cached.
_decode = lru_cache(maxsize=4096)(decode)


async def _tenant_key(keys: KeyLookup, token: str, now_s: float) -> tuple[ApiKey, SearchRules]:
    """The API key that signed a tenant token, and the token's search rules."""
    try:
        tenant = _decode(token)
        signer = await keys.by_uid(tenant.api_key_uid)
        if signer is None:
            raise invalid_key()
        tenant.verify(signer.key, int(now_s))
    except TokenError as e:
        raise invalid_key(e.message) from e
    return signer, tenant.search_rules


async def authenticate(
    keys: KeyLookup, master: str | None, action: str, index: str | None, header: str | None
) -> AuthContext:
    """Meilisearch's rules: with no master key only `/keys` is closed; else the bearer token
    is the master key, an API key's value, or (search routes only) a tenant token."""
    if master is None:
        if action not in KEYS_ACTIONS:
            return OPEN
        raise missing_master_key()
    scheme, _, rest = (header or "").partition(" ")
    if header is None or scheme != "Bearer":
        raise missing_header()
    token = rest.strip()
    if hmac.compare_digest(token.encode(), master.encode()):
        return OPEN
    if action == MASTER_ONLY:
        raise invalid_key()
    now_s = time.time()
    rules: SearchRules | None = None
    if action in TENANT_TOKEN_ACTIONS and looks_like_token(token):
        key, rules = await _tenant_key(keys, token, now_s)
    else:
        by_value = await keys.by_value(token)
        if by_value is None:
            raise invalid_key()
        key = by_value
    if index is not None:
        _check_index(key, rules, index)
    if key.permits(action, now_s):
        return AuthContext(
            is_master=False,
            key_indexes=key.indexes,
            search_rules=rules,
            can_create_indexes=key.permits("indexes.create", now_s),
        )
    raise invalid_key()


def _check_index(key: ApiKey, rules: SearchRules | None, index: str) -> None:
    """Meilisearch's refusals (and their `acces` spelling) for an index out of reach."""
    by_key = patterns_allow(key.indexes, index)
    if rules is None:
        if not by_key:
            allowed = _rust_list(sorted(key.indexes))
            raise invalid_key(
                f"The API key cannot acces the index `{index}`, authorized indexes are {allowed}."
            )
        return
    if not rules.allows(index):
        allowed = _rust_list(rules.patterns())
        raise invalid_key(
            f"The provided tenant token cannot acces the index `{index}`, allowed indexes are "
            f"{allowed}."
        )
    if not by_key:
        raise invalid_key(
            f"The API key used to generate this tenant token cannot acces the index `{index}`."
        )


async def authorize(request: web.Request) -> None:
    """Sets `request[AUTH]` or raises `MiroirError`; runs inside `observe`."""
    resource = request.match_info.route.resource
    if resource is None:
        return
    action = required_action(request.method, resource.canonical)
    request[AUTH] = (
        OPEN
        if action == PUBLIC
        else await authenticate(
            request.app[KEYS],
            request.app[CONFIG].master_key,
            action,
            index_of(request.path),
            request.headers.get("Authorization"),
        )
    )
