"""The live peer set: every pod heartbeats into the store and reads back who else is alive.

The set is cached in memory and refreshed on each heartbeat, so `Ownership.owns` never
touches the store. When the store cannot be reached the last known set is kept: ownership
then stays stable instead of collapsing onto this pod alone, and heals when the store
answers again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, NoReturn

from miroir_proxy.state.store import Store, StoreUnavailable

log = logging.getLogger(__name__)


class PeerSet:
    def __init__(
        self,
        store: Store,
        pod_id: str,
        *,
        heartbeat_ms: int,
        ttl_ms: int,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        if ttl_ms <= heartbeat_ms:
            raise ValueError("the peer TTL must be longer than the heartbeat interval")
        self.pod_id = pod_id
        self._store = store
        self._heartbeat_s = heartbeat_ms / 1000
        self._ttl_ms = ttl_ms
        self._info = dict(info or {})
        self._peers: dict[str, dict[str, Any]] = {}
        self._live: frozenset[str] = frozenset({pod_id})
        self._changed = asyncio.Condition()
        self.generation = 0

    @property
    def live(self) -> frozenset[str]:
        """Pod ids seen alive at the last refresh, this pod included."""
        return self._live

    @property
    def peers(self) -> Mapping[str, Mapping[str, Any]]:
        """What each live pod published with its heartbeat."""
        return self._peers

    async def beat(self) -> None:
        """Publish this pod's heartbeat and refresh the cached live set once."""
        await self._store.peer_heartbeat(self.pod_id, self._info, self._ttl_ms)
        peers = await self._store.live_peers()
        live = frozenset(peers) | {self.pod_id}
        self._peers = peers
        if live != self._live:
            log.info("live peers changed: %s", ", ".join(sorted(live)))
            self._live = live
            async with self._changed:
                self.generation += 1
                self._changed.notify_all()

    async def wait_for(self, expected: frozenset[str] | set[str]) -> None:
        """Return once the cached live set equals `expected` (callers add their deadline)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._live == expected)

    async def run(self) -> NoReturn:
        while True:
            try:
                await self.beat()
            except StoreUnavailable as e:
                log.warning("peer heartbeat failed, keeping the last known peers: %s", e)
            await asyncio.sleep(self._heartbeat_s)

    async def leave(self) -> None:
        """Withdraw this pod at once so the others take over its keys without the TTL wait."""
        try:
            await self._store.peer_leave(self.pod_id)
        except StoreUnavailable as e:
            log.warning("could not withdraw from the peer set (its TTL will): %s", e)
