"""What anti-entropy must remember of the deletes that went through Miroir.

A replica that missed a delete still holds the document; without a record of the delete,
anti-entropy could not tell it from a replica that missed the write, and would give the
document back. So, before any node is asked to delete (a record without a delete is
harmless: it only deletes a document once more; a delete without a record is not):
- a delete by id (or batch of ids) leaves a tombstone per id in the shared store;
- a clear-all leaves an index-wide watermark "everything written before T is deleted";
- a delete by filter leaves (T, filter), and anti-entropy asks a replica which of the
  documents it would restore match the filter (a document written before T that matches
  was meant to be deleted).
All are kept `tombstone_window_ms` (config `anti_entropy`); a replica away for longer may
give deleted documents back. Watermarks and filters are kv entries of the store: two
filter deletes of one index at the same moment from two pods may keep only one of them.
Times are milliseconds of the proxy's clock, like `_miroir_updated_at`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import orjson

from miroir_proxy.state.store import Store

_CLEARED = "anti-entropy:cleared:"
_FILTERS = "anti-entropy:filters:"


@dataclasses.dataclass(frozen=True, slots=True)
class FilterDeletion:
    at_ms: int
    filter: Any  # the client's filter, a string or an array


class DeleteLog:
    def __init__(
        self, store: Store, window_ms: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self.window_ms = window_ms
        self._clock = clock

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def ids_deleted(
        self, index_uid: str, ids_by_shard: Mapping[int, Collection[Any]]
    ) -> None:
        texts = {shard: [str(i) for i in ids] for shard, ids in ids_by_shard.items()}
        await self._store.add_tombstones(index_uid, texts, self.now_ms(), self.window_ms)

    async def cleared(self, index_uid: str) -> None:
        await self._store.kv_set(
            _CLEARED + index_uid, str(self.now_ms()).encode(), self.window_ms / 1000
        )

    async def filter_deleted(self, index_uid: str, filter_: Any) -> None:
        now = self.now_ms()
        kept = [f for f in await self.filters(index_uid) if f.at_ms > now - self.window_ms]
        kept.append(FilterDeletion(now, filter_))
        body = orjson.dumps([[f.at_ms, f.filter] for f in kept])
        await self._store.kv_set(_FILTERS + index_uid, body, self.window_ms / 1000)

    async def cleared_at(self, index_uid: str) -> int | None:
        value = await self._store.kv_get(_CLEARED + index_uid)
        return None if value is None else int(value)

    async def filters(self, index_uid: str) -> list[FilterDeletion]:
        value = await self._store.kv_get(_FILTERS + index_uid)
        if value is None:
            return []
        return [FilterDeletion(int(at), f) for at, f in orjson.loads(value)]

    async def tombstones(self, index_uid: str, shard: int) -> dict[str, int]:
        since = self.now_ms() - self.window_ms
        await self._store.prune_tombstones(index_uid, shard, since)
        return await self._store.tombstones(index_uid, shard, since)
