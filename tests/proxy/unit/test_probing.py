"""HealthProber thresholds, request-path reports, topology changes and its supervised loop,
driven by a loopback /health server whose answer the test controls."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from miroir_proxy.config import HealthConfig
from miroir_proxy.core.topology import Node
from miroir_proxy.nodes.client import NodeClient
from miroir_proxy.nodes.probing import HealthProber, HealthState, NodeHealth

Transition = tuple[str, HealthState, HealthState]


class HealthServer:
    """A node whose /health answers 200 or 500 (Meilisearch's `mustRestart`) on demand."""

    def __init__(self) -> None:
        self.up = True
        self.hits = 0
        self.url = ""
        app = web.Application()
        app.router.add_get("/health", self._health)
        self._server = TestServer(app)

    async def _health(self, _: web.Request) -> web.Response:
        self.hits += 1
        if self.up:
            return web.json_response({"status": "available"})
        return web.json_response({"status": "mustRestart"}, status=500)

    async def __aenter__(self) -> HealthServer:
        await self._server.start_server()
        self.url = str(self._server.make_url("")).rstrip("/")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._server.close()


@pytest.fixture
async def client() -> AsyncIterator[NodeClient]:
    async with NodeClient(master_key=None, connect_timeout_ms=500) as nodes:
        yield nodes


@pytest.fixture
async def node() -> AsyncIterator[HealthServer]:
    async with HealthServer() as server:
        yield server


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def config(**overrides: int) -> HealthConfig:
    return HealthConfig(**{"interval_ms": 20, "timeout_ms": 500, **overrides})


async def test_thresholds_flip_state_both_ways(client: NodeClient, node: HealthServer) -> None:
    seen: list[Transition] = []
    prober = HealthProber(
        client,
        lambda: [Node("n1", node.url)],
        config(unhealthy_after=3, healthy_after=2),
        on_change=lambda *t: seen.append(t),
    )
    assert prober.is_healthy("n1")  # unknown counts as healthy
    await prober.probe_once()
    assert prober.snapshot() == {"n1": NodeHealth(HealthState.HEALTHY, 0, 1, None)}

    node.up = False
    for _ in range(2):
        await prober.probe_once()
        assert prober.is_healthy("n1")
    await prober.probe_once()
    assert not prober.is_healthy("n1")
    health = prober.snapshot()["n1"]
    assert (health.state, health.consecutive_failures) == (HealthState.UNHEALTHY, 3)
    assert health.last_error is not None
    assert "500" in health.last_error
    assert "mustRestart" in health.last_error

    node.up = True
    await prober.probe_once()
    assert not prober.is_healthy("n1")
    await prober.probe_once()
    assert prober.is_healthy("n1")
    assert node.hits == 6
    assert seen == [
        ("n1", HealthState.UNKNOWN, HealthState.HEALTHY),
        ("n1", HealthState.HEALTHY, HealthState.UNHEALTHY),
        ("n1", HealthState.UNHEALTHY, HealthState.HEALTHY),
    ]


async def test_a_success_resets_the_failure_streak(client: NodeClient, node: HealthServer) -> None:
    prober = HealthProber(client, lambda: [Node("n1", node.url)], config(unhealthy_after=2))
    for up in (False, True, False, True):
        node.up = up
        await prober.probe_once()
        assert prober.is_healthy("n1")


async def test_unreachable_node_goes_down_with_the_reason(client: NodeClient) -> None:
    prober = HealthProber(client, lambda: [Node("gone", refused_url())], config(unhealthy_after=1))
    await prober.probe_once()
    health = prober.snapshot()["gone"]
    assert health.state is HealthState.UNHEALTHY
    assert health.last_error is not None
    assert "/health" in health.last_error


async def test_request_path_reports_act_without_a_probe(
    client: NodeClient, node: HealthServer
) -> None:
    prober = HealthProber(client, lambda: [Node("n1", node.url)], config(unhealthy_after=2))
    prober.report_failure("n1", "search timed out")
    assert prober.is_healthy("n1")
    prober.report_failure("n1", "search timed out")
    assert not prober.is_healthy("n1")
    assert prober.snapshot()["n1"].last_error == "search timed out"
    prober.report_success("n1")
    assert prober.is_healthy("n1")
    assert node.hits == 0


async def test_nodes_leaving_the_topology_are_forgotten(
    client: NodeClient, node: HealthServer
) -> None:
    topology = [Node("a", node.url), Node("b", node.url)]
    prober = HealthProber(client, lambda: topology, config())
    await prober.probe_once()
    assert set(prober.snapshot()) == {"a", "b"}
    topology = [Node("b", node.url), Node("c", node.url)]
    await prober.probe_once()
    assert set(prober.snapshot()) == {"b", "c"}


async def test_loop_tracks_a_node_going_down_and_up(client: NodeClient, node: HealthServer) -> None:
    changes: asyncio.Queue[Transition] = asyncio.Queue()
    async with HealthProber(
        client,
        lambda: [Node("n1", node.url)],
        config(unhealthy_after=2, healthy_after=2),
        on_change=lambda *t: changes.put_nowait(t),
    ) as prober:
        assert await asyncio.wait_for(changes.get(), 2) == (
            "n1", HealthState.UNKNOWN, HealthState.HEALTHY,
        )  # fmt: skip
        node.up = False
        assert await asyncio.wait_for(changes.get(), 2) == (
            "n1", HealthState.HEALTHY, HealthState.UNHEALTHY,
        )  # fmt: skip
        assert not prober.is_healthy("n1")
        node.up = True
        assert await asyncio.wait_for(changes.get(), 2) == (
            "n1", HealthState.UNHEALTHY, HealthState.HEALTHY,
        )  # fmt: skip


async def test_loop_survives_a_crash_and_logs_it(
    client: NodeClient, node: HealthServer, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def flaky_topology() -> list[Node]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("topology store unreachable")
        return [Node("n1", node.url)]

    healthy = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="miroir_proxy.nodes.probing"):
        async with HealthProber(
            client, flaky_topology, config(), on_change=lambda *_: healthy.set()
        ):
            await asyncio.wait_for(healthy.wait(), 2)
    (record,) = caplog.records
    assert "health prober died" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_stop_cancels_a_probe_in_flight(client: NodeClient) -> None:
    release = asyncio.Event()
    probing = asyncio.Event()

    async def hanging_health(_: web.Request) -> web.Response:
        probing.set()
        await release.wait()
        return web.json_response({"status": "available"})

    app = web.Application()
    app.router.add_get("/health", hanging_health)
    async with TestServer(app) as server:
        url = str(server.make_url("")).rstrip("/")
        prober = HealthProber(client, lambda: [Node("n1", url)], config(timeout_ms=30_000))
        prober.start()
        try:
            await asyncio.wait_for(probing.wait(), 2)
            await asyncio.wait_for(prober.stop(), 1)
        finally:
            release.set()
        assert prober.snapshot() == {}


async def test_a_failing_listener_does_not_break_probing(
    client: NodeClient, node: HealthServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_listener(*_: object) -> None:
        raise ValueError("listener bug")

    prober = HealthProber(
        client, lambda: [Node("n1", node.url)], config(), on_change=broken_listener
    )
    with caplog.at_level(logging.ERROR, logger="miroir_proxy.nodes.probing"):
        await prober.probe_once()
    assert prober.snapshot()["n1"].state is HealthState.HEALTHY
    assert "listener failed" in caplog.records[0].getMessage()
