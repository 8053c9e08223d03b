"""The index catalog over real devnodes: creation once under concurrency, caching of
metadata and node settings, and invalidation by settings writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from miroir_proxy.cli.processes import LocalNodes
from miroir_proxy.config import from_mapping
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch.catalog import Catalog
from miroir_proxy.dispatch.cluster import Cluster, topology_from_config
from miroir_proxy.nodes.client import NodeClient
from miroir_proxy.state.sqlite import SqliteStore
from miroir_proxy.state.store import TaskRecord

from .devfleet import devnodes, eventually, fleet_config, fresh_uid, node_call, node_settings

__all__ = ["devnodes"]

Parts = tuple[Catalog, SqliteStore, Cluster]


@pytest.fixture
async def parts(devnodes: LocalNodes, tmp_path: Path) -> AsyncIterator[Parts]:
    config = from_mapping(fleet_config(devnodes, tmp_path), env={})
    store = SqliteStore(tmp_path / "catalog.sqlite3")
    async with NodeClient.from_config(config) as client:
        cluster = Cluster(config, topology_from_config(config), client)
        yield Catalog(store, cluster), store, cluster
    await store.close()


async def test_ensure_creates_once_even_when_called_concurrently(
    parts: Parts, devnodes: LocalNodes
) -> None:
    catalog, store, _ = parts
    uid = fresh_uid("ensured")
    results = await asyncio.gather(*(catalog.ensure(uid, "sku") for _ in range(5)))
    created = [refs for _, refs in results if refs]
    assert len(created) == 1 and len(created[0]) == len(devnodes.urls)
    assert {meta.shards for meta, _ in results} == {8}
    assert {meta.primary_key for meta, _ in results} == {"sku"}
    stored = await store.get_index(uid)
    assert stored is not None and stored.primary_key == "sku"

    async def everywhere() -> bool:
        answers = [await node_call(u, "GET", f"/indexes/{uid}") for u in devnodes.urls]
        return all(status == 200 and body["primaryKey"] == "sku" for status, body in answers)

    await eventually(everywhere, "the index exists with its key on every node")
    for url in devnodes.urls:
        assert (await node_settings(url, uid))["filterableAttributes"] == [
            "_miroir_expires_at",
            "_miroir_shard",
        ]
    assert (await catalog.ensure(uid))[1] == []


async def test_require_unknown_index(parts: Parts) -> None:
    catalog, _, _ = parts
    with pytest.raises(MiroirError) as caught:
        await catalog.require("nowhere")
    assert caught.value.code == "index_not_found"
    assert caught.value.message == "Index `nowhere` not found."


async def test_settings_are_cached_until_invalidated(parts: Parts, devnodes: LocalNodes) -> None:
    catalog, store, _ = parts
    uid = fresh_uid("cached")
    await catalog.ensure(uid)

    async def set_on_nodes(words: list[str]) -> None:
        for url in devnodes.urls:
            await node_call(url, "PATCH", f"/indexes/{uid}/settings", {"stopWords": words})

        async def applied() -> bool:
            return all([(await node_settings(u, uid))["stopWords"] == words for u in devnodes.urls])

        await eventually(applied, f"every node has stop words {words}")

    await set_on_nodes(["first"])
    settings = await catalog.settings(uid)
    assert settings["stopWords"] == ["first"]
    assert "_miroir_shard" in settings["filterableAttributes"]
    await set_on_nodes(["second"])
    assert (await catalog.settings(uid))["stopWords"] == ["first"], "served from the cache"

    # A settings write through the proxy is pending: every call reads a node.
    pending = TaskRecord(uid=1, index_uid=uid, type="settingsUpdate", enqueued_at="x")
    await store.create_task(pending)
    catalog.invalidate(uid, pending_task=1)
    assert (await catalog.settings(uid))["stopWords"] == ["second"]
    await set_on_nodes(["third"])
    assert (await catalog.settings(uid))["stopWords"] == ["third"]

    pending.status = "succeeded"
    await store.save_task(pending)
    assert (await catalog.settings(uid))["stopWords"] == ["third"]
    await set_on_nodes(["fourth"])
    assert (await catalog.settings(uid))["stopWords"] == ["third"], "cached again once settled"
    catalog.invalidate(uid)
    assert (await catalog.settings(uid))["stopWords"] == ["fourth"]


async def test_primary_key_and_forget(parts: Parts) -> None:
    catalog, store, cluster = parts
    uid = fresh_uid("keyed")
    await catalog.ensure(uid)
    await catalog.set_primary_key(uid, "isbn")
    again = Catalog(store, cluster)  # a second pod sharing the store
    meta = await again.require(uid)
    assert meta.primary_key == "isbn"
    await catalog.forget(uid)
    assert await catalog.get(uid) is None
