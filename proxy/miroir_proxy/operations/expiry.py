"""The TTL sweep: documents whose `_miroir_expires_at` (ms since the epoch) has passed are
deleted through the normal write path, so every replica of their shard loses them.

Searches already hide an expired document (`dispatch.reads.unexpired`); the sweep only
reclaims the space. One pass finds at most `max_deletes_per_sweep` expired documents of an
index with a search (also bounded by the index's `pagination.maxTotalHits`) and deletes them
by id as one `documentDeletion` task; an index with nothing expired gets no task. The
periodic pass is Mode A: each pod sweeps the indexes it owns (`ttl:<uid>`), so a brief
double ownership while the peer set changes only deletes the same ids twice (a no-op).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn, Self

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.config import TtlConfig
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.pk import EXPIRES_FIELD, DocumentError, document_id
from miroir_proxy.dispatch import reads
from miroir_proxy.dispatch.broadcast import NodeRefused
from miroir_proxy.dispatch.catalog import Catalog
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.dispatch.writes import DocumentWriter
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import StoreUnavailable

log = logging.getLogger(__name__)


def expired(now_ms: int) -> str:
    return f"{EXPIRES_FIELD} <= {now_ms}"


@dataclasses.dataclass(frozen=True, slots=True)
class SweptIndex:
    index_uid: str
    expired: int
    task_uid: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "indexUid": self.index_uid,
            "expiredDocuments": self.expired,
            "taskUid": self.task_uid,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


class TtlSweeper:
    def __init__(
        self,
        cluster: Cluster,
        catalog: Catalog,
        writer: DocumentWriter,
        config: TtlConfig,
        owns: Callable[[str], bool],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cluster = cluster
        self._catalog = catalog
        self._writer = writer
        self._config = config
        self._owns = owns
        self._clock = clock
        self._background = BackgroundTasks(log)

    async def sweep(self, *, owned_only: bool) -> list[SweptIndex]:
        """One pass over every index (or this pod's own); returns what each one deleted."""
        now_ms = int(self._clock() * 1000)
        swept = []
        for meta in await self._catalog.indexes():
            if owned_only and not self._owns(f"ttl:{meta.uid}"):
                continue
            try:
                swept.append(await self._sweep_index(meta.uid, now_ms))
            except (MiroirError, NodeRefused, NodeError, StoreUnavailable) as e:
                log.warning("TTL sweep of index %r failed: %s", meta.uid, e)
                swept.append(SweptIndex(meta.uid, 0, error=str(e)))
        return swept

    async def _sweep_index(self, uid: str, now_ms: int) -> SweptIndex:
        meta = await self._catalog.require(uid)
        settings = await self._catalog.settings(uid)
        names = settings.get("filterableAttributes")
        if meta.primary_key is None or not isinstance(names, list) or EXPIRES_FIELD not in names:
            # Nothing written yet, or an index from before TTL: no document can expire.
            return SweptIndex(uid, 0)
        view = reads.IndexView(uid, meta.shards, meta.primary_key, settings, hide_expired=False)
        body = {
            "q": "",
            "filter": expired(now_ms),
            "limit": self._config.max_deletes_per_sweep,
            "attributesToRetrieve": [meta.primary_key],
        }
        found = await reads.search(self._cluster, view, body)
        ids = []
        for hit in found.body.get("hits", []):
            try:
                ids.append(document_id(hit, meta.primary_key))
            except DocumentError:
                continue
        if not ids:
            return SweptIndex(uid, 0)
        result = await self._writer.delete_ids(uid, ids)
        return SweptIndex(uid, len(ids), result.task.uid)

    async def run(self) -> NoReturn:
        while True:
            await asyncio.sleep(self._config.interval_ms / 1000)
            swept = await self.sweep(owned_only=True)
            count = sum(s.expired for s in swept)
            if count:
                log.info("TTL sweep deleted %d expired documents", count)

    async def __aenter__(self) -> Self:
        if self._config.enabled:
            self._background.start("ttl sweep", self.run, restart_s=self._config.interval_ms / 1000)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
