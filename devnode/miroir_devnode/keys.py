"""API keys: the action catalogue, index uid patterns and the SQLite-backed `KeyStore`.

A key's secret value is never stored: like Meilisearch, it is derived on the fly as the
lowercase hex HMAC-SHA256 of the hyphenated uid under the master key, so a new master
key invalidates every key. Each key's action wildcards are expanded once, when it is
loaded or created, so an authorization check is a set lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

import orjson

from .errors import MeiliError
from .timeutil import now, parse_rfc3339, rfc3339

# Every action name in Meilisearch's declaration order (its error messages list them so).
ACTIONS: tuple[str, ...] = (
    "*", "search", "documents.*", "documents.add", "documents.get", "documents.delete",
    "indexes.*", "indexes.create", "indexes.get", "indexes.update", "indexes.delete",
    "indexes.swap", "tasks.*", "tasks.cancel", "tasks.delete", "tasks.get", "settings.*",
    "settings.get", "settings.update", "stats.*", "stats.get", "metrics.*", "metrics.get",
    "dumps.*", "dumps.create", "snapshots.*", "snapshots.create", "version", "keys.create",
    "keys.get", "keys.update", "keys.delete", "experimental.get", "experimental.update",
    "export", "network.get", "network.update", "chatCompletions", "chats.*", "chats.get",
    "chats.delete", "chatsSettings.*", "chatsSettings.get", "chatsSettings.update", "*.get",
    "webhooks.get", "webhooks.update", "webhooks.delete", "webhooks.create", "webhooks.*",
    "indexes.compact", "fields.post", "tasks.compact", "dynamicSearchRules.get",
    "dynamicSearchRules.create", "dynamicSearchRules.update", "dynamicSearchRules.delete",
    "dynamicSearchRules.*",
)  # fmt: skip
ACTION_SET = frozenset(ACTIONS)
KEYS_ACTIONS = frozenset({"keys.create", "keys.get", "keys.update", "keys.delete"})

# What `*.get` grants (Meilisearch's `Action::is_read`). `keys.get` is deliberately absent
# (privilege escalation) and so is `chatCompletions` (it may create chats).
READ_ACTIONS = frozenset({
    "search", "documents.get", "export", "indexes.get", "tasks.get", "settings.get",
    "stats.get", "metrics.get", "version", "experimental.get", "network.get", "chats.get",
    "chatsSettings.get", "webhooks.get", "fields.post", "dynamicSearchRules.get",
})  # fmt: skip


def expand_actions(actions: tuple[str, ...]) -> frozenset[str]:
    """Every concrete action a key's list grants: `*` is all but `*.get`, `x.*` is `x.…`."""
    granted: set[str] = set()
    for action in actions:
        if action == "*":
            granted.update(ACTION_SET - {"*.get"})
        elif action == "*.get":
            granted.update(READ_ACTIONS)
        elif action.endswith(".*"):
            # The group itself is kept too, so a route guarded by `documents.*` accepts it.
            granted.update(a for a in ACTIONS if a.startswith(action[:-1]))
        else:
            granted.add(action)
    return frozenset(granted)


_INDEX_UID = re.compile(r"[A-Za-z0-9_-]+")
INDEX_UID_MAX_BYTES = 400


def is_index_pattern(text: str) -> bool:
    """`*`, `prefix*` or a valid index uid (the rule behind Meilisearch's IndexUidPattern)."""
    body = text[:-1] if text.endswith("*") else text
    if not body:
        return text == "*"
    return len(body) <= INDEX_UID_MAX_BYTES and _INDEX_UID.fullmatch(body) is not None


def pattern_matches(pattern: str, uid: str) -> bool:
    if pattern.endswith("*"):
        return uid.startswith(pattern[:-1])
    return uid == pattern


def patterns_allow(patterns: tuple[str, ...], uid: str) -> bool:
    return any(pattern_matches(p, uid) for p in patterns)


_UUID_FORMS = re.compile(
    r"(?:urn:uuid:|\{)?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?"
    r"([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})\}?"
)
_GROUP_LENGTHS = (8, 4, 4, 4, 12)


def parse_uuid(text: str) -> str:
    """The hyphenated lowercase form of a simple, hyphenated, braced or urn UUID.

    Raises ValueError with the Rust `uuid` crate's message, which Meilisearch shows.
    """
    if text.startswith("urn:uuid:"):
        body, offset = text[9:], 9
    elif text.startswith("{") and text.endswith("}"):
        body, offset = text[1:-1], 1
    else:
        body, offset = text, 0
    hyphens = body.count("-")
    if (hyphens == 0 and len(body) == 32) or (
        hyphens == 4 and tuple(len(g) for g in body.split("-")) == _GROUP_LENGTHS
    ):
        match = _UUID_FORMS.fullmatch(body)
        if match is not None:
            return "-".join(match.groups()).lower()
    for index, char in enumerate(body):
        if char != "-" and char not in "0123456789abcdefABCDEF":
            raise ValueError(f"invalid character: found `{char}` at {index + offset}")
    if hyphens == 0:
        raise ValueError(f"invalid length: expected length 32 for simple format, found {len(text)}")
    groups = body.split("-")
    if len(groups) != 5:
        raise ValueError(f"invalid group count: expected 5, found {len(groups)}")
    for number, (group, expected) in enumerate(zip(groups, _GROUP_LENGTHS, strict=True)):
        if len(group) != expected:
            raise ValueError(
                f"invalid group length in group {number}: expected {expected}, found {len(group)}"
            )
    raise ValueError("failed to parse a UUID")


def derive_key(master_key: str, uid: str) -> str:
    return hmac.new(master_key.encode(), uid.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    uid: str
    name: str | None
    description: str | None
    actions: tuple[str, ...]
    indexes: tuple[str, ...]
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    granted: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "granted", expand_actions(self.actions))

    def is_expired(self, moment: datetime) -> bool:
        return self.expires_at is not None and moment >= self.expires_at

    def permits(self, action: str, moment: datetime) -> bool:
        """The action is granted and the key is live (index rules are checked apart)."""
        return action in self.granted and not self.is_expired(moment)

    def to_row(self) -> bytes:
        return orjson.dumps({
            "name": self.name,
            "description": self.description,
            "actions": self.actions,
            "indexes": self.indexes,
            "expiresAt": None if self.expires_at is None else rfc3339(self.expires_at),
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        })  # fmt: skip

    @classmethod
    def from_row(cls, uid: str, body: bytes) -> ApiKey:
        data = orjson.loads(body)
        expires = data["expiresAt"]
        return cls(
            uid=uid,
            name=data["name"],
            description=data["description"],
            actions=tuple(data["actions"]),
            indexes=tuple(data["indexes"]),
            expires_at=None if expires is None else parse_rfc3339(expires),
            created_at=parse_rfc3339(data["createdAt"]),
            updated_at=parse_rfc3339(data["updatedAt"]),
        )


_DEFAULT_KEYS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Default Chat API Key", "Use it to chat and search from the frontend",
     ("chatCompletions", "search")),
    ("Default Admin API Key", "Use it for anything that is not a search operation. Caution! "
     "Do not expose it on a public frontend", ("*",)),
    ("Default Search API Key", "Use it to search from the frontend", ("search",)),
    ("Default Read-Only Admin API Key", "Use it to read information across the whole database. "
     "Caution! Do not expose this key on a public frontend", ("*.get", "keys.get")),
)  # fmt: skip

_SCHEMA = "CREATE TABLE IF NOT EXISTS keys (uid TEXT PRIMARY KEY, body BLOB NOT NULL)"


def key_not_found(reference: str) -> MeiliError:
    return MeiliError("api_key_not_found", f"API key `{reference}` not found.")


class KeyStore:
    """The node's API keys, cached in memory and written through to the `keys` table."""

    def __init__(self, conn: sqlite3.Connection, master_key: str | None) -> None:
        self._conn = conn
        self.master_key = master_key
        conn.execute(_SCHEMA)
        rows = conn.execute("SELECT uid, body FROM keys").fetchall()
        self._keys: dict[str, ApiKey] = {uid: ApiKey.from_row(uid, body) for uid, body in rows}
        self._uid_by_value: dict[str, str] = {}
        if master_key is not None:
            self._uid_by_value = {derive_key(master_key, uid): uid for uid in self._keys}
            if not self._keys:
                self._create_default_keys()
        self._commit()

    def _create_default_keys(self) -> None:
        for name, description, actions in _DEFAULT_KEYS:
            moment = now()
            self.create(
                ApiKey(str(uuid.uuid4()), name, description, actions, ("*",), None, moment, moment)
            )

    def _commit(self) -> None:
        # The storage layer's connection runs in autocommit mode (isolation_level None):
        # every statement is already durable and a commit here could end someone else's
        # explicit transaction; other connections need the explicit commit.
        if self._conn.isolation_level is not None:
            self._conn.commit()

    def key_value(self, uid: str) -> str:
        if self.master_key is None:
            raise RuntimeError("API key values only exist when a master key is set")
        return derive_key(self.master_key, uid)

    def get(self, uid: str) -> ApiKey | None:
        return self._keys.get(uid)

    def uid_for_value(self, value: str) -> str | None:
        found = self._uid_by_value.get(value)
        # Meilisearch hex-decodes the presented key, so upper-case hex is accepted too.
        return found if found is not None else self._uid_by_value.get(value.lower())

    def find(self, uid_or_key: str) -> ApiKey:
        """Looks a key up by uid (any UUID form) or by its value; else `api_key_not_found`."""
        try:
            uid = parse_uuid(uid_or_key)
        except ValueError:
            found = self.uid_for_value(uid_or_key)
            if found is None:
                raise key_not_found(uid_or_key) from None
            uid = found
        key = self._keys.get(uid)
        if key is None:
            raise key_not_found(uid)
        return key

    def list(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_at, reverse=True)

    def create(self, key: ApiKey) -> ApiKey:
        if key.uid in self._keys:
            raise MeiliError(
                "api_key_already_exists",
                f"`uid` field value `{key.uid}` is already an existing API key.",
            )
        self._put(key)
        if self.master_key is not None:
            self._uid_by_value[derive_key(self.master_key, key.uid)] = key.uid
        return key

    def update(self, key: ApiKey, name: str | None, description: str | None) -> ApiKey:
        updated = replace(key, name=name, description=description, updated_at=now())
        self._put(updated)
        return updated

    def delete(self, key: ApiKey) -> None:
        self._conn.execute("DELETE FROM keys WHERE uid = ?", (key.uid,))
        self._commit()
        del self._keys[key.uid]
        if self.master_key is not None:
            self._uid_by_value.pop(derive_key(self.master_key, key.uid), None)

    def _put(self, key: ApiKey) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO keys (uid, body) VALUES (?, ?)", (key.uid, key.to_row())
        )
        self._commit()
        self._keys[key.uid] = key

    def view(self, key: ApiKey) -> dict[str, object]:
        """The key as the API shows it (dates always with a fractional part and `Z`)."""
        return {
            "name": key.name,
            "description": key.description,
            "key": self.key_value(key.uid),
            "uid": key.uid,
            "actions": list(key.actions),
            "indexes": list(key.indexes),
            "expiresAt": None if key.expires_at is None else rfc3339(key.expires_at),
            "createdAt": rfc3339(key.created_at),
            "updatedAt": rfc3339(key.updated_at),
        }
