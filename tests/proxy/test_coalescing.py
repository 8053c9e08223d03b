"""Query coalescing: identical concurrent searches on one pod share one scatter.

The proxy runs over one fake node (one group, RF 1), so one scatter is exactly one node
search; the node holds every search until the test lets it go, which makes "concurrent"
exact instead of a race.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from miroir_proxy.api.appkeys import COALESCER
from miroir_proxy.dispatch.coalescing import Coalescer, search_key

from .conftest import Fleet, ProxyClient
from .searchfleet import create_index, eventually, proxy_app, search_fleet, search_nodes

SEARCH = "/indexes/books/search"


def _config(fleet: Fleet, tmp_path: Path, **features: Any) -> dict[str, Any]:
    # One probe at start: a thousand requests in flight must not make a probe time out, nor
    # a connection to the in-process node, whose loop they share (a node seen down would
    # fail the searches these tests hold open).
    health = {"interval_ms": 60_000, "timeout_ms": 5_000}
    timeouts = {"node_connect_ms": 10_000, "node_read_ms": 30_000}
    return fleet.config(
        tmp_path, replication_factor=1, features=features, health=health, timeouts=timeouts
    )


async def _held_searches(
    client: ProxyClient, count: int, body: dict[str, Any]
) -> list[asyncio.Task[Any]]:
    async def one() -> Any:
        response = await client.post(SEARCH, json=body)
        assert response.status == 200, await response.text()
        return await response.json()

    return [asyncio.create_task(one()) for _ in range(count)]


async def test_a_thousand_identical_searches_make_one_scatter(tmp_path: Path) -> None:
    async with search_fleet(groups=1, nodes_per_group=1) as fleet:
        node = search_nodes(fleet)[0]
        config = _config(fleet, tmp_path, coalesce_window_ms=60_000)
        async with proxy_app(config) as client:
            await create_index(client)
            node.search_gate = asyncio.Event()
            coalescer = client.app[COALESCER]
            searches = await _held_searches(client, 1000, {"q": "fox", "limit": 5})
            await eventually(lambda: coalescer.subscribers() == 1000, timeout_s=30)
            node.search_gate.set()
            answers = await asyncio.gather(*searches)
    assert node.searches == 1
    assert all(a["query"] == "fox" and a["limit"] == 5 for a in answers)
    # Each subscriber gets its own answer object: request ids differ.
    assert len({a["requestUid"] for a in answers}) == 1000


async def test_switched_off_every_search_scatters(tmp_path: Path) -> None:
    async with search_fleet(groups=1, nodes_per_group=1) as fleet:
        node = search_nodes(fleet)[0]
        async with proxy_app(_config(fleet, tmp_path, coalesce_window_ms=0)) as client:
            await create_index(client)
            node.search_gate = asyncio.Event()
            searches = await _held_searches(client, 20, {"q": "fox"})
            await eventually(lambda: node.searches == 20)
            node.search_gate.set()
            await asyncio.gather(*searches)
    assert node.searches == 20


async def test_a_settings_change_starts_a_new_scatter(tmp_path: Path) -> None:
    async with search_fleet(groups=1, nodes_per_group=1) as fleet:
        node = search_nodes(fleet)[0]
        config = _config(fleet, tmp_path, coalesce_window_ms=60_000)
        async with proxy_app(config) as client:
            await create_index(client)
            node.search_gate = asyncio.Event()
            coalescer = client.app[COALESCER]
            before = await _held_searches(client, 5, {"q": "fox"})
            await eventually(lambda: coalescer.subscribers() == 5)
            response = await client.patch(
                "/indexes/books/settings", json={"searchableAttributes": ["title"]}
            )
            assert response.status == 202, await response.text()
            after = await _held_searches(client, 5, {"q": "fox"})
            await eventually(lambda: coalescer.subscribers() == 10)
            node.search_gate.set()
            await asyncio.gather(*before, *after)
    assert node.searches == 2


async def test_different_bodies_do_not_share(tmp_path: Path) -> None:
    async with search_fleet(groups=1, nodes_per_group=1) as fleet:
        node = search_nodes(fleet)[0]
        config = _config(fleet, tmp_path, coalesce_window_ms=60_000)
        async with proxy_app(config) as client:
            await create_index(client)
            node.search_gate = asyncio.Event()
            first = await _held_searches(client, 3, {"q": "fox", "limit": 5})
            # Same body with keys in another order: the same search.
            second = await _held_searches(client, 3, {"limit": 5, "q": "fox"})
            third = await _held_searches(client, 3, {"q": "dog", "limit": 5})
            await eventually(lambda: client.app[COALESCER].subscribers() == 9)
            node.search_gate.set()
            await asyncio.gather(*first, *second, *third)
    assert node.searches == 2


async def test_subscribers_per_flight_are_bounded(tmp_path: Path) -> None:
    async with search_fleet(groups=1, nodes_per_group=1) as fleet:
        node = search_nodes(fleet)[0]
        config = _config(fleet, tmp_path, coalesce_window_ms=60_000, coalesce_max_subscribers=4)
        async with proxy_app(config) as client:
            await create_index(client)
            node.search_gate = asyncio.Event()
            searches = await _held_searches(client, 10, {"q": "fox"})
            await eventually(lambda: node.searches == 3)
            node.search_gate.set()
            await asyncio.gather(*searches)
    assert node.searches == 3


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_flight_older_than_the_window_is_not_joined() -> None:
    clock = _Clock()
    coalescer: Coalescer[int] = Coalescer(50, 100, clock=clock)
    gate = asyncio.Event()
    calls = 0

    async def produce() -> int:
        nonlocal calls
        calls += 1
        mine = calls
        await gate.wait()
        return mine

    first = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    clock.now = 0.049
    joined = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    clock.now = 0.050
    late = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    gate.set()
    assert list(await asyncio.gather(first, joined, late)) == [1, 1, 2]
    assert coalescer.in_flight() == 0


async def test_one_subscriber_leaving_does_not_cancel_the_others() -> None:
    coalescer: Coalescer[str] = Coalescer(1_000, 100)
    gate = asyncio.Event()

    async def produce() -> str:
        await gate.wait()
        return "answer"

    leaving = asyncio.create_task(coalescer.run("k", produce))
    staying = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    leaving.cancel()
    gate.set()
    assert await staying == "answer"
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_a_joiner_leaving_does_not_cancel_the_flight() -> None:
    coalescer: Coalescer[str] = Coalescer(1_000, 100)
    gate = asyncio.Event()
    calls = 0

    async def produce() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "answer"

    staying = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    leaving = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await staying == "answer"
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert calls == 1


async def test_joiners_of_a_cancelled_first_caller_share_one_new_flight() -> None:
    coalescer: Coalescer[int] = Coalescer(1_000, 100)
    gate = asyncio.Event()
    calls = 0

    async def produce() -> int:
        nonlocal calls
        calls += 1
        mine = calls
        await gate.wait()
        return mine

    first = asyncio.create_task(coalescer.run("k", produce))
    await asyncio.sleep(0)
    joiners = [asyncio.create_task(coalescer.run("k", produce)) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()
    await eventually(lambda: calls == 2)
    gate.set()
    assert list(await asyncio.gather(*joiners)) == [2, 2, 2]
    assert coalescer.in_flight() == 0


async def test_a_failure_reaches_every_subscriber_and_is_not_kept() -> None:
    coalescer: Coalescer[str] = Coalescer(1_000, 100)
    gate = asyncio.Event()

    async def fail() -> str:
        await gate.wait()
        raise ValueError("node refused")

    async def succeed() -> str:
        return "ok"

    runs = [asyncio.create_task(coalescer.run("k", fail)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*runs, return_exceptions=True)
    assert all(isinstance(o, ValueError) for o in outcomes)
    assert await coalescer.run("k", succeed) == "ok"


def test_keys_ignore_key_order_but_not_values_settings_or_tenant() -> None:
    base = search_key("books", {"q": "a", "limit": 5}, 0, None)
    assert base == search_key("books", {"limit": 5, "q": "a"}, 0, None)
    assert base != search_key("books", {"q": "a", "limit": 6}, 0, None)
    assert base != search_key("films", {"q": "a", "limit": 5}, 0, None)
    assert base != search_key("books", {"q": "a", "limit": 5}, 1, None)
    assert base != search_key("books", {"q": "a", "limit": 5}, 0, "tenant = 1")
