"""Topology changes through the admin API reach every pod; a pod that loses its store keeps
searching, refuses writes with 503, and recovers by itself.

Pods are in-process apps sharing one SQLite file, polling the epoch every 100 ms.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from miroir_proxy.api.appkeys import STORE, TOPOLOGY
from miroir_proxy.config import from_mapping
from miroir_proxy.dispatch import catalog
from miroir_proxy.dispatch.topowatch import laggards
from miroir_proxy.state.factory import open_store
from miroir_proxy.state.store import StoreUnavailable

from .conftest import Fleet, ProxyClient
from .searchfleet import BACKENDS, create_index, eventually, on_backend, proxy_app, search_fleet

TOPOLOGY_PATH = "/_miroir/topology"
PODS = ("pod-a", "pod-b", "pod-c")


def _pod_config(fleet: Fleet, tmp_path: Path, pod_id: str) -> dict[str, Any]:
    config = fleet.config(tmp_path, coordination={"pod_id": pod_id, "topology_poll_ms": 100})
    # Start with group g0 only; the test adds g1 through the admin API.
    config["replica_groups"] = config["replica_groups"][:1]
    return config


async def _topology(client: ProxyClient) -> dict[str, Any]:
    response = await client.get(TOPOLOGY_PATH)
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


def _with_group_one(current: dict[str, Any], fleet: Fleet) -> dict[str, Any]:
    group = {"id": "g1", "nodes": [{"id": n.node_id, "url": n.url} for n in fleet.groups[1]]}
    return {**current, "groups": [*current["groups"], group]}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_change_through_one_pod_is_used_by_all_within_two_seconds(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    async with search_fleet() as fleet:
        configs = [_pod_config(fleet, tmp_path, pod) for pod in PODS]
        on_backend(configs[0], backend, request)
        for config in configs[1:]:
            config["store"] = configs[0].get("store")
        async with (
            proxy_app(configs[0]) as a,
            proxy_app(configs[1]) as b,
            proxy_app(configs[2]) as c,
        ):
            current = await _topology(a)
            response = await a.put(TOPOLOGY_PATH, json=_with_group_one(current, fleet))
            assert response.status == 200, await response.text()
            published = await response.json()
            assert published["epoch"] == current["epoch"] + 1
            started = time.monotonic()

            async def everyone_moved() -> bool:
                seen = [(await _topology(pod))["epoch"] for pod in (a, b, c)]
                return seen == [published["epoch"]] * 3

            await eventually(everyone_moved, timeout_s=2.0)
            moved_s = time.monotonic() - started
            await create_index(c)
            write = await c.post("/indexes/books/documents", json=[{"id": 1}, {"id": 2}])
            assert write.status == 202
            store = open_store(from_mapping(configs[0], env={}))
            try:

                async def all_acknowledged() -> bool:
                    return not await laggards(store, PODS, published["epoch"])

                await eventually(all_acknowledged, timeout_s=2.0)
                assert await laggards(store, [*PODS, "pod-gone"], published["epoch"]) == {
                    "pod-gone"
                }
            finally:
                await store.close()
    assert moved_s < 2.0
    # Pod c routed the write with the new layout: the new group got its share.
    assert any("/documents" in r.path for node in fleet.groups[1] for r in node.writes())


async def test_a_change_based_on_a_stale_epoch_is_refused(tmp_path: Path) -> None:
    async with search_fleet() as fleet:
        config = _pod_config(fleet, tmp_path, "pod-a")
        async with proxy_app(config) as client:
            current = await _topology(client)
            assert (
                await client.put(TOPOLOGY_PATH, json=_with_group_one(current, fleet))
            ).status == 200
            again = await client.put(TOPOLOGY_PATH, json=_with_group_one(current, fleet))
            error = await again.json()
            assert again.status == 409
            assert error["code"] == "miroir_topology_epoch_stale"
            assert (await _topology(client))["epoch"] == current["epoch"] + 1


@pytest.mark.parametrize(
    "change",
    [
        {"groups": []},
        {"shards": 0},
        {"replicationFactor": 5},
        {"epoch": "1"},
        {"groups": [{"id": "g0", "nodes": [{"id": "n 1", "url": "http://x"}]}]},
        {"groups": [{"id": "g0", "state": "sleeping", "nodes": []}]},
    ],
)
async def test_an_invalid_topology_is_refused(tmp_path: Path, change: dict[str, Any]) -> None:
    async with search_fleet(groups=1, nodes_per_group=2) as fleet:
        config = _pod_config(fleet, tmp_path, "pod-a")
        async with proxy_app(config) as client:
            current = await _topology(client)
            response = await client.put(TOPOLOGY_PATH, json={**current, **change})
            assert response.status == 400
            assert (await response.json())["code"] == "miroir_invalid_topology"
            assert (await _topology(client))["epoch"] == current["epoch"]


class Outage:
    """Makes every call of one store instance raise `StoreUnavailable` while `down`."""

    def __init__(self, store: Any) -> None:
        self.down = False
        for name in dir(store):
            method = getattr(store, name)
            if not name.startswith("_") and name != "close" and inspect.iscoroutinefunction(method):
                setattr(store, name, self._guard(method))

    def _guard(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailable("connection refused")
            return await method(*args, **kwargs)

        return guarded


async def test_a_pod_that_loses_its_store_searches_refuses_writes_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Index metadata expires at once: every search would ask the store if it could.
    monkeypatch.setattr(catalog, "META_TTL_S", 0.0)
    async with search_fleet() as fleet:
        config = _pod_config(fleet, tmp_path, "pod-a")
        async with proxy_app(config) as client:
            await create_index(client)
            documents = "/indexes/books/documents"
            assert (await client.post(documents, json=[{"id": 1}])).status == 202
            outage = Outage(client.app[STORE])
            watcher = client.app[TOPOLOGY]
            outage.down = True
            await eventually(lambda: watcher.store_down)
            writes_before = sum(len(n.writes()) for n in fleet.nodes)
            for headers in ({}, {"X-Miroir-Session": "s1"}):
                search = await client.post("/indexes/books/search", json={}, headers=headers)
                assert search.status == 200, await search.text()
                assert [hit["id"] for hit in (await search.json())["hits"]] == [1]
            refused = await client.post(documents, json=[{"id": 2}])
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "1"
            error = await refused.json()
            assert error["code"] == "miroir_store_unavailable"
            assert error["type"] == "system"
            assert set(error) == {"message", "code", "type", "link"}
            # Refused before any node was written: no orphan node task.
            assert sum(len(n.writes()) for n in fleet.nodes) == writes_before
            outage.down = False
            await eventually(lambda: not watcher.store_down, timeout_s=2.0)
            assert (await client.post(documents, json=[{"id": 2}])).status == 202


async def test_a_pod_frozen_past_its_ack_reads_the_epoch_again_before_it_writes(
    tmp_path: Path,
) -> None:
    # Pod a stops polling (as a SIGSTOPped pod would) while pod b adds group g1. Once a's
    # last poll is older than the peers' patience, a write through a must not be routed
    # with the layout it last saw: it re-reads the epoch first, so g1 gets its share.
    async with search_fleet() as fleet:
        coordination = {"topology_poll_ms": 100, "peer_heartbeat_ms": 100, "peer_ttl_ms": 600}
        configs = [
            {**_pod_config(fleet, tmp_path, pod), "coordination": {**coordination, "pod_id": pod}}
            for pod in PODS[:2]
        ]
        async with proxy_app(configs[0]) as a, proxy_app(configs[1]) as b:
            await create_index(a)
            frozen = a.app[TOPOLOGY]
            await frozen.__aexit__(None, None, None)  # its poll loop stops
            loop = asyncio.get_running_loop()
            stopped = loop.time()
            current = await _topology(b)
            response = await b.put(TOPOLOGY_PATH, json=_with_group_one(current, fleet))
            assert response.status == 200, await response.text()
            assert (await _topology(a))["epoch"] == current["epoch"]  # a has not seen it
            await eventually(lambda: loop.time() - stopped > 0.35)  # past a's freshness
            write = await a.post("/indexes/books/documents", json=[{"id": i} for i in range(20)])
            assert write.status == 202
            assert (await _topology(a))["epoch"] == current["epoch"] + 1
    assert any("/documents" in r.path for node in fleet.groups[1] for r in node.writes())


async def test_a_pod_acknowledges_an_epoch_only_once_its_older_writes_are_done(
    tmp_path: Path,
) -> None:
    # A write routed with epoch E is still on its way to a node when pod b publishes E+1.
    # Pod a routes new requests with E+1 at once, but it must not acknowledge E+1 before
    # that write ended: an operation waiting for every pod would otherwise copy a shard
    # while a write that misses its new owner may still land on the old one.
    async with search_fleet() as fleet:
        configs = [_pod_config(fleet, tmp_path, pod) for pod in PODS[:2]]
        async with proxy_app(configs[0]) as a, proxy_app(configs[1]) as b:
            await create_index(a)
            gate = asyncio.Event()
            for node in fleet.groups[0]:
                node.write_gate = gate
            write = asyncio.create_task(
                a.post("/indexes/books/documents", json=[{"id": i} for i in range(20)])
            )
            await eventually(lambda: all(n.held_writes for n in fleet.groups[0]))
            current = await _topology(b)
            response = await b.put(TOPOLOGY_PATH, json=_with_group_one(current, fleet))
            assert response.status == 200, await response.text()
            new_epoch = current["epoch"] + 1
            store = a.app[STORE]

            async def a_routes_with_it() -> bool:
                return (await _topology(a))["epoch"] == new_epoch

            await eventually(a_routes_with_it, timeout_s=2.0)
            await a.app[TOPOLOGY].poll_once()  # an acknowledgement after the swap
            assert await laggards(store, ["pod-a"], new_epoch) == {"pod-a"}
            gate.set()
            assert (await write).status == 202

            async def acknowledged() -> bool:
                return not await laggards(store, ["pod-a"], new_epoch)

            await eventually(acknowledged, timeout_s=2.0)
