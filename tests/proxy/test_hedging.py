"""Hedged searches over real devnodes (fault injection): a node that is slow but alive no
longer holds a search for its whole delay. The slow node answers 5 s late under a 30 s node
deadline, and its health probes still succeed (so the prober never routes around it): with
hedging on, every search is complete and correct, and the metrics say a hedge to another
replica answered for the slow node and its own call was cancelled. No timing is asserted.
"""

from __future__ import annotations

import re

import pytest

from miroir_proxy.api.appkeys import CLUSTER
from miroir_proxy.cli.processes import LocalNodes
from miroir_proxy.config import HedgingConfig
from miroir_proxy.dispatch.hedging import MIN_SAMPLES, Hedging

from .devfleet import (
    ProxyClient,
    StartProxy,
    devnodes,
    eventually,
    fresh_uid,
    set_faults,
    start,
    wait_task,
)

__all__ = ["devnodes", "start"]

SLOW_NODE = 0  # n0, in group g0 (three nodes, RF=2): its shards have another replica there
DOCS = [{"id": i, "title": f"doc {i}"} for i in range(40)]
SLOW_SETTINGS = {
    "hedging": {"enabled": True, "delay_ms": 200},
    "timeouts": {"node_read_ms": 30_000, "node_write_ms": 30_000},
    # Probes wait out the delay: the node is slow, not down.
    "health": {"interval_ms": 1_000, "timeout_ms": 20_000, "unhealthy_after": 1},
    "features": {"coalesce_window_ms": 0},
}
HEDGES = re.compile(r'^miroir_hedged_reads_total\{node="(\w+)",outcome="(\w+)"\} (\S+)$', re.M)


async def hedges(client: ProxyClient) -> dict[tuple[str, str], float]:
    text = await (await client.get("/_miroir/metrics")).text()
    return {(node, outcome): float(n) for node, outcome, n in HEDGES.findall(text)}


async def all_ids(client: ProxyClient, uid: str) -> list[int]:
    response = await client.post(f"/indexes/{uid}/search", json={"q": "", "limit": 1000})
    assert response.status == 200, await response.text()
    assert "X-Miroir-Degraded" not in response.headers
    return sorted(hit["id"] for hit in (await response.json())["hits"])


async def test_a_slow_node_is_hedged_and_cancelled(start: StartProxy, devnodes: LocalNodes) -> None:
    uid = fresh_uid("hedge")
    slow = devnodes.nodes[SLOW_NODE].url
    async with start(**SLOW_SETTINGS) as client:
        task = await wait_task(client, await client.post(f"/indexes/{uid}/documents", json=DOCS))
        assert task["status"] == "succeeded", task
        await set_faults(slow, delayMs=5_000)
        try:
            # Searches alternate between the groups and rotate replicas; poll until one had
            # to go through the slow node, checking every answer on the way.
            async def hedged_around_slow_node() -> bool:
                assert await all_ids(client, uid) == [d["id"] for d in DOCS]
                return (await hedges(client)).get(("n0", "hedge_won"), 0) >= 1

            await eventually(hedged_around_slow_node, "a search hedged around n0")
        finally:
            await set_faults(slow, delayMs=0)
        counts = await hedges(client)
        # The slow node never won (its call was cancelled each time), and nothing failed.
        assert counts.get(("n0", "primary_won"), 0) == 0
        assert not [key for key in counts if key[1] == "failed"]


async def test_hedging_off_waits_for_the_slow_node(start: StartProxy, devnodes: LocalNodes) -> None:
    uid = fresh_uid("nohedge")
    slow = devnodes.nodes[SLOW_NODE].url
    settings = {**SLOW_SETTINGS, "hedging": {"enabled": False}}
    async with start(**settings) as client:
        task = await wait_task(client, await client.post(f"/indexes/{uid}/documents", json=DOCS))
        assert task["status"] == "succeeded", task
        await set_faults(slow, delayMs=1_000)
        try:
            for _ in range(4):
                assert await all_ids(client, uid) == [d["id"] for d in DOCS]
        finally:
            await set_faults(slow, delayMs=0)
        assert await hedges(client) == {}


def test_the_p95_delay_follows_the_nodes_own_calls() -> None:
    hedging = Hedging(HedgingConfig(enabled=True, delay_ms="p95", min_delay_ms=20))
    assert hedging.delay_s("n0") == pytest.approx(0.020)  # no data yet: the floor
    for i in range(MIN_SAMPLES * 5):
        hedging.observe("n0", 0.5 if i % 10 == 0 else 0.1)  # 10 % of calls take 500 ms
        hedging.observe("n1", 0.001)
    assert hedging.delay_s("n0") == pytest.approx(0.5)
    assert hedging.delay_s("n1") == pytest.approx(0.020)  # fast node: the floor wins
    fixed = Hedging(HedgingConfig(enabled=True, delay_ms=150))
    fixed.observe("n0", 3.0)
    assert fixed.delay_s("n0") == pytest.approx(0.150)


async def test_a_listing_is_never_hedged(start: StartProxy, devnodes: LocalNodes) -> None:
    # Every page of a listing reads the same replicas (they may order a shard differently):
    # a hedge would answer from another one, so a slow node there is waited for.
    uid = fresh_uid("hedgelist")
    async with start(**SLOW_SETTINGS) as client:
        task = await wait_task(client, await client.post(f"/indexes/{uid}/documents", json=DOCS))
        assert task["status"] == "succeeded", task
        pinned = client.app[CLUSTER].covering(8, pinned=True)  # devfleet's S=8
        slow = pinned.assignments[0].node_id
        before = await hedges(client)
        await set_faults(devnodes.urls[int(slow.removeprefix("n"))], delayMs=1_000)
        try:
            response = await client.get(f"/indexes/{uid}/documents?limit=100")
            assert response.status == 200, await response.text()
            ids = sorted(d["id"] for d in (await response.json())["results"])
        finally:
            await set_faults(devnodes.urls[int(slow.removeprefix("n"))], delayMs=0)
        assert ids == [d["id"] for d in DOCS]
        assert await hedges(client) == before
