"""Real devnode processes behind an in-process proxy, for the broadcast component tests.

Five nodes serve a whole test module: group `g0` has three nodes and group `g1` two, at
RF=2, so a `g0` node holds more shards than it serves in a covering set while a `g1` node
holds every shard. Each test gets a fresh proxy (and state file) and fresh index uids.
Fault injection is on, so a test can make one node refuse everything and heal it after.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from miroir_proxy.api.app import make_app
from miroir_proxy.cli.processes import LocalNodes
from miroir_proxy.config import from_mapping

NODE_KEY = "node-master-key-0123456789"
MASTER = "proxy-master-key-0123456789"
MASTER_HEADERS = {"Authorization": f"Bearer {MASTER}"}
DEADLINE_S = 15.0
FAULTS_PATH = "/_devnode/faults"

ProxyClient = TestClient[web.Request, web.Application]
_uids = itertools.count()


def fresh_uid(prefix: str = "idx") -> str:
    return f"{prefix}_{next(_uids)}"


@pytest.fixture(scope="module")
def devnodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNodes]:
    with LocalNodes(5, tmp_path_factory.mktemp("fleet"), NODE_KEY, fault_injection=True) as nodes:
        yield nodes


def fleet_config(nodes: LocalNodes, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    urls = nodes.urls
    return {
        "shards": 8,
        "replication_factor": 2,
        "replica_groups": [
            {"id": "g0", "nodes": [{"id": f"n{i}", "url": urls[i]} for i in range(3)]},
            {"id": "g1", "nodes": [{"id": f"n{i}", "url": urls[i]} for i in range(3, 5)]},
        ],
        "master_key": MASTER,
        "node_master_key": NODE_KEY,
        "state_path": str(tmp_path / "state.sqlite3"),
        "health": {"interval_ms": 50, "timeout_ms": 500, "unhealthy_after": 1},
        "timeouts": {"node_read_ms": 2000, "node_write_ms": 5000, "task_node_deadline_ms": 5000},
        **extra,
    }


StartProxy = Callable[..., AbstractAsyncContextManager[ProxyClient]]


@pytest.fixture
def start(devnodes: LocalNodes, tmp_path: Path) -> StartProxy:
    """`async with start(**config) as proxy:` inside the test body, so the proxy's
    background tasks end before the test does."""

    @asynccontextmanager
    async def running(**extra: Any) -> AsyncIterator[ProxyClient]:
        app = make_app(from_mapping(fleet_config(devnodes, tmp_path, **extra), env={}))
        async with TestClient(TestServer(app), headers=MASTER_HEADERS) as client:
            yield client

    return running


async def node_call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {NODE_KEY}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.request(method, url + path, json=body) as response,
    ):
        raw = await response.read()
        return response.status, (await response.json() if raw else None)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check` until it holds, failing after `DEADLINE_S`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"still not true after {DEADLINE_S}s: {what}")
        await asyncio.sleep(0.02)


async def wait_task(client: ProxyClient, enqueued: Any) -> dict[str, Any]:
    """The finished Miroir task behind a 202 answer (a response or its JSON)."""
    if isinstance(enqueued, aiohttp.ClientResponse):
        assert enqueued.status == 202, await enqueued.text()
        enqueued = await enqueued.json()
    uid = enqueued["taskUid"]
    task: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal task
        task = await (await client.get(f"/tasks/{uid}")).json()
        return task["status"] in ("succeeded", "failed", "canceled")

    await eventually(finished, f"task {uid} finished")
    return task


async def set_faults(url: str, **faults: Any) -> None:
    status, body = await node_call(url, "PUT", FAULTS_PATH, faults)
    assert status == 200, body


async def node_settings(url: str, uid: str) -> dict[str, Any]:
    status, body = await node_call(url, "GET", f"/indexes/{uid}/settings")
    assert status == 200, body
    result: dict[str, Any] = body
    return result
