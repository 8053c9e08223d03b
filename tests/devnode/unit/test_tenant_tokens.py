"""Tenant tokens: JWT decoding and signatures, and how `authenticate` treats them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from miroir_devnode.auth import AuthContext, authenticate
from miroir_devnode.errors import MeiliError
from miroir_devnode.keys import ApiKey, KeyStore
from miroir_devnode.tokens import (
    NotATenantToken,
    TenantTokenError,
    decode,
    encode,
)

MASTER = "a-master-key-of-16+bytes"
NIL = "00000000-0000-0000-0000-000000000000"
NO_VARIANT = "data did not match any variant of untagged enum SearchRules"
HS256_HEADER = "eyJhbGciOiJIUzI1NiJ9"  # {"alg":"HS256"}
DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_made_token(claims: Any, secret: str, alg: str = "HS256", header: Any = None) -> str:
    """A JWT built independently of the code under test (the Python SDK's way)."""
    head = b64(json.dumps(header or {"typ": "JWT", "alg": alg}).encode())
    body = b64(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    digest = DIGESTS.get(alg, hashlib.sha256)
    return f"{head}.{body}.{b64(hmac.new(secret.encode(), signing_input, digest).digest())}"


@pytest.fixture
def store() -> Iterator[KeyStore]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    yield KeyStore(conn, MASTER)
    conn.close()


def add_key(
    store: KeyStore,
    actions: tuple[str, ...] = ("search",),
    indexes: tuple[str, ...] = ("*",),
    expires_at: datetime | None = None,
) -> tuple[str, str]:
    moment = datetime.now(UTC)
    key = ApiKey(str(uuid.uuid4()), None, None, actions, indexes, expires_at, moment, moment)
    store.create(key)
    return key.uid, store.key_value(key.uid)


def search_as(store: KeyStore, token: str, index: str | None = "products") -> AuthContext:
    return authenticate(store, "search", index, f"Bearer {token}")


def refusal(
    store: KeyStore, token: str, index: str | None = "products", action: str = "search"
) -> str:
    with pytest.raises(MeiliError) as caught:
        authenticate(store, action, index, f"Bearer {token}")
    assert (caught.value.code, caught.value.status) == ("invalid_api_key", 403)
    return caught.value.message


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_each_algorithm_is_accepted(store: KeyStore, alg: str) -> None:
    uid, secret = add_key(store)
    token = hand_made_token(
        {"searchRules": ["products"], "apiKeyUid": uid, "exp": None}, secret, alg
    )
    context = search_as(store, token)
    assert context.allows_index("products") and not context.allows_index("other")
    assert context.tenant_filter("products") is None
    assert not context.is_master
    assert decode(token).alg == alg
    # The module's own encoder produces tokens the hand-made verifier accepts and vice versa.
    mine = encode({"searchRules": ["products"], "apiKeyUid": uid}, secret, alg)
    decode(mine).verify(secret)
    with pytest.raises(TenantTokenError, match="InvalidSignature"):
        decode(mine).verify(secret + "x")


def test_rule_objects_carry_filters_most_specific_first(store: KeyStore) -> None:
    uid, secret = add_key(store)
    rules = {
        "products": {"filter": "user = 1"},
        "prod*": {"filter": ["color = red", "size = 2"]},
        "*": None,
        "misc": {},
    }
    context = search_as(store, encode({"searchRules": rules, "apiKeyUid": uid}, secret))
    assert context.tenant_filter("products") == "user = 1"
    assert context.tenant_filter("production") == ["color = red", "size = 2"]
    assert context.tenant_filter("other") is None
    assert context.tenant_filter("misc") is None
    assert context.allows_index("anything")


def test_future_expiry_passes_and_past_expiry_is_refused(store: KeyStore) -> None:
    uid, secret = add_key(store)
    later = int(time.time()) + 3600
    search_as(store, encode({"searchRules": ["*"], "apiKeyUid": uid, "exp": later}, secret))
    earlier = int(time.time()) - 10
    message = refusal(
        store, encode({"searchRules": ["*"], "apiKeyUid": uid, "exp": earlier}, secret)
    )
    match = re.fullmatch(
        r"Tenant token expired\. Was valid up to `(\d+)` and we're now `(\d+)`\.", message
    )
    assert match is not None and int(match[1]) == earlier and int(match[2]) >= earlier + 10


def test_token_naming_another_key_or_signed_by_the_master_key(store: KeyStore) -> None:
    uid_a, secret_a = add_key(store)
    uid_b, _ = add_key(store)
    wrong_uid = encode({"searchRules": ["*"], "apiKeyUid": uid_b}, secret_a)
    assert refusal(store, wrong_uid) == "Could not decode tenant token, InvalidSignature."
    master_signed = encode({"searchRules": ["*"], "apiKeyUid": uid_a}, MASTER)
    assert refusal(store, master_signed) == "Could not decode tenant token, InvalidSignature."


def test_tokens_only_work_on_search_routes(store: KeyStore) -> None:
    uid, secret = add_key(store, ("*",))
    token = encode({"searchRules": ["*"], "apiKeyUid": uid}, secret)
    assert refusal(store, token, action="documents.get") == "The provided API key is invalid."
    authenticate(store, "chatCompletions", None, f"Bearer {token}")
    # On multi-search (no index in the path) the context carries the rules for each query.
    restricted = encode({"searchRules": ["products"], "apiKeyUid": uid}, secret)
    context = search_as(store, restricted, index=None)
    assert (context.allows_index("products"), context.allows_index("other")) == (True, False)


def test_index_outside_the_token_or_the_parent_key(store: KeyStore) -> None:
    uid, secret = add_key(store, indexes=("dog",))
    token = encode({"searchRules": ["doggo", "catto"], "apiKeyUid": uid}, secret)
    assert refusal(store, token, index="dog") == (
        "The provided tenant token cannot acces the index `dog`, allowed indexes are "
        '["catto", "doggo"].'
    )
    assert refusal(store, token, index="doggo") == (
        "The API key used to generate this tenant token cannot acces the index `doggo`."
    )


def test_parent_key_must_be_live_and_allowed_to_search(store: KeyStore) -> None:
    uid, secret = add_key(store, ("documents.get",))
    token = encode({"searchRules": ["*"], "apiKeyUid": uid}, secret)
    assert refusal(store, token) == "The provided API key is invalid."

    past = datetime.now(UTC) - timedelta(seconds=1)
    uid, secret = add_key(store, expires_at=past)
    token = encode({"searchRules": ["*"], "apiKeyUid": uid}, secret)
    assert refusal(store, token) == "The provided API key is invalid."

    uid, secret = add_key(store)
    token = encode({"searchRules": ["*"], "apiKeyUid": uid}, secret)
    search_as(store, token)
    store.delete(store.find(uid))
    assert refusal(store, token) == "The provided API key is invalid."


def test_non_ascii_header_counts_as_missing(store: KeyStore) -> None:
    with pytest.raises(MeiliError) as caught:
        authenticate(store, "search", None, "Bearer clé")
    assert caught.value.code == "missing_authorization_header"


def test_plain_api_keys_still_work_on_search_routes(store: KeyStore) -> None:
    _, secret = add_key(store)
    context = search_as(store, secret)
    assert context.search_rules is None and context.allows_index("anything")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"tamo": "kefir"}, "JSON error: missing field `searchRules` at line 1 column 16"),
        (
            {"searchRules": "kefir"},
            f"JSON error: {NO_VARIANT} at line 1 column 23",
        ),
        (
            {"searchRules": ["good doggo"], "apiKeyUid": NIL},
            f"JSON error: {NO_VARIANT} at line 1 column 30",
        ),
        ({"searchRules": ["*"]}, "JSON error: missing field `apiKeyUid` at line 1 column 21"),
        (
            {"searchRules": ["*"], "apiKeyUid": NIL, "exp": 1.5},
            "JSON error: invalid type: floating point `1.5`, expected i64 at line 1 column 81",
        ),
        ({"searchRules": ["*"], "apiKeyUid": NIL, "aud": "x"}, "InvalidAudience"),
        ({"searchRules": ["kefir"], "apiKeyUid": NIL}, "InvalidSignature"),
    ],
)
def test_undecodable_claims(store: KeyStore, claims: dict[str, Any], message: str) -> None:
    token = encode(claims, "tamo")
    assert refusal(store, token) == f"Could not decode tenant token, {message}."


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"alg": "RS256", "typ": "JWT"}, "InvalidAlgorithm"),
        ({"typ": "JWT"}, "JSON error: missing field `alg` at line 1 column 13"),
    ],
)
def test_bad_headers(store: KeyStore, header: dict[str, str], message: str) -> None:
    uid, secret = add_key(store)
    token = hand_made_token({"searchRules": ["*"], "apiKeyUid": uid}, secret, header=header)
    token = token.replace(
        token.split(".")[0], b64(json.dumps(header, separators=(",", ":")).encode())
    )
    assert refusal(store, token) == f"Could not decode tenant token, {message}."


def test_unknown_algorithm_names_the_variants() -> None:
    head = b64(b'{"alg":"none"}')
    with pytest.raises(TenantTokenError) as caught:
        decode(f"{head}.{b64(b'{}')}.")
    assert caught.value.message.startswith(
        "Could not decode tenant token, JSON error: unknown variant `none`, expected one of `HS256`"
    )


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("e30=.e30.x", "Base64 error: Invalid padding"),
        ("e3+.e30.x", "Base64 error: Invalid symbol 43, offset 2."),
        (f"{HS256_HEADER}.eyJ.x", "Base64 error: Invalid last symbol 74, offset 2."),
        (f"{HS256_HEADER}.e.x", "Base64 error: Encoded text cannot have a 6-bit remainder."),
        ("a.b.c.d", "Base64 error: Invalid symbol 46, offset 1."),
    ],
)
def test_base64_errors(token: str, message: str) -> None:
    with pytest.raises(TenantTokenError) as caught:
        decode(token)
    assert caught.value.message == f"Could not decode tenant token, {message}."


@pytest.mark.parametrize("token", ["abc", "abc.def", "0123456789abcdef"])
def test_fewer_than_three_parts_is_not_a_token(token: str) -> None:
    with pytest.raises(NotATenantToken):
        decode(token)
