"""The index catalog: what the proxy must know about each index, cached in memory.

The store holds one `IndexMeta` per index (shard count fixed at creation, primary key,
creation date); the nodes hold everything else. Decisions worth knowing:

- An index enters the catalog when its creation is *enqueued*, not when it finishes. Every
  node processes its queue in order, so a document batch or a settings change sent right
  after the creation lands after it on every node; waiting would only add latency.
- `settings(uid)` is the node-side settings of one live node, cached. A settings write
  through this proxy calls `invalidate(uid, pending_task=...)`; until that Miroir task is
  finished every call reads a node afresh, so a search never runs on settings older than
  the last write it could have waited for. Entries also expire, for writes made by
  another proxy pod.
- What the nodes search is Miroir's choice: `_miroir_*` fields must never match a query
  (a query `2` would match every document of shard 2). The nodes keep the client's
  `searchableAttributes`; while that is `["*"]`, every search sent to a node names the
  index's known fields in `attributesToSearchOn` (`search_fields`), which restricts what
  matches without changing attribute ranking (the node's `["*"]` weights stay). The known
  fields are the store's record of every top-level field a write brought
  (`note_fields`, before the write's documents are sent); a pod reads it again at most
  `META_TTL_S` after another pod added a field, as it does the index metadata.
- When the store cannot be reached, reads go on with what the cache last knew (expired
  or not), so searches survive a store outage; writes fail on their own store calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from typing import Any

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.pk import EXPIRES_FIELD, RESERVED_PREFIX
from miroir_proxy.state.store import (
    IndexFields,
    IndexMeta,
    NodeTaskRef,
    Store,
    StoreUnavailable,
)

from .broadcast import NodeRefused, broadcast, first_refusal, raise_refusal, read_any
from .cluster import Cluster
from .stats import get_each, stats_nodes

SHARD_FIELD = "_miroir_shard"
# Filterable on every node besides the client's choice, never shown in the client's settings.
NODE_FILTERABLE = (EXPIRES_FIELD, SHARD_FIELD)
META_TTL_S = 2.0
# Store keys (kv) of the settings two-phase commit (`operations.settingsync`).
FOREVER_S = 10 * 365 * 86_400.0


def frozen_key(uid: str) -> str:
    """JSON `{"reason": ...}` while writes to `uid` are frozen; `{}` otherwise."""
    return f"settings-frozen:{uid}"


def intended_key(uid: str) -> str:
    """JSON of the node-side settings Miroir intends every node of `uid` to hold."""
    return f"settings-intended:{uid}"


def busy_key(uid: str) -> str:
    """Set while a settings change of `uid` may still be reaching the nodes (the drift
    pass leaves the index alone)."""
    return f"settings-busy:{uid}"


SETTINGS_TTL_S = 10.0


def index_not_found(uid: str) -> MiroirError:
    return MiroirError("index_not_found", f"Index `{uid}` not found.")


def with_shard_field(filterable: list[Any] | None) -> list[Any]:
    """`filterableAttributes` as the nodes must hold them: the client's plus `_miroir_shard`
    and `_miroir_expires_at`."""
    items = list(filterable or [])
    items.extend(name for name in NODE_FILTERABLE if name not in items)
    return items


def with_shard_displayed(displayed: Any) -> Any:
    """`displayedAttributes` as the nodes must hold them: hits must carry `_miroir_shard`,
    which the search merge breaks ties by. Anything but a list of names is left for the
    nodes to judge, with the client's item positions unchanged."""
    if (
        isinstance(displayed, list)
        and "*" not in displayed
        and SHARD_FIELD not in displayed
        and all(isinstance(name, str) for name in displayed)
    ):
        return [*displayed, SHARD_FIELD]
    return displayed


def check_searchable(searchable: Any) -> None:
    """A client's `searchableAttributes` may not name a `_miroir_*` field."""
    if isinstance(searchable, list):
        for name in searchable:
            if isinstance(name, str) and name.startswith(RESERVED_PREFIX):
                raise MiroirError(
                    "invalid_settings_searchable_attributes",
                    f"Invalid value at `.searchableAttributes`: the field `{name}` is reserved: "
                    f"fields starting with `{RESERVED_PREFIX}` belong to Miroir.",
                )


def node_settings(update: dict[str, Any]) -> dict[str, Any]:
    """A client's settings (update) as the nodes get it: `_miroir_shard` and
    `_miroir_expires_at` stay filterable, `_miroir_shard` displayed, and no `_miroir_*`
    field is made searchable."""
    check_searchable(update.get("searchableAttributes"))
    if "filterableAttributes" in update:
        value = update["filterableAttributes"]
        if value is None or isinstance(value, list):
            update = {**update, "filterableAttributes": with_shard_field(value)}
    if "displayedAttributes" in update:
        update = {
            **update,
            "displayedAttributes": with_shard_displayed(update["displayedAttributes"]),
        }
    return update


def visible(settings: dict[str, Any]) -> dict[str, Any]:
    """A node's settings as the client may see them (without `_miroir_shard` and
    `_miroir_expires_at`)."""
    for key in ("filterableAttributes", "displayedAttributes"):
        names = settings.get(key)
        if isinstance(names, list) and any(name in names for name in NODE_FILTERABLE):
            settings = {**settings, key: [f for f in names if f not in NODE_FILTERABLE]}
    return settings


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


class Catalog:
    def __init__(self, store: Store, cluster: Cluster) -> None:
        self._store = store
        self._cluster = cluster
        self._meta: dict[str, tuple[float, IndexMeta]] = {}
        self._settings: dict[str, tuple[float, dict[str, Any]]] = {}
        self._pending: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # uid -> (expiry, the index's known top-level fields, never `_miroir_*`)
        self._fields: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._frozen: dict[str, tuple[float, str | None]] = {}
        self._field_locks: dict[str, asyncio.Lock] = {}

    async def get(self, uid: str) -> IndexMeta | None:
        cached = self._meta.get(uid)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            meta = await self._store.get_index(uid)
        except StoreUnavailable:
            if cached is None:
                raise
            return cached[1]
        self._remember(uid, meta)
        return meta

    async def require(self, uid: str) -> IndexMeta:
        meta = await self.get(uid)
        if meta is None:
            raise index_not_found(uid)
        return meta

    async def indexes(self) -> list[IndexMeta]:
        metas = await self._store.list_indexes()
        for meta in metas:
            self._remember(meta.uid, meta)
        return metas

    async def register(self, uid: str, primary_key: str | None) -> IndexMeta | None:
        """Record a new index with today's default shard count; None if it already exists."""
        meta = IndexMeta(uid, self._cluster.topology.shards, primary_key, utc_now())
        if not await self._store.put_index(meta, only_new=True):
            self._meta.pop(uid, None)
            return None
        self._remember(uid, meta)
        return meta

    async def forget(self, uid: str) -> None:
        await self._store.delete_index(uid)
        await self._store.put_fields(uid, None)
        for key in (frozen_key(uid), intended_key(uid)):
            await self._store.kv_set(key, b"{}", FOREVER_S)
        self._frozen.pop(uid, None)
        self._meta.pop(uid, None)
        self._fields.pop(uid, None)
        self._drop_settings(uid)

    async def frozen_reason(self, uid: str) -> str | None:
        """Why writes to `uid` are frozen (settings the nodes do not agree on), or None."""
        cached = self._frozen.get(uid)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        raw = await self._store.kv_get(frozen_key(uid))
        reason = None
        if raw:
            value = json.loads(raw)
            if isinstance(value, dict) and isinstance(value.get("reason"), str):
                reason = value["reason"]
        self._frozen[uid] = (time.monotonic() + META_TTL_S, reason)
        return reason

    async def set_frozen(self, uid: str, reason: str | None) -> None:
        body = {} if reason is None else {"reason": reason}
        await self._store.kv_set(frozen_key(uid), json.dumps(body).encode(), FOREVER_S)
        self._frozen[uid] = (time.monotonic() + META_TTL_S, reason)

    async def check_writable(self, uid: str) -> None:
        """Raise `miroir_settings_frozen` while writes to `uid` are frozen."""
        reason = await self.frozen_reason(uid)
        if reason is not None:
            raise MiroirError(
                "miroir_settings_frozen",
                f"Writes to index `{uid}` are frozen: {reason} Bring the node back and run "
                "`POST /_miroir/maintenance/settings-drift`, or update the settings again.",
            )

    async def note_fields(self, uid: str, names: Collection[str]) -> None:
        """Record the top-level `names` of a batch about to be sent. Cheap when this pod
        already knows them all: one set difference, no store call."""
        cached = self._fields.get(uid)
        known = frozenset(cached[1]) if cached is not None else frozenset()
        new = [n for n in names if n not in known and not n.startswith(RESERVED_PREFIX)]
        if not new:
            return
        if cached is None and not (await self._store.add_fields(uid, ())).fields:
            await self._seed_fields(uid)
        record = await self._store.add_fields(uid, sorted(new))
        self._fields[uid] = (time.monotonic() + META_TTL_S, record.fields)

    async def _seed_fields(self, uid: str) -> IndexFields:
        """Record the fields the nodes already hold (an index written before Miroir
        recorded fields): the union of one group's `fieldDistribution`s."""
        nodes, _ = stats_nodes(self._cluster)
        answers = await get_each(self._cluster, nodes, f"/indexes/{uid}/stats")
        names: dict[str, None] = {}
        for answer in answers.values():
            for name in answer.get("fieldDistribution") or {}:
                if isinstance(name, str) and not name.startswith(RESERVED_PREFIX):
                    names.setdefault(name)
        return await self._store.add_fields(uid, sorted(names))

    async def search_fields(self, uid: str) -> tuple[str, ...] | None:
        """The fields a search may match while the client's searchable list is `["*"]`;
        None when none is known (an index written before Miroir recorded fields): then
        the nodes search every field."""
        cached = self._fields.get(uid)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1] or None
        # One refresh at a time: a burst of searches must not each read the store.
        lock = self._field_locks.setdefault(uid, asyncio.Lock())
        async with lock:
            cached = self._fields.get(uid)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1] or None
            try:
                record = await self._store.add_fields(uid, ())
                if not record.fields:
                    record = await self._seed_fields(uid)
            except StoreUnavailable:
                if cached is None:
                    return None
                return cached[1] or None
            cached = (time.monotonic() + META_TTL_S, record.fields)
            self._fields[uid] = cached
        return cached[1] or None

    async def ensure(
        self, uid: str, primary_key: str | None = None
    ) -> tuple[IndexMeta, list[NodeTaskRef]]:
        """The index's metadata, creating the index on every node first if it is unknown.

        Returns the node tasks of the creation (empty when the index existed): the
        `_miroir_shard` settings task of each node, the last thing the creation enqueues.
        A node that refuses rolls the creation back and raises.
        """
        meta = await self.get(uid)
        if meta is not None:
            return meta, []
        lock = self._locks.setdefault(uid, asyncio.Lock())
        try:
            async with lock:
                meta = await self.get(uid)
                if meta is not None:
                    return meta, []
                return await self._create(uid, primary_key)
        finally:
            if not lock.locked():
                self._locks.pop(uid, None)

    async def _create(
        self, uid: str, primary_key: str | None
    ) -> tuple[IndexMeta, list[NodeTaskRef]]:
        created = await self.create(uid, {"uid": uid, "primaryKey": primary_key})
        if created is None:
            return await self.require(uid), []
        return created[0], created[2]

    async def create(
        self, uid: str, body: dict[str, Any]
    ) -> tuple[IndexMeta, list[NodeTaskRef], list[NodeTaskRef]] | None:
        """Register `uid` and send the creation `body` to every node; None if the index is
        already known. Returns the metadata, each node's creation task and settings task."""
        primary_key = body.get("primaryKey")
        meta = await self.register(uid, primary_key if isinstance(primary_key, str) else None)
        if meta is None:
            return None
        try:
            creation_tasks, settings_tasks = await create_on_nodes(self._cluster, uid, body)
        except BaseException:
            await self.forget(uid)
            raise
        return meta, creation_tasks, settings_tasks

    async def rename(self, old: str, new: str) -> None:
        meta = await self.get(old)
        if meta is None:
            return
        await self._store.put_index(IndexMeta(new, meta.shards, meta.primary_key, meta.created_at))
        await self._store.put_fields(new, await self._store.add_fields(old, ()))
        await self._move_settings_records({new: old})
        self._meta.pop(new, None)
        self._fields.pop(new, None)
        await self.forget(old)

    async def swap(self, first: str, second: str) -> None:
        a, b = await self.get(first), await self.get(second)
        if a is None or b is None:
            return
        await self._store.put_index(IndexMeta(first, b.shards, b.primary_key, b.created_at))
        await self._store.put_index(IndexMeta(second, a.shards, a.primary_key, a.created_at))
        fields_a, fields_b = (
            await self._store.add_fields(first, ()),
            await self._store.add_fields(second, ()),
        )
        await self._store.put_fields(first, fields_b)
        await self._store.put_fields(second, fields_a)
        await self._move_settings_records({first: second, second: first})
        for uid in (first, second):
            self._meta.pop(uid, None)
            self._fields.pop(uid, None)
            self._drop_settings(uid)

    async def _move_settings_records(self, moves: dict[str, str]) -> None:
        """Give each index `to` the settings records (intended, frozen) of `moves[to]` (the
        drift pass leaves a node alone while it still has the swap task)."""
        records = {
            source: [await self._store.kv_get(key(source)) for key in (intended_key, frozen_key)]
            for source in set(moves.values())
        }
        for target, source in moves.items():
            for key, value in zip((intended_key, frozen_key), records[source], strict=True):
                await self._store.kv_set(key(target), value or b"{}", FOREVER_S)
            self._frozen.pop(target, None)

    async def set_primary_key(self, uid: str, primary_key: str) -> None:
        meta = await self.require(uid)
        if meta.primary_key == primary_key:
            return
        updated = IndexMeta(meta.uid, meta.shards, primary_key, meta.created_at)
        await self._store.put_index(updated)
        self._remember(uid, updated)

    async def settings(self, uid: str) -> dict[str, Any]:
        """The node-side settings of `uid` (with `_miroir_shard`), from one live node."""
        cached = self._settings.get(uid)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        settled = await self._settled(uid)
        response = await read_any(self._cluster, "GET", f"/indexes/{uid}/settings")
        if response.status == 404:
            raise index_not_found(uid)
        if not response.ok:
            raise NodeRefused(response)
        body: dict[str, Any] = response.json()
        if settled:
            self._settings[uid] = (time.monotonic() + SETTINGS_TTL_S, body)
        return body

    def invalidate(self, uid: str, *, pending_task: int | None = None) -> None:
        """Forget cached settings; with `pending_task`, do not cache again until that Miroir
        task has finished."""
        self._drop_settings(uid)
        if pending_task is not None:
            self._pending[uid] = pending_task

    def settings_version(self, uid: str) -> int:
        """Changes whenever this pod changes `uid`'s settings (query coalescing keys on it)."""
        return self._versions.get(uid, 0)

    def _drop_settings(self, uid: str) -> None:
        self._settings.pop(uid, None)
        self._versions[uid] = self._versions.get(uid, 0) + 1

    async def _settled(self, uid: str) -> bool:
        pending = self._pending.get(uid)
        if pending is None:
            return True
        try:
            task = await self._store.get_task(pending)
        except StoreUnavailable:
            return False
        if task is not None and not task.finished:
            return False
        self._pending.pop(uid, None)
        return True

    def _remember(self, uid: str, meta: IndexMeta | None) -> None:
        if meta is None:
            self._meta.pop(uid, None)
        else:
            self._meta[uid] = (time.monotonic() + META_TTL_S, meta)


async def create_on_nodes(
    cluster: Cluster, uid: str, body: dict[str, Any]
) -> tuple[list[NodeTaskRef], list[NodeTaskRef]]:
    """Create `uid` on every node and make `_miroir_shard` filterable there.

    If any node refuses or cannot be reached, the index is deleted again on the nodes that
    accepted and the refusal is raised. Returns each node's creation task and settings task.
    """
    created = await broadcast(cluster, "POST", "/indexes", json_body=body)
    refusal = first_refusal(created)
    if refusal is not None:
        accepted = [o.target for o in created if o.accepted]
        if accepted:
            await broadcast(cluster, "DELETE", f"/indexes/{uid}", only=accepted)
        raise_refusal(refusal)
    patched = await broadcast(
        cluster,
        "PATCH",
        f"/indexes/{uid}/settings",
        json_body={"filterableAttributes": list(NODE_FILTERABLE)},
    )
    return [o.task_ref() for o in created], [o.task_ref() for o in patched]
