"""Fake nodes that also search, for the shared-state tests (coalescing, sessions, pods).

A `SearchNode` is conftest's `FakeNode` plus `POST /indexes/{uid}/search` (every document
the node holds that a finished task made visible, honouring the `_miroir_shard IN [...]`
restriction) and `GET /indexes/{uid}/settings`. Switches: `search_gate` holds searches
until set, `write_gate` holds writes until set, and `task_delay_s` makes each task (and
the documents it wrote) finish that long after it was enqueued.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from miroir_proxy.api.app import make_app
from miroir_proxy.config import from_mapping

from ..redis_server import RedisServer
from .conftest import FakeNode, Fleet, ProxyClient

BACKENDS = ["sqlite", "redis"]

_RESTRICTION = re.compile(r"_miroir_shard IN \[([0-9, ]*)\]")


@dataclass
class SearchNode(FakeNode):
    search_gate: asyncio.Event | None = None
    write_gate: asyncio.Event | None = None
    task_delay_s: float = 0.0
    searches: int = 0
    held_writes: int = 0
    visible: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/health", self._health)
        app.router.add_get("/tasks", self._list_tasks)
        app.router.add_post("/tasks/cancel", self._cancel)
        app.router.add_get("/indexes/{uid}/documents/{id}", self._get_document)
        app.router.add_post("/indexes/{uid}/search", self._search)
        app.router.add_get("/indexes/{uid}/settings", self._settings)
        app.router.add_get("/indexes/{uid}/stats", self._stats)
        app.router.add_route("*", "/{tail:.*}", self._delayed_write)
        return app

    async def _delayed_write(self, request: web.Request) -> web.Response:
        gate = self.write_gate if request.method != "GET" else None  # a read is no write
        if gate is not None and not gate.is_set():
            self.held_writes += 1
            await gate.wait()
        self.hold_tasks = self.task_delay_s > 0
        response = await self._write(request)
        if response.status != 202:
            return response
        uid = max(self.tasks)
        if self.task_delay_s > 0:
            asyncio.get_running_loop().call_later(self.task_delay_s, self._finish, uid)
        else:
            self._publish()
        return response

    def _finish(self, uid: int) -> None:
        if self.tasks[uid]["status"] in ("enqueued", "processing"):
            self.tasks[uid]["status"] = "succeeded"
        self._publish()

    def _publish(self) -> None:
        self.visible = {index: dict(docs) for index, docs in self.documents.items()}

    async def _settings(self, request: web.Request) -> web.Response:
        return web.json_response({"filterableAttributes": ["_miroir_shard"]})

    async def _search(self, request: web.Request) -> web.Response:
        self.searches += 1
        body = await request.json()
        if self.search_gate is not None:
            await self.search_gate.wait()
        documents = list(self.visible.get(request.match_info["uid"], {}).values())
        found = _RESTRICTION.search(orjson.dumps(body.get("filter")).decode())
        if found is not None:
            wanted = {int(s) for s in found.group(1).split(",") if s.strip()}
            documents = [d for d in documents if d.get("_miroir_shard") in wanted]
        hits = [{**d, "_rankingScore": 1.0} for d in documents][: body.get("limit", 20)]
        answer = {
            "hits": hits,
            "query": body.get("q") or "",
            "processingTimeMs": 0,
            "limit": body.get("limit", 20),
            "offset": body.get("offset", 0),
            "estimatedTotalHits": len(documents),
        }
        return web.json_response(answer)


@asynccontextmanager
async def search_fleet(
    groups: int = 2, nodes_per_group: int = 3, **switches: Any
) -> AsyncIterator[Fleet]:
    started: list[SearchNode] = []
    try:
        layout: list[list[FakeNode]] = []
        for g in range(groups):
            members: list[FakeNode] = []
            for n in range(nodes_per_group):
                node = SearchNode(f"g{g}n{n}", **switches)
                node.server = TestServer(node.app())
                await node.server.start_server()
                started.append(node)
                members.append(node)
            layout.append(members)
        yield Fleet(layout)
    finally:
        for node in started:
            await node.stop()


def search_nodes(fleet: Fleet) -> list[SearchNode]:
    return [node for node in fleet.nodes if isinstance(node, SearchNode)]


@asynccontextmanager
async def proxy_app(config: dict[str, Any]) -> AsyncIterator[ProxyClient]:
    """The proxy in-process, with a client that may hold any number of requests open."""
    server = TestServer(make_app(from_mapping(config, env={})))
    connector = aiohttp.TCPConnector(limit=0)
    async with TestClient(server, connector=connector) as client:
        yield client


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 5.0) -> float:
    """Poll `check` until it holds; returns how long that took. Fails after `timeout_s`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return loop.time() - start
        assert loop.time() - start < timeout_s, "condition not reached in time"
        await asyncio.sleep(0.01)


async def create_index(client: ProxyClient, uid: str = "books") -> None:
    response = await client.post("/indexes", json={"uid": uid, "primaryKey": "id"})
    assert response.status == 202, await response.text()


def on_backend(config: dict[str, Any], backend: str, request: pytest.FixtureRequest) -> None:
    """Point `config` (shared by every pod of a test) at a fresh store on `backend`."""
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        config["store"] = f"{server.url}?namespace=test-{uuid.uuid4().hex[:12]}:"
