"""The nodes' API keys as the proxy sees them: read from one node with the node master key.

Keys created through the proxy exist identically on every node, so one node's list is
the cluster's. The copy is refreshed when a presented key is unknown (at most once per
`REFRESH_MIN_S`, so a stream of bad keys cannot hammer a node) and after every key change
made through the proxy.
"""

from __future__ import annotations

import asyncio
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
    def from_node(cls, raw: dict[str, Any]) -> ApiKey:
        expires = raw.get("expiresAt")
        return cls(
            uid=str(raw["uid"]),
            key=str(raw["key"]),
            indexes=tuple(raw.get("indexes") or ()),
            granted=granted_actions(raw.get("actions") or ()),
            expires_at=None if expires is None else _epoch_s(str(expires)),
        )

    def permits(self, action: str, now_s: float) -> bool:
        live = self.expires_at is None or now_s < self.expires_at
        return live and action in self.granted


def _epoch_s(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class KeyCache:
    """The nodes' API keys by value and by uid, read from one node with the node master key."""

    def __init__(self, cluster: Cluster, clock: Callable[[], float] = time.monotonic) -> None:
        self._cluster = cluster
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
        keys = [ApiKey.from_node(raw) for raw in response.json().get("results", [])]
        self._by_value = {k.key: k for k in keys}
        self._by_uid = {k.uid: k for k in keys}
