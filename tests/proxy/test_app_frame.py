"""The proxy app's frame: components start and stop, admin routes, error shapes."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from miroir_proxy.api.app import make_app
from miroir_proxy.config import from_mapping

from ..redis_server import RedisServer
from .devfleet import eventually

PROBE_INTERVAL_S = 0.05
ADMIN = {"Authorization": "Bearer admin-key"}


def config(tmp_path: Path, **extra: object) -> dict[str, object]:
    # Port 9 (discard) on loopback is closed: these nodes refuse every connection.
    return {
        "shards": 8,
        "replication_factor": 1,
        "replica_groups": [
            {"id": "g0", "nodes": [{"id": "n0", "url": "http://127.0.0.1:9"}]},
        ],
        "admin_key": "admin-key",
        "state_path": str(tmp_path / "state.sqlite3"),
        "health": {"interval_ms": 50, "timeout_ms": 50, "unhealthy_after": 1},
        **extra,
    }


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[object, object]]:
    app = make_app(from_mapping(config(tmp_path), env={}))
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_health_and_request_id(client: TestClient[object, object]) -> None:
    response = await client.get("/health", headers={"X-Request-Id": "abc"})
    assert response.status == 200
    assert await response.json() == {"status": "available"}
    assert response.headers["X-Request-Id"] == "abc"


async def test_unknown_route_answers_in_meilisearch_shape(
    client: TestClient[object, object],
) -> None:
    response = await client.get("/no/such/route")
    assert response.status == 404
    body = await response.json()
    assert body["code"] == "miroir_route_not_found"
    assert set(body) == {"message", "code", "type", "link"}


async def test_admin_routes_need_the_admin_key(client: TestClient[object, object]) -> None:
    assert (await client.get("/_miroir/topology")).status == 401
    assert (
        await client.get("/_miroir/topology", headers={"Authorization": "Bearer x"})
    ).status == 403
    response = await client.get("/_miroir/topology", headers=ADMIN)
    assert response.status == 200
    body = await response.json()
    assert body["epoch"] == 1
    assert body["groups"][0]["nodes"][0]["id"] == "n0"


async def test_ready_turns_unavailable_when_the_only_node_is_down(
    client: TestClient[object, object],
) -> None:
    # The prober marks the refusing node down after one failed probe (50 ms period).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    response = await client.get("/_miroir/ready")
    while response.status != 503 and loop.time() < deadline:
        await asyncio.sleep(PROBE_INTERVAL_S)
        response = await client.get("/_miroir/ready")
    assert response.status == 503
    assert (await response.json())["uncoveredShards"] == list(range(8))


async def test_topology_is_seeded_once_then_read_from_the_store(tmp_path: Path) -> None:
    first = make_app(from_mapping(config(tmp_path), env={}))
    async with TestClient(TestServer(first)) as c:
        assert (await (await c.get("/_miroir/shards", headers=ADMIN)).json())["shards"] == 8
    # A changed config file does not override the stored topology.
    second = make_app(from_mapping(config(tmp_path, shards=32), env={}))
    async with TestClient(TestServer(second)) as c:
        body = await (await c.get("/_miroir/topology", headers=ADMIN)).json()
        assert body["shards"] == 8


async def test_metrics_are_exported(client: TestClient[object, object]) -> None:
    await client.get("/health")
    text = await (await client.get("/_miroir/metrics", headers=ADMIN)).text()
    assert 'miroir_requests_total{method="GET",route="/health",status="200"}' in text


async def test_a_pod_started_before_its_redis_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis that answers only after the pod started (a slow start, a rollout order): the pod
    retries instead of exiting, and serves once the store answers."""
    server = RedisServer(tmp_path / "redis")  # not started yet
    app = make_app(from_mapping(config(tmp_path, store=server.url), env={}))
    client = TestClient(TestServer(app))
    starting = asyncio.create_task(client.start_server())
    try:

        async def retrying() -> bool:
            assert not starting.done(), starting.exception()  # it gave up
            return "does not answer yet" in caplog.text

        await eventually(retrying, "the pod retries its store")
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(starting, 30)
        response = await client.get("/_miroir/topology", headers=ADMIN)
        assert response.status == 200, await response.text()
        assert [g["id"] for g in (await response.json())["groups"]] == ["g0"]
    finally:
        await client.close()
        server.stop()
