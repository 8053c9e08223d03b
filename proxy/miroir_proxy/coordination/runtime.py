"""One pod's coordination: peer heartbeats, Mode A ownership, task pruning, the job worker
and the queue-depth gauge, as supervised background loops started and stopped together.

`pod_id` names the pod in the peer set and stays stable across restarts of the same pod
(so ownership does not move); lease and claim tokens add a per-process suffix, because a
restarted process must never inherit its predecessor's leases or chunk claims.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, NoReturn, Self

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.config import CoordinationConfig
from miroir_proxy.state.store import Store, StoreUnavailable

from .leasing import LeaseKeeper
from .ownership import Ownership
from .peers import PeerSet
from .pruning import TaskPruner
from .queueing import Handler, JobQueue, Worker

log = logging.getLogger(__name__)


def default_pod_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Coordination:
    """Use as `async with Coordination(store, config.coordination):`."""

    def __init__(
        self, store: Store, config: CoordinationConfig, *, pod_id: str | None = None
    ) -> None:
        self.pod_id = pod_id or config.pod_id or default_pod_id()
        self.token = f"{self.pod_id}/{secrets.token_hex(4)}"
        self.queue_depth = 0
        self._store = store
        self._config = config
        self.peers = PeerSet(
            store,
            self.pod_id,
            heartbeat_ms=config.peer_heartbeat_ms,
            ttl_ms=config.peer_ttl_ms,
            info={"token": self.token, "pid": os.getpid()},
        )
        self.ownership = Ownership(self.pod_id, lambda: self.peers.live)
        self.queue = JobQueue(store)
        self.worker = Worker(
            self.queue,
            self.token,
            claim_ttl_ms=config.job_claim_ttl_ms,
            poll_ms=config.peer_heartbeat_ms,
            concurrency=config.job_concurrency,
        )
        self.pruner = TaskPruner(
            store,
            self.ownership,
            retention_s=config.task_retention_s,
            interval_ms=config.task_prune_interval_ms,
        )
        self._background = BackgroundTasks(log)

    @property
    def in_progress(self) -> int:
        """Chunks this pod is processing now (`miroir_jobs_in_progress`)."""
        return self.worker.in_progress

    def owns(self, key: str) -> bool:
        return self.ownership.owns(key)

    def lease(self, scope: str) -> LeaseKeeper:
        """A keeper of lease `scope` for this process, with the configured TTL and renewal."""
        return LeaseKeeper(
            self._store,
            scope,
            self.token,
            ttl_ms=self._config.lease_ttl_ms,
            renew_ms=self._config.lease_renew_ms,
        )

    def register(self, kind: str, handler: Handler) -> None:
        self.worker.register(kind, handler)

    async def refresh_queue_depth(self) -> int:
        self.queue_depth = await self._store.queue_depth()
        return self.queue_depth

    async def _watch_queue(self) -> NoReturn:
        while True:
            try:
                await self.refresh_queue_depth()
            except StoreUnavailable as e:
                log.warning("queue depth not refreshed: %s", e)
            await asyncio.sleep(self._config.peer_heartbeat_ms / 1000)

    async def __aenter__(self) -> Self:
        # One heartbeat before serving, so ownership starts from the real peer set; a store
        # that is down now is retried by the loop instead of failing startup.
        try:
            await self.peers.beat()
        except StoreUnavailable as e:
            log.warning("first peer heartbeat failed: %s", e)
        restart_s = self._config.peer_heartbeat_ms / 1000
        loops: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("peer heartbeat", self.peers.run),
            ("task pruning", self.pruner.run),
            ("queue depth", self._watch_queue),
        ]
        if self._config.job_concurrency:
            loops.append(("job worker", self.worker.run))
        for name, loop in loops:
            self._background.start(name, loop, restart_s=restart_s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
        await self.peers.leave()
