"""Tenant tokens: JWTs (HS256/HS384/HS512) signed with an API key's value, decoded with
the standard library the way Meilisearch's `jsonwebtoken` does it.

Decoding happens in two passes, as in Meilisearch: first the claims are read without
checking the signature (to learn `apiKeyUid`, hence which key signed), then the signature
is checked with that key's value. A bearer token with fewer than two dots is not a JWT
at all and is looked up as an API key instead (`NotATenantToken`); any other defect is a
`TenantTokenError` whose message is Meilisearch's "Could not decode tenant token, …".
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .keys import is_index_pattern, parse_uuid, pattern_matches

HASHES: dict[str, Callable[..., Any]] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}
_JWT_ALGORITHMS = (
    "HS256", "HS384", "HS512", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384",
    "PS512", "EdDSA",
)  # fmt: skip
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_DECODER = json.JSONDecoder()


class NotATenantToken(Exception):
    """The bearer token has fewer than three parts: it is read as an API key."""


class TenantTokenError(Exception):
    """A token Meilisearch rejects with `invalid_api_key` and this exact message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _undecodable(reason: str) -> TenantTokenError:
    return TenantTokenError(f"Could not decode tenant token, {reason}.")


@dataclass(frozen=True, slots=True)
class SearchRules:
    """A token's `searchRules`: index patterns, each with an optional filter to AND in."""

    filters: Mapping[str, Any]  # pattern -> filter value, or None when it adds no filter

    def allows(self, uid: str) -> bool:
        return (
            "*" in self.filters
            or uid in self.filters
            or any(pattern_matches(p, uid) for p in self.filters)
        )

    def filter_for(self, uid: str) -> Any:
        """The filter of the most specific matching pattern (exact first, then longest)."""
        best: tuple[bool, int] | None = None
        chosen: Any = None
        for pattern, rule_filter in self.filters.items():
            if pattern_matches(pattern, uid):
                rank = (not pattern.endswith("*"), len(pattern))
                if best is None or rank > best:
                    best, chosen = rank, rule_filter
        return chosen

    def patterns(self) -> list[str]:
        return sorted(self.filters)


@dataclass(frozen=True, slots=True)
class TenantToken:
    api_key_uid: str
    search_rules: SearchRules
    exp: int | None
    alg: str
    signing_input: bytes
    signature: str

    def verify(self, secret: str) -> None:
        digest = HASHES.get(self.alg)
        if digest is None:
            raise _undecodable("InvalidAlgorithm")
        mac = hmac.new(secret.encode(), self.signing_input, digest).digest()
        expected = _b64url_encode(mac)
        if not hmac.compare_digest(expected, self.signature.encode()):
            raise _undecodable("InvalidSignature")

    def check_expiry(self, now_s: int) -> None:
        if self.exp is not None and now_s > self.exp:
            raise TenantTokenError(
                f"Tenant token expired. Was valid up to `{self.exp}` and we're now `{now_s}`."
            )


def _b64url_encode(data: bytes) -> bytes:
    return (
        binascii.b2a_base64(data, newline=False)
        .rstrip(b"=")
        .translate(bytes.maketrans(b"+/", b"-_"))
    )


def encode(claims: Mapping[str, Any], secret: str, alg: str = "HS256") -> str:
    """A signed token (tests and tools; the node itself only decodes)."""
    header = _b64url_encode(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = header + b"." + payload
    signature = _b64url_encode(hmac.new(secret.encode(), signing_input, HASHES[alg]).digest())
    return (signing_input + b"." + signature).decode()


def _b64url_decode(part: str) -> bytes:
    """Strict URL-safe, unpadded base64 (the `base64` crate's rules and messages)."""
    for offset, char in enumerate(part):
        if char not in _B64URL:
            if char == "=" and part.rstrip("=") == part[:offset]:
                raise _undecodable("Base64 error: Invalid padding")
            raise _undecodable(f"Base64 error: Invalid symbol {ord(char)}, offset {offset}.")
    remainder = len(part) % 4
    if remainder == 1:
        raise _undecodable("Base64 error: Encoded text cannot have a 6-bit remainder.")
    if remainder:
        last = part[-1]
        value = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(last)
        if value & (0x0F if remainder == 2 else 0x03):
            raise _undecodable(
                f"Base64 error: Invalid last symbol {ord(last)}, offset {len(part) - 1}."
            )
    padded = part.translate(str.maketrans("-_", "+/")) + "=" * (-len(part) % 4)
    return binascii.a2b_base64(padded)


def _json_error(message: str, text: str, pos: int) -> TenantTokenError:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1)
    return _undecodable(f"JSON error: {message} at line {line} column {column}")


def _unexpected(value: Any) -> str:
    """serde's description of a JSON value in "invalid type" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    return "sequence" if isinstance(value, list) else "map"


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _members(raw: bytes, expected: str) -> tuple[str, list[tuple[str, Any, int]], int]:
    """The text, the top-level members of its JSON object (key, value, end offset of the
    value) in document order, and the object's end offset: serde reports positions."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise _undecodable("JSON error: invalid unicode code point") from e
    members: list[tuple[str, Any, int]] = []
    try:
        pos = _skip_ws(text, 0)
        if not text.startswith("{", pos):
            value, end = _DECODER.raw_decode(text, pos)
            raise _json_error(f"invalid type: {_unexpected(value)}, expected {expected}", text, end)
        pos = _skip_ws(text, pos + 1)
        if text.startswith("}", pos):
            return text, members, pos + 1
        while True:
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _skip_ws(text, pos)
            if not text.startswith(":", pos) or not isinstance(key, str):
                raise _json_error("expected `:`", text, pos + 1)
            value, end = _DECODER.raw_decode(text, _skip_ws(text, pos + 1))
            members.append((key, value, end))
            pos = _skip_ws(text, end)
            if text.startswith("}", pos):
                break
            if not text.startswith(",", pos):
                raise _json_error("expected `,` or `}`", text, pos + 1)
            pos = _skip_ws(text, pos + 1)
    except json.JSONDecodeError as e:
        raise _json_error(e.msg.lower(), text, e.pos + 1) from e
    if _skip_ws(text, pos + 1) != len(text):
        raise _json_error("trailing characters", text, _skip_ws(text, pos + 1) + 1)
    return text, members, pos + 1


def _read_alg(raw: bytes) -> str:
    text, members, end = _members(raw, "struct Header")
    for key, value, value_end in members:
        if key != "alg":
            continue
        if not isinstance(value, str):
            raise _json_error(
                f"invalid type: {_unexpected(value)}, expected variant identifier", text, value_end
            )
        if value not in _JWT_ALGORITHMS:
            accepted = ", ".join(f"`{a}`" for a in _JWT_ALGORITHMS)
            raise _json_error(
                f"unknown variant `{value}`, expected one of {accepted}", text, value_end
            )
        return value
    raise _json_error("missing field `alg`", text, end)


def _search_rules(value: Any) -> SearchRules | None:
    if isinstance(value, list):
        if all(isinstance(p, str) and is_index_pattern(p) for p in value):
            return SearchRules(dict.fromkeys(value))
        return None
    if isinstance(value, dict):
        filters: dict[str, Any] = {}
        for pattern, rule in value.items():
            if not is_index_pattern(pattern) or not (rule is None or isinstance(rule, dict)):
                return None
            filters[pattern] = None if rule is None else rule.get("filter")
        return SearchRules(filters)
    return None


def decode(token: str) -> TenantToken:
    """The token's claims, not yet verified (see `TenantToken.verify`)."""
    message, dot, signature = token.rpartition(".")
    header_part, dot2, payload_part = message.rpartition(".")
    if not dot or not dot2:
        raise NotATenantToken
    alg = _read_alg(_b64url_decode(header_part))
    text, members, end = _members(_b64url_decode(payload_part), "struct Claims")
    seen: dict[str, Any] = {}
    for key, value, value_end in members:
        if key in seen and key in ("searchRules", "exp", "apiKeyUid"):
            raise _json_error(f"duplicate field `{key}`", text, value_end)
        if key == "searchRules":
            rules = _search_rules(value)
            if rules is None:
                raise _json_error(
                    "data did not match any variant of untagged enum SearchRules",
                    text,
                    value_end + 1,
                )
            value = rules
        elif (
            key == "exp"
            and value is not None
            and (isinstance(value, bool) or not isinstance(value, int))
        ):
            raise _json_error(f"invalid type: {_unexpected(value)}, expected i64", text, value_end)
        elif key == "apiKeyUid":
            if not isinstance(value, str):
                raise _json_error(
                    f"invalid type: {_unexpected(value)}, expected UUID", text, value_end
                )
            try:
                value = parse_uuid(value)
            except ValueError as e:
                raise _json_error(f"UUID parsing failed: {e}", text, value_end) from e
        seen[key] = value
    for required in ("searchRules", "apiKeyUid"):
        if required not in seen:
            raise _json_error(f"missing field `{required}`", text, end)
    # jsonwebtoken refuses an audience claim when no audience is configured.
    if isinstance(seen.get("aud"), str | list):
        raise _undecodable("InvalidAudience")
    return TenantToken(
        api_key_uid=seen["apiKeyUid"],
        search_rules=seen["searchRules"],
        exp=seen.get("exp"),
        alg=alg,
        signing_input=message.encode(),
        signature=signature,
    )
