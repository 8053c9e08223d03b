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

_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/indexes"): "indexes.get",
    ("POST", "/indexes"): "indexes.create",
    ("GET", "/indexes/{}"): "indexes.get",
    ("PATCH", "/indexes/{}"): "indexes.update",
    ("DELETE", "/indexes/{}"): "indexes.delete",
    ("GET", "/indexes/{}/stats"): "stats.get",
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
    ("POST", "/multi-search"): "search",
    ("GET", "/tasks"): "tasks.get",
    ("GET", "/tasks/{}"): "tasks.get",
    ("POST", "/tasks/cancel"): "tasks.cancel",
    ("DELETE", "/tasks"): "tasks.delete",
    ("GET", "/batches"): "tasks.get",
    ("GET", "/batches/{}"): "tasks.get",
    ("GET", "/keys"): "keys.get",
    ("POST", "/keys"): "keys.create",
    ("GET", "/keys/{}"): "keys.get",
    ("PATCH", "/keys/{}"): "keys.update",
    ("DELETE", "/keys/{}"): "keys.delete",
    ("GET", "/stats"): "stats.get",
    ("GET", "/version"): "version",
    ("POST", "/dumps"): "dumps.create",
    ("POST", "/snapshots"): "snapshots.create",
    ("GET", "/experimental-features"): "experimental.get",
    ("PATCH", "/experimental-features"): "experimental.update",
    ("GET", "/webhooks"): "webhooks.get",
    ("POST", "/webhooks"): "webhooks.create",
    ("GET", "/webhooks/{}"): "webhooks.get",
    ("PATCH", "/webhooks/{}"): "webhooks.update",
    ("DELETE", "/webhooks/{}"): "webhooks.delete",
}
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


@lru_cache(maxsize=512)
def required_action(method: str, canonical: str) -> str:
    """The action a route needs; `PUBLIC` for Miroir's own routes (admin checks its key)."""
    if canonical.startswith("/_miroir/"):
        return PUBLIC
    method = "GET" if method == "HEAD" else method
    template = _PLACEHOLDER.sub("{}", canonical).rstrip("/") or "/"
    found = _ROUTES.get((method, template))
    if found is not None:
        return found
    if template.startswith("/indexes/{}/settings"):
        return "settings.get" if method == "GET" else "settings.update"
    return MASTER_ONLY


def index_of(path: str) -> str | None:
    if not path.startswith("/indexes/"):
        return None
    return path.split("/", 3)[2] or None


@dataclass(frozen=True, slots=True)
class AuthContext:
    """What a request may touch; handlers filter index lists and searches with it."""

    is_master: bool = True
    key_indexes: tuple[str, ...] = ("*",)
    search_rules: SearchRules | None = None
    can_create_indexes: bool = True

    def allows_index(self, uid: str) -> bool:
        return patterns_allow(self.key_indexes, uid) and (
            self.search_rules is None or self.search_rules.allows(uid)
        )

    def allows_index_creation(self, uid: str) -> bool:
        return self.can_create_indexes and self.allows_index(uid)

    def tenant_filter(self, uid: str) -> Any:
        """The tenant token's filter for `uid` (to AND into the search), else None."""
        if self.search_rules is None:
            return None
        return self.search_rules.filter_for(uid)


OPEN = AuthContext()
AUTH = web.RequestKey("auth", AuthContext)


def invalid_key(message: str = "The provided API key is invalid.") -> MiroirError:
    return MiroirError("invalid_api_key", message)


def missing_header() -> MiroirError:
    return MiroirError(
        "missing_authorization_header",
        "The Authorization header is missing. It must use the bearer authorization method.",
    )


def missing_master_key() -> MiroirError:
    return MiroirError(
        "missing_master_key",
        "Meilisearch is running without a master key. To access this API endpoint, you must "
        "have set a master key at launch.",
    )


def _quoted(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


class KeyLookup(Protocol):
    async def by_value(self, value: str) -> ApiKey | None: ...

    async def by_uid(self, uid: str) -> ApiKey | None: ...


async def authenticate(
    keys: KeyLookup, master: str | None, action: str, index: str | None, header: str | None
) -> AuthContext:
    if master is None:
        if action in KEYS_ACTIONS:
            raise missing_master_key()
        return OPEN
    if header is None or not header.startswith("Bearer "):
        raise missing_header()
    token = header.removeprefix("Bearer ").strip()
    if hmac.compare_digest(token.encode(), master.encode()):
        return OPEN
    if action == MASTER_ONLY:
        raise invalid_key()
    rules: SearchRules | None = None
    now_s = time.time()
    if action in TENANT_TOKEN_ACTIONS and looks_like_token(token):
        try:
            tenant = _decode(token)
            key = await keys.by_uid(tenant.api_key_uid)
            if key is None:
                raise invalid_key()
            tenant.verify(key.key, int(now_s))
        except TokenError as e:
            raise invalid_key(e.message) from e
        rules = tenant.search_rules
    else:
        found = await keys.by_value(token)
        if found is None:
            raise invalid_key()
        key = found
    if index is not None:
        _check_index(key, rules, index)
    if not key.permits(action, now_s):
        raise invalid_key()
    return AuthContext(
        is_master=False,
        key_indexes=key.indexes,
        search_rules=rules,
        can_create_indexes=key.permits("indexes.create", now_s),
    )


# SDKs reuse one token for many searches; decoding is pure, verification is not cached.
_decode = lru_cache(maxsize=4096)(decode)


def _check_index(key: ApiKey, rules: SearchRules | None, index: str) -> None:
    if rules is not None and not rules.allows(index):
        raise invalid_key(
            f"The provided tenant token cannot acces the index `{index}`, allowed indexes "
            f"are {_quoted(rules.patterns())}."
        )
    if not patterns_allow(key.indexes, index):
        if rules is not None:
            raise invalid_key(
                f"The API key used to generate this tenant token cannot acces the index `{index}`."
            )
        raise invalid_key(
            f"The API key cannot acces the index `{index}`, authorized indexes are "
            f"{_quoted(sorted(key.indexes))}."
        )


async def authorize(request: web.Request) -> None:
    """Sets `request[AUTH]` or raises `MiroirError`; runs inside `observe`."""
    resource = request.match_info.route.resource
    if resource is None:
        return
    action = required_action(request.method, resource.canonical)
    if action == PUBLIC:
        request[AUTH] = OPEN
    else:
        request[AUTH] = await authenticate(
            request.app[KEYS],
            request.app[CONFIG].master_key,
            action,
            index_of(request.path),
            request.headers.get("Authorization"),
        )
