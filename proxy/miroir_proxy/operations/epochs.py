"""Publish a topology change and wait until every live pod routes with it.

This is the one place a change enters the cluster: `publish` applies a typed change
(`core.changes`) to the stored epoch and stores the result with a compare-and-set, applying
it again to the newer epoch when another pod won the race; `wait_acknowledged` returns once
every pod of the live peer set has recorded that it routes with that epoch or a later one
(`dispatch.topowatch`). A pod that dies drops out of the peer set after its TTL and stops
being waited for; a pod that starts reads the newest epoch before it serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from miroir_proxy.core.changes import Change, apply
from miroir_proxy.core.topology import Topology
from miroir_proxy.dispatch.topowatch import StaleEpoch, TopologyWatcher, laggards
from miroir_proxy.state.store import Store

log = logging.getLogger(__name__)

# Many pods publishing at once still converge; past this something is wrong.
MAX_ATTEMPTS = 20


class NotAcknowledged(Exception):
    """Some live pods did not acknowledge an epoch within the deadline."""

    def __init__(self, epoch: int, pods: set[str]) -> None:
        super().__init__(f"epoch {epoch} not acknowledged by {', '.join(sorted(pods))}")
        self.epoch = epoch
        self.pods = pods


class Epochs:
    def __init__(self, store: Store, watcher: TopologyWatcher, *, poll_ms: int) -> None:
        self._store = store
        self._watcher = watcher
        self._poll_s = poll_ms / 1000

    async def publish(self, change: Change, *, based_on: int | None = None) -> Topology:
        """Apply `change` to the stored topology and store the result as the next epoch.

        With `based_on`, the change must apply to exactly that epoch (`StaleEpoch`
        otherwise, the admin API's optimistic concurrency); without it, a lost race is
        retried on the newer epoch.
        """
        for _ in range(MAX_ATTEMPTS):
            current = await self._watcher.stored()
            if based_on is not None and current.epoch != based_on:
                raise StaleEpoch(based_on, current.epoch)
            topology = apply(current, change)
            try:
                await self._watcher.publish(topology)
            except StaleEpoch:
                if based_on is not None:
                    raise
                continue
            log.info("published topology epoch %d: %s", topology.epoch, change)
            return topology
        raise RuntimeError(f"could not publish {change!r}: the epoch kept moving")

    async def stored(self) -> Topology:
        return await self._watcher.stored()

    async def publish_if(self, needed: Callable[[Topology], bool], change: Change) -> Topology:
        """Publish `change` unless the stored topology shows it is done already (a step
        re-run by a new lease holder); returns the topology that holds it either way."""
        current = await self._watcher.stored()
        if not needed(current):
            return current
        return await self.publish(change)

    async def wait_acknowledged(self, epoch: int, timeout_s: float) -> None:
        """Return once every live pod routes with `epoch` or later."""
        behind: set[str] = set()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    live = await self._store.live_peers()
                    behind = await laggards(self._store, live, epoch)
                    if not behind:
                        return
                    await asyncio.sleep(self._poll_s)
        except TimeoutError:
            raise NotAcknowledged(epoch, behind) from None

    async def change(self, change: Change, timeout_s: float) -> Topology:
        """Publish `change` and wait for every live pod's acknowledgement."""
        topology = await self.publish(change)
        await self.wait_acknowledged(topology.epoch, timeout_s)
        return topology
