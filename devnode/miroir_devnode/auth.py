"""Authorization: which action each route needs, who may perform it, and the middleware.

Follows Meilisearch's `ActionPolicy`: without a master key everything is open except the
`/keys` routes; with one, the bearer token is the master key, an API key (by its value)
or — on search and chat routes only — a tenant token signed with an API key's value.
Index-scoped failures name the index ("The API key cannot acces the index …", sic) while
every other refusal is the generic "The provided API key is invalid.".
Routes are identified by their aiohttp template with parameter names erased, so the
route table here does not depend on how handlers name their placeholders; the index uid
itself is read from the `index_uid` match-info parameter.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import MeiliError
from .keys import KEYS_ACTIONS, ApiKey, KeyStore, patterns_allow
from .timeutil import now
from .tokens import NotATenantToken, SearchRules, TenantTokenError, decode

KEY_STORE = web.AppKey("key_store", KeyStore)

PUBLIC = "public"
MASTER_ONLY = "master"  # a route this table does not know: only the master key passes
TENANT_TOKEN_ACTIONS = frozenset({"search", "chatCompletions"})

# (method, template with "{}" placeholders) -> action.
_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/indexes"): "indexes.get",
    ("POST", "/indexes"): "indexes.create",
    ("GET", "/indexes/{}"): "indexes.get",
    ("PATCH", "/indexes/{}"): "indexes.update",
    ("DELETE", "/indexes/{}"): "indexes.delete",
    ("GET", "/indexes/{}/stats"): "stats.get",
    ("POST", "/indexes/{}/fields"): "fields.post",
    ("POST", "/indexes/{}/compact"): "indexes.compact",
    ("POST", "/swap-indexes"): "indexes.swap",
    ("GET", "/indexes/{}/documents"): "documents.get",
    ("POST", "/indexes/{}/documents"): "documents.add",
    ("PUT", "/indexes/{}/documents"): "documents.add",
    ("DELETE", "/indexes/{}/documents"): "documents.delete",
    ("POST", "/indexes/{}/documents/fetch"): "documents.get",
    ("GET", "/indexes/{}/documents/{}"): "documents.get",
    ("DELETE", "/indexes/{}/documents/{}"): "documents.delete",
    ("POST", "/indexes/{}/documents/delete-batch"): "documents.delete",
    ("POST", "/indexes/{}/documents/delete"): "documents.delete",
    ("POST", "/indexes/{}/documents/edit"): "documents.*",
    ("GET", "/indexes/{}/search"): "search",
    ("POST", "/indexes/{}/search"): "search",
    ("POST", "/indexes/{}/facet-search"): "search",
    ("GET", "/indexes/{}/similar"): "search",
    ("POST", "/indexes/{}/similar"): "search",
    ("POST", "/multi-search"): "search",
    ("GET", "/tasks"): "tasks.get",
    ("GET", "/tasks/{}"): "tasks.get",
    ("GET", "/tasks/{}/documents"): "tasks.get",
    ("POST", "/tasks/cancel"): "tasks.cancel",
    ("DELETE", "/tasks"): "tasks.delete",
    ("POST", "/tasks/compact"): "tasks.compact",
    ("GET", "/batches"): "tasks.get",
    ("GET", "/batches/{}"): "tasks.get",
    ("GET", "/keys"): "keys.get",
    ("POST", "/keys"): "keys.create",
    ("GET", "/keys/{}"): "keys.get",
    ("PATCH", "/keys/{}"): "keys.update",
    ("DELETE", "/keys/{}"): "keys.delete",
    ("GET", "/stats"): "stats.get",
    ("GET", "/version"): "version",
    ("GET", "/metrics"): "metrics.get",
    ("POST", "/dumps"): "dumps.create",
    ("POST", "/snapshots"): "snapshots.create",
    ("GET", "/experimental-features"): "experimental.get",
    ("PATCH", "/experimental-features"): "experimental.update",
    ("GET", "/network"): "network.get",
    ("PATCH", "/network"): "network.update",
    ("POST", "/export"): "export",
    ("GET", "/webhooks"): "webhooks.get",
    ("POST", "/webhooks"): "webhooks.create",
    ("GET", "/webhooks/{}"): "webhooks.get",
    ("PATCH", "/webhooks/{}"): "webhooks.update",
    ("DELETE", "/webhooks/{}"): "webhooks.delete",
    ("GET", "/chats"): "chats.get",
    ("GET", "/chats/{}"): "chats.get",
    ("DELETE", "/chats/{}"): "chats.delete",
    ("GET", "/chats/{}/settings"): "chatsSettings.get",
    ("PATCH", "/chats/{}/settings"): "chatsSettings.update",
    ("DELETE", "/chats/{}/settings"): "chatsSettings.update",
    ("POST", "/chats/{}/chat/completions"): "chatCompletions",
    ("POST", "/logs/stream"): "metrics.*",
    ("DELETE", "/logs/stream"): "metrics.*",
    ("POST", "/logs/stderr"): "metrics.*",
}
_BY_METHOD = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "update"}
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


@lru_cache(maxsize=1024)
def required_action(method: str, canonical: str) -> str:
    """The action a route needs, `PUBLIC`, or `MASTER_ONLY` for a route unknown here."""
    method = "GET" if method == "HEAD" else method
    template = _PLACEHOLDER.sub("{}", canonical).rstrip("/") or "/"
    found = _ROUTES.get((method, template))
    if found is not None:
        return found
    if template.startswith("/indexes/{}/settings"):
        return "settings.get" if method == "GET" else "settings.update"
    if template.startswith("/dynamic-search-rules"):
        return "dynamicSearchRules." + _BY_METHOD.get(method, "delete")
    return MASTER_ONLY


def _debug_list(items: list[str]) -> str:
    """A list as Rust's `{:?}` prints it, which Meilisearch puts in its messages."""
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What the request may touch; handlers filter index lists and searches with it."""

    is_master: bool = True  # the master key, or a node without one (everything open)
    key_indexes: tuple[str, ...] = ("*",)
    search_rules: SearchRules | None = None  # set for tenant tokens
    can_create_indexes: bool = True

    def allows_index(self, uid: str) -> bool:
        return patterns_allow(self.key_indexes, uid) and (
            self.search_rules is None or self.search_rules.allows(uid)
        )

    def allows_index_creation(self, uid: str) -> bool:
        """Whether a write may create a missing index (needs `indexes.create` too)."""
        return self.can_create_indexes and self.allows_index(uid)

    def tenant_filter(self, index_uid: str) -> Any:
        """The tenant token's filter for this index (to AND with the query's), else None."""
        if self.search_rules is None or not self.allows_index(index_uid):
            return None
        return self.search_rules.filter_for(index_uid)


OPEN = AuthContext()
# Where the middleware leaves the request's AuthContext: `request[AUTH]`.
AUTH = web.RequestKey("auth", AuthContext)


def _invalid(message: str = "The provided API key is invalid.") -> MeiliError:
    return MeiliError("invalid_api_key", message)


def _missing_header() -> MeiliError:
    return MeiliError(
        "missing_authorization_header",
        "The Authorization header is missing. It must use the bearer authorization method.",
    )


def bearer_token(header: str | None) -> str | None:
    """The token of `Bearer <token>` (case-sensitive scheme, as in Meilisearch)."""
    if header is None:
        return None
    # A header that is not visible ASCII reads as empty in Meilisearch (`to_str` fails).
    scheme, space, token = header.partition(" ") if header.isascii() else ("", "", "")
    if scheme != "Bearer":
        raise _missing_header()
    if not space:
        raise _invalid()
    return token


def authenticate(keys: KeyStore, action: str, index: str | None, header: str | None) -> AuthContext:
    token = bearer_token(header)
    master = keys.master_key
    if master is None:
        if action in KEYS_ACTIONS:
            raise MeiliError(
                "missing_master_key",
                "Meilisearch is running without a master key. To access this API endpoint, "
                "you must have set a master key at launch.",
            )
        return OPEN
    if token is None:
        raise _missing_header()
    if hmac.compare_digest(token.encode(), master.encode()):
        return OPEN
    if action == MASTER_ONLY:
        raise _invalid()
    key, rules = _resolve(keys, action, token)
    if index is not None:
        _check_index(key, rules, index)
    moment = now()
    if not key.permits(action, moment):
        raise _invalid()
    return AuthContext(
        is_master=False,
        key_indexes=key.indexes,
        search_rules=rules,
        can_create_indexes=key.permits("indexes.create", moment),
    )


def _resolve(keys: KeyStore, action: str, token: str) -> tuple[ApiKey, SearchRules | None]:
    """The key behind the token, and the tenant token's rules when it is one."""
    uid: str | None = None
    rules: SearchRules | None = None
    if action in TENANT_TOKEN_ACTIONS:
        try:
            tenant = decode(token)
        except NotATenantToken:
            pass
        except TenantTokenError as e:
            raise _invalid(e.message) from e
        else:
            try:
                tenant.verify(keys.key_value(tenant.api_key_uid))
                tenant.check_expiry(int(time.time()))
            except TenantTokenError as e:
                raise _invalid(e.message) from e
            uid, rules = tenant.api_key_uid, tenant.search_rules
    if uid is None:
        uid = keys.uid_for_value(token)
    key = None if uid is None else keys.get(uid)
    if key is None:
        raise _invalid()
    return key, rules


def _check_index(key: ApiKey, rules: SearchRules | None, index: str) -> None:
    if rules is not None and not rules.allows(index):
        raise _invalid(
            f"The provided tenant token cannot acces the index `{index}`, allowed indexes "
            f"are {_debug_list(rules.patterns())}."
        )
    if not patterns_allow(key.indexes, index):
        if rules is not None:
            raise _invalid(
                f"The API key used to generate this tenant token cannot acces the index `{index}`."
            )
        raise _invalid(
            f"The API key cannot acces the index `{index}`, authorized indexes are "
            f"{_debug_list(sorted(key.indexes))}."
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_auth_middleware(keys: KeyStore) -> Middleware:
    """Sets `request[AUTH]` (an `AuthContext`) or raises `MeiliError`; the error
    middleware must therefore run outside (before) this one."""

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is None:  # 404/405: let aiohttp answer
            return await handler(request)
        action = required_action(request.method, resource.canonical)
        request[AUTH] = (
            OPEN
            if action == PUBLIC
            else authenticate(
                keys,
                action,
                request.match_info.get("index_uid"),
                request.headers.get("Authorization"),
            )
        )
        return await handler(request)

    return auth_middleware
