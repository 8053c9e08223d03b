"""Keep this pod on the store's topology epoch, and publish topology changes.

Every `coordination.topology_poll_ms` the watcher re-reads the stored (epoch, layout);
a newer epoch is swapped into the `Cluster` at once (requests already running keep the
layout they started with). After each successful poll the pod records the epoch it routes
with under `kvkeys.topology_epoch(pod_id)`, refreshed at every poll with a TTL of a few
polls, so an operation can wait until every live pod has acknowledged an epoch
(`laggards`): a pod that recorded epoch E has acknowledged every epoch up to E, and no
write it routed with an older epoch is still on its way (`Cluster.settled_epoch`).

The poll doubles as this pod's store probe: a `StoreUnavailable` seen anywhere marks the
store down (writes are then refused before they touch a node) and the next successful
poll marks it up again, so the pod recovers by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any, Self

import orjson

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.core.topology import Topology, from_document, to_document
from miroir_proxy.state import kvkeys
from miroir_proxy.state.store import Store, StoreUnavailable

from .cluster import Cluster

log = logging.getLogger(__name__)


class StaleEpoch(Exception):
    """A topology change was based on an epoch that is no longer the stored one."""

    def __init__(self, expected: int, current: int | None) -> None:
        super().__init__(f"expected epoch {expected}, the store holds {current}")
        self.expected = expected
        self.current = current


class TopologyWatcher:
    """Use as `async with TopologyWatcher(...):` (the poll loop runs inside)."""

    def __init__(
        self, store: Store, cluster: Cluster, pod_id: str, *, poll_ms: int, ack_ttl_ms: int
    ) -> None:
        self.pod_id = pod_id
        self._store = store
        self._cluster = cluster
        self._poll_s = poll_ms / 1000
        self._ack_ttl_s = max(ack_ttl_ms, 3 * poll_ms) / 1000
        # Past this without a successful poll, a write re-reads the epoch first: the pod may
        # have been frozen long enough for the others to stop waiting for it.
        self._fresh_s = max(2 * poll_ms, ack_ttl_ms // 2) / 1000
        self._polled_at = -float("inf")
        self._store_down = False
        self._background = BackgroundTasks(log)

    @property
    def store_down(self) -> bool:
        """True from a `StoreUnavailable` until the next poll reaches the store."""
        return self._store_down

    def report_store_unavailable(self) -> None:
        self._store_down = True

    async def __aenter__(self) -> Self:
        self._background.start("topology watch", self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()

    async def poll_once(self) -> None:
        """Adopt the stored epoch if it is newer, then acknowledge the epoch in use."""
        try:
            stored = await self._store.get_topology()
            if stored is not None and stored[0] > self._cluster.topology.epoch:
                self._adopt(*stored)
            await self._acknowledge()
        except StoreUnavailable:
            if not self._store_down:
                log.warning("the state store is unreachable; writes are refused until it is back")
            self._store_down = True
            return
        if self._store_down:
            log.info("the state store is reachable again")
        self._store_down = False
        self._polled_at = asyncio.get_running_loop().time()

    async def ensure_fresh(self) -> None:
        """Re-read the epoch now if the last successful poll is too old to trust: a pod
        that was frozen (SIGSTOP, a long GC, a paused VM) has dropped out of the live peer
        set, so a topology change may have gone ahead without its acknowledgement, and a
        write routed with its old epoch could miss a new owner."""
        if asyncio.get_running_loop().time() - self._polled_at > self._fresh_s:
            await self.poll_once()

    async def stored(self) -> Topology:
        """The store's current topology (this pod adopts it if it is newer)."""
        stored = await self._store.get_topology()
        if stored is None:
            raise RuntimeError("the state store holds no topology")
        topology = from_document(*stored)
        self._cluster.replace_topology(topology)
        return topology

    async def publish(self, topology: Topology) -> None:
        """Store `topology` as the epoch after `topology.epoch - 1` and route with it at
        once; `StaleEpoch` when another change got there first. Other pods follow within a
        poll."""
        expected = topology.epoch - 1
        epoch = await self._store.put_topology(expected, to_document(topology))
        if epoch is None:
            stored = await self._store.get_topology()
            raise StaleEpoch(expected, None if stored is None else stored[0])
        self._cluster.replace_topology(topology)
        await self._acknowledge()

    def _adopt(self, epoch: int, document: Mapping[str, Any]) -> None:
        try:
            topology = from_document(epoch, document)
        except ValueError:
            log.exception("ignoring unreadable topology epoch %d", epoch)
            return
        previous = self._cluster.topology.epoch
        self._cluster.replace_topology(topology)
        log.info("topology epoch %d -> %d", previous, epoch)

    async def _acknowledge(self) -> None:
        value = orjson.dumps({"epoch": self._cluster.settled_epoch})
        await self._store.kv_set(kvkeys.topology_epoch(self.pod_id), value, self._ack_ttl_s)

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:
                log.exception("topology poll failed; retrying")
            await asyncio.sleep(self._poll_s)


async def acknowledged_epoch(store: Store, pod_id: str) -> int | None:
    """The epoch `pod_id` last reported routing with (None: unknown or expired)."""
    raw = await store.kv_get(kvkeys.topology_epoch(pod_id))
    return None if raw is None else int(orjson.loads(raw)["epoch"])


async def laggards(store: Store, pod_ids: Collection[str], epoch: int) -> set[str]:
    """The pods among `pod_ids` that have not acknowledged `epoch` yet."""
    behind: set[str] = set()
    for pod_id in pod_ids:
        seen = await acknowledged_epoch(store, pod_id)
        if seen is None or seen < epoch:
            behind.add(pod_id)
    return behind
