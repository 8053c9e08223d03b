"""The nodes' API keys as the proxy sees them: read from one node with the node master key.

Keys created through the proxy exist identically on every node, so one node's list is
the cluster's. A key's value is Meilisearch's derivation from the master key and the key's
uid (hex HMAC-SHA256 of the uid keyed by the master key): the nodes derive theirs from the
node master key, which clients never see, so the proxy shows and accepts the value derived
from the clients' master key (`client_value`), as one node with that master key would.
Node values never leave the proxy.

The copy is refreshed when a presented key is unknown (at most once per `REFRESH_MIN_S`,
so a stream of bad keys cannot hammer a node) and after every key change made through the
proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.tokens import granted_actions

from .broadcast import read_any
from .cluster import Cluster

REFRESH_MIN_S = 1.0
KEYS_PAGE = 100_000


@dataclass(frozen=True, slots=True)
class ApiKey:
    uid: str
    key: str
    indexes: tuple[str, ...]
    granted: frozenset[str]
    expires_at: float | None

    @classmethod
    def from_node(cls, raw: dict[str, Any], master_key: str | None = None) -> ApiKey:
        """The key a node lists, with the value clients know it by (see the module doc)."""
        expires = raw.get("expiresAt")
        uid = str(raw["uid"])
        return cls(
            uid=uid,
            key=str(raw["key"]) if master_key is None else client_value(master_key, uid),
            indexes=tuple(raw.get("indexes") or ()),
            granted=granted_actions(raw.get("actions") or ()),
            expires_at=None if expires is None else _epoch_s(str(expires)),
        )

    def permits(self, action: str, now_s: float) -> bool:
        live = self.expires_at is None or now_s < self.expires_at
        return live and action in self.granted


def client_value(master_key: str, uid: str) -> str:
    """The value of key `uid` under the clients' master key."""
    digest = hmac.digest(master_key.encode("utf-8"), uid.encode("utf-8"), hashlib.sha256)
    return digest.hex()


def with_client_values(answer: Any, master_key: str | None) -> Any:
    """A node's key answer (one key, or a page of `results`) with client values."""
    if master_key is None or not isinstance(answer, dict):
        return answer
    listed = answer.get("results")
    for key in listed if isinstance(listed, list) else [answer]:
        if isinstance(key, dict) and isinstance(key.get("uid"), str) and "key" in key:
            key["key"] = client_value(master_key, key["uid"])
    return answer


def _epoch_s(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class KeyCache:
    """The nodes' API keys by value and by uid, read from one node with the node master key."""

    def __init__(
        self,
        cluster: Cluster,
        master_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cluster = cluster
        self._master_key = master_key
        self._clock = clock
        self._by_value: dict[str, ApiKey] = {}
        self._by_uid: dict[str, ApiKey] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def by_value(self, value: str) -> ApiKey | None:
        key = self._by_value.get(value) or self._by_value.get(value.lower())
        if key is None and await self._refresh_if_due():
            key = self._by_value.get(value) or self._by_value.get(value.lower())
        return key

    async def by_uid(self, uid: str) -> ApiKey | None:
        key = self._by_uid.get(uid.lower())
        if key is None and await self._refresh_if_due():
            key = self._by_uid.get(uid.lower())
        return key

    def invalidate(self) -> None:
        """Key changes through the proxy: forget every key so the next lookup reads the
        node again (a deleted key must stop working at once)."""
        self._by_value, self._by_uid = {}, {}
        self._fetched_at = None

    async def _refresh_if_due(self) -> bool:
        async with self._lock:
            now = self._clock()
            if self._fetched_at is not None and now - self._fetched_at < REFRESH_MIN_S:
                return False
            self._fetched_at = now
            await self._load()
            return True

    async def _load(self) -> None:
        try:
            response = await read_any(self._cluster, "GET", "/keys", params={"limit": KEYS_PAGE})
        except MiroirError:
            return
        if not response.ok:
            return
        listed = response.json().get("results", [])
        keys = [ApiKey.from_node(raw, self._master_key) for raw in listed]
        self._by_value = {k.key: k for k in keys}
        self._by_uid = {k.uid: k for k in keys}
