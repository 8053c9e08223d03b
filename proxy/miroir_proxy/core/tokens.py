"""API key rules and tenant tokens, as values (no I/O): what a key's `actions` grant, which
index patterns match, and decoding/verifying a tenant token (JWT HS256/384/512).

Decisions a newcomer would otherwise get wrong:
- `*` grants every action except what `*.get` alone means, and `*.get` grants the read
  actions only (never `keys.get`: reading keys would reveal the admin key).
- A tenant token is signed with the parent API key's *value*, never the master key; its
  `exp` may be null (the Python SDK sends `"exp": null`).
- Every refusal is Meilisearch's `403 invalid_api_key`; `TokenError.message` carries the
  text Meilisearch shows.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

HASHES = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}

# Meilisearch's concrete actions, by resource: `resource.verb` for each verb listed, and
# the resource-less ones (`search`, `version`, `export`, `chatCompletions`) as they are.
_VERBS = {
    "documents": "add get delete",
    "indexes": "create get update delete swap compact",
    "tasks": "cancel delete get compact",
    "settings": "get update",
    "stats": "get",
    "metrics": "get",
    "dumps": "create",
    "snapshots": "create",
    "keys": "create get update delete",
    "experimental": "get update",
    "network": "get update",
    "chats": "get delete",
    "chatsSettings": "get update",
    "webhooks": "get create update delete",
    "fields": "post",
    "dynamicSearchRules": "get create update delete",
}
ACTIONS = frozenset(
    [f"{resource}.{verb}" for resource, verbs in _VERBS.items() for verb in verbs.split()]
    + ["search", "version", "export", "chatCompletions"]
)
# What `*.get` grants: every `.get` action but `keys.get`, and the read-only actions
# without the suffix.
READ_ACTIONS = frozenset(
    {a for a in ACTIONS if a.endswith(".get") and a != "keys.get"}
    | {"search", "version", "export", "fields.post"}
)
KEYS_ACTIONS = frozenset({"keys.create", "keys.get", "keys.update", "keys.delete"})
# Routes guarded by a group action (`documents.*` for document edition) need the group.
GROUP_ACTIONS = frozenset(a.split(".")[0] + ".*" for a in ACTIONS if "." in a)


def granted_actions(actions: Iterable[str]) -> frozenset[str]:
    """Every concrete action (and group) a key's `actions` list grants."""
    granted: set[str] = set()
    for action in actions:
        if action == "*":
            granted |= ACTIONS | GROUP_ACTIONS
        elif action == "*.get":
            granted |= READ_ACTIONS
        elif action.endswith(".*"):
            prefix = action[:-1]
            granted.add(action)
            granted.update(a for a in ACTIONS if a.startswith(prefix))
        else:
            granted.add(action)
    return frozenset(granted)


def pattern_matches(pattern: str, uid: str) -> bool:
    if pattern.endswith("*"):
        return uid.startswith(pattern[:-1])
    return uid == pattern


def patterns_allow(patterns: Iterable[str], uid: str) -> bool:
    return any(pattern_matches(p, uid) for p in patterns)


class TokenError(Exception):
    """A tenant token Meilisearch would refuse (403 `invalid_api_key`); the one argument is
    Meilisearch's exact message."""

    @property
    def message(self) -> str:
        return str(self.args[0])


def _undecodable(reason: str) -> TokenError:
    return TokenError("Could not decode tenant token, " + reason + ".")


@dataclass(frozen=True, slots=True)
class SearchRules:
    """A token's `searchRules`: index pattern -> filter to AND in (None: no filter)."""

    filters: Mapping[str, Any]

    def filter_for(self, uid: str) -> Any:
        """The filter of the most specific matching pattern: the uid itself, else the
        longest matching `prefix*` (the first listed among equally long ones)."""
        if uid in self.filters:
            return self.filters[uid]
        matching = [pattern for pattern in self.filters if pattern_matches(pattern, uid)]
        return self.filters[max(matching, key=len)] if matching else None

    def allows(self, uid: str) -> bool:
        return patterns_allow(self.filters, uid)

    def patterns(self) -> list[str]:
        return sorted(self.filters)


@dataclass(frozen=True, slots=True)
class TenantToken:
    """A decoded token: what it was signed over and with, whose key, until when, what for."""

    alg: str
    signing_input: bytes  # `header.payload`, as sent
    signature: bytes
    api_key_uid: str
    exp: int | None  # Unix seconds; None: never expires
    search_rules: SearchRules

    def verify(self, secret: str, now_s: int) -> None:
        """Raise `TokenError` unless signed with `secret` and not expired at `now_s`."""
        digest = HASHES.get(self.alg)
        if digest is None:
            raise _undecodable("InvalidAlgorithm")
        expected = hmac.digest(secret.encode(), self.signing_input, digest)
        if not hmac.compare_digest(expected, self.signature):
            raise _undecodable("InvalidSignature")
        if self.exp is not None and now_s > self.exp:
            raise TokenError(
                f"Tenant token expired. Was valid up to `{self.exp}` and we're now `{now_s}`."
            )


def _b64url(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as e:
        raise _undecodable(f"Base64 error: {e}") from e


def _b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _undecodable(f"JSON error: {e}") from e
    if not isinstance(value, dict):
        raise _undecodable("JSON error: expected an object")
    return value


def _search_rules(value: Any) -> SearchRules:
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return SearchRules(dict.fromkeys(value))
    if isinstance(value, dict) and all(r is None or isinstance(r, dict) for r in value.values()):
        return SearchRules({p: None if r is None else r.get("filter") for p, r in value.items()})
    raise _undecodable("JSON error: data did not match any variant of untagged enum SearchRules")


def looks_like_token(text: str) -> bool:
    return text.count(".") == 2


def decode(token: str) -> TenantToken:
    """The token's claims, not yet verified (see `TenantToken.verify`)."""
    header_part, payload_part, signature_part = token.split(".")
    header = _json_object(_b64url(header_part))
    claims = _json_object(_b64url(payload_part))
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _undecodable("JSON error: missing field `alg`")
    for required in ("searchRules", "apiKeyUid"):
        if required not in claims:
            raise _undecodable(f"JSON error: missing field `{required}`")
    uid = claims["apiKeyUid"]
    exp = claims.get("exp")
    if not isinstance(uid, str):
        raise _undecodable("JSON error: invalid type, expected UUID")
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int)):
        raise _undecodable("JSON error: invalid type, expected i64")
    return TenantToken(
        api_key_uid=uid.lower(),
        search_rules=_search_rules(claims["searchRules"]),
        exp=exp,
        alg=alg,
        signing_input=f"{header_part}.{payload_part}".encode(),
        signature=_b64url(signature_part),
    )


def encode(claims: Mapping[str, Any], secret: str, alg: str = "HS256") -> str:
    """A signed tenant token, as an SDK builds one."""
    header = _b64url_encode(orjson.dumps({"alg": alg, "typ": "JWT"}))
    payload = _b64url_encode(orjson.dumps(dict(claims)))
    signing_input = header + b"." + payload
    signature = _b64url_encode(hmac.digest(secret.encode(), signing_input, HASHES[alg]))
    return (signing_input + b"." + signature).decode()
