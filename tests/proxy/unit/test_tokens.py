"""API key rules and tenant tokens: action wildcards, index patterns, JWT checks, and the
401/403 decisions of `authenticate` over an in-memory key list."""

from __future__ import annotations

import time

import pytest

from miroir_proxy.api.auth import MASTER_ONLY, PUBLIC, authenticate, index_of, required_action
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.tokens import (
    SearchRules,
    TokenError,
    decode,
    encode,
    granted_actions,
    looks_like_token,
    patterns_allow,
)
from miroir_proxy.dispatch.keyring import ApiKey

MASTER = "proxy-master-key"
UID = "76cf8b87-fd12-4688-ad34-260d930ca4f4"


def key(
    actions: list[str], indexes: tuple[str, ...] = ("*",), expires_at: float | None = None
) -> ApiKey:
    return ApiKey.from_node(
        {
            "uid": UID,
            "key": "a" * 64,
            "actions": actions,
            "indexes": list(indexes),
            "expiresAt": None
            if expires_at is None
            else time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(expires_at)),
        }
    )


class Keys:
    def __init__(self, *keys: ApiKey) -> None:
        self.keys = keys

    async def by_value(self, value: str) -> ApiKey | None:
        return next((k for k in self.keys if k.key == value.lower()), None)

    async def by_uid(self, uid: str) -> ApiKey | None:
        return next((k for k in self.keys if k.uid == uid), None)


def test_wildcards_expand_like_meilisearch() -> None:
    assert "documents.add" in granted_actions(["*"])
    assert "documents.*" in granted_actions(["*"])
    assert granted_actions(["documents.*"]) >= {"documents.add", "documents.get", "documents.*"}
    assert "search" not in granted_actions(["documents.*"])
    read = granted_actions(["*.get"])
    assert {"search", "indexes.get", "settings.get", "version"} <= read
    assert "keys.get" not in read and "documents.add" not in read


def test_index_patterns() -> None:
    assert patterns_allow(["*"], "movies")
    assert patterns_allow(["mov*"], "movies")
    assert not patterns_allow(["mov*"], "books")
    assert not patterns_allow(["movies"], "movies2")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_token_round_trip(alg: str) -> None:
    token = encode({"apiKeyUid": UID, "searchRules": ["movies"], "exp": None}, "secret", alg)
    assert looks_like_token(token)
    decoded = decode(token)
    decoded.verify("secret", int(time.time()))
    assert decoded.api_key_uid == UID
    with pytest.raises(TokenError, match="InvalidSignature"):
        decoded.verify("other", int(time.time()))


def test_expired_and_malformed_tokens() -> None:
    expired = decode(encode({"apiKeyUid": UID, "searchRules": ["*"], "exp": 100}, "s"))
    with pytest.raises(TokenError, match=r"Tenant token expired\. Was valid up to `100`"):
        expired.verify("s", 200)
    with pytest.raises(TokenError, match="missing field `apiKeyUid`"):
        decode(encode({"searchRules": ["*"]}, "s"))
    with pytest.raises(TokenError, match="SearchRules"):
        decode(encode({"apiKeyUid": UID, "searchRules": 3}, "s"))


def test_search_rules_pick_the_most_specific_filter() -> None:
    rules = SearchRules({"*": "a = 1", "mov*": "b = 2", "movies": None})
    assert rules.filter_for("movies") is None
    assert rules.filter_for("movies2") == "b = 2"
    assert rules.filter_for("books") == "a = 1"
    assert not SearchRules({"movies": None}).allows("books")


def test_route_actions() -> None:
    assert required_action("GET", "/health") == PUBLIC
    assert required_action("GET", "/_miroir/topology") == PUBLIC
    assert required_action("POST", "/indexes/{uid}/search") == "search"
    assert required_action("PUT", "/indexes/{index_uid}/settings/stop-words") == "settings.update"
    assert required_action("GET", "/indexes/{x}/settings") == "settings.get"
    assert required_action("POST", "/nowhere") == MASTER_ONLY
    assert index_of("/indexes/movies/documents") == "movies"
    assert index_of("/tasks") is None


async def expect_error(code: str, *args: object) -> None:
    with pytest.raises(MiroirError) as caught:
        await authenticate(*args)  # type: ignore[arg-type]
    assert caught.value.code == code


async def test_master_key_and_missing_headers() -> None:
    keys = Keys(key(["search"]))
    assert (await authenticate(keys, MASTER, "keys.get", None, f"Bearer {MASTER}")).is_master
    await expect_error("missing_authorization_header", keys, MASTER, "search", "m", None)
    await expect_error("missing_authorization_header", keys, MASTER, "search", "m", "Basic x")
    await expect_error("invalid_api_key", keys, MASTER, "search", "m", "Bearer wrong")
    await expect_error("invalid_api_key", keys, MASTER, MASTER_ONLY, None, "Bearer " + "a" * 64)
    # Without a master key everything is open but the key routes.
    assert (await authenticate(keys, None, "documents.add", "m", None)).is_master
    await expect_error("missing_master_key", keys, None, "keys.create", None, None)


async def test_api_key_actions_indexes_and_expiry() -> None:
    header = "Bearer " + "a" * 64
    scoped = Keys(key(["search", "indexes.get"], ("mov*",)))
    auth = await authenticate(scoped, MASTER, "search", "movies", header)
    assert not auth.is_master and auth.allows_index("movies") and not auth.allows_index("books")
    assert not auth.allows_index_creation("movies")
    await expect_error("invalid_api_key", scoped, MASTER, "documents.add", "movies", header)
    await expect_error("invalid_api_key", scoped, MASTER, "search", "books", header)
    # Upper-case hex is the same key, as on Meilisearch.
    assert await authenticate(
        scoped, MASTER, "search", "movies", header.upper().replace("BEARER", "Bearer")
    )
    expired = Keys(key(["*"], expires_at=time.time() - 10))
    await expect_error("invalid_api_key", expired, MASTER, "search", "movies", header)


async def test_tenant_token_exposes_its_filter_on_search_only() -> None:
    parent = key(["search"], ("movies", "books"))
    keys = Keys(parent)
    rules = {"movies": {"filter": "genre = horror"}}
    token = encode({"apiKeyUid": UID, "searchRules": rules, "exp": None}, parent.key)
    header = f"Bearer {token}"
    auth = await authenticate(keys, MASTER, "search", "movies", header)
    assert auth.tenant_filter("movies") == "genre = horror"
    assert not auth.allows_index("books")
    await expect_error("invalid_api_key", keys, MASTER, "search", "books", header)
    await expect_error("invalid_api_key", keys, MASTER, "documents.get", "movies", header)
    forged = encode({"apiKeyUid": UID, "searchRules": rules}, MASTER)
    await expect_error("invalid_api_key", keys, MASTER, "search", "movies", f"Bearer {forged}")
    late = encode({"apiKeyUid": UID, "searchRules": rules, "exp": 1}, parent.key)
    await expect_error("invalid_api_key", keys, MASTER, "search", "movies", f"Bearer {late}")
