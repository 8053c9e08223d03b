"""In-process fake Meilisearch nodes and a proxy in front of them, for component tests.

A `FakeNode` answers the node API the proxy's write and task paths use (enqueue answers,
`GET /tasks?uids=`, task cancelation, one-document reads) and records every request, so
tests can assert where each document went. Switches make it refuse writes (500) or reject
them (400), keep its tasks processing, or fail them; `stop()` makes it unreachable.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from miroir_proxy.api.app import make_app
from miroir_proxy.cli.processes import LocalNodes, NodeProcess
from miroir_proxy.config import from_mapping
from miroir_proxy.core.assignment import plan
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.state.store import IndexMeta

ProxyClient = TestClient[web.Request, web.Application]


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class FakeNode:
    node_id: str
    refuse_writes: bool = False
    reject_writes_with: dict[str, Any] | None = None
    hold_tasks: bool = False
    fail_tasks_with: dict[str, Any] | None = None
    received: list[Received] = field(default_factory=list)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    documents: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    server: TestServer | None = None
    _uids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def writes(self) -> list[Received]:
        return [r for r in self.received if r.method != "GET" and r.path != "/tasks/cancel"]

    def release(self, status: str = "succeeded") -> None:
        """Finish every held task."""
        for task in self.tasks.values():
            if task["status"] in ("enqueued", "processing"):
                task["status"] = status

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/health", self._health)
        app.router.add_get("/tasks", self._list_tasks)
        app.router.add_post("/tasks/cancel", self._cancel)
        app.router.add_get("/indexes/{uid}/documents/{id}", self._get_document)
        app.router.add_get("/indexes/{uid}/stats", self._stats)
        app.router.add_route("*", "/{tail:.*}", self._write)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "available"})

    async def _stats(self, request: web.Request) -> web.Response:
        """Read-only: the index's document count and top-level field counts."""
        documents = self.documents.get(request.match_info["uid"], {}).values()
        fields: dict[str, int] = {}
        for document in documents:
            for name in document:
                fields[name] = fields.get(name, 0) + 1
        body = {"numberOfDocuments": len(documents), "fieldDistribution": fields}
        return web.json_response(body)

    async def _write(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        self.received.append(Received(request.method, request.path, dict(request.query), body))
        if self.refuse_writes:
            return web.json_response({"message": "boom", "code": "internal"}, status=500)
        if self.reject_writes_with is not None:
            return web.json_response(self.reject_writes_with, status=400)
        parts = request.path.strip("/").split("/")
        details: dict[str, Any] = {}
        kind = "settingsUpdate"
        if len(parts) >= 3 and parts[2] == "documents":
            kind, details = self._apply(parts[1], request.method, parts[3:], body, request.query)
        elif parts == ["indexes"]:
            kind = "indexCreation"
        uid = next(self._uids)
        status = "processing" if self.hold_tasks else "succeeded"
        error = None
        if self.fail_tasks_with is not None and not self.hold_tasks:
            status, error = "failed", self.fail_tasks_with
        self.tasks[uid] = {
            "uid": uid,
            "status": status,
            "type": kind,
            "details": details,
            "error": error,
        }
        return web.json_response({"taskUid": uid, "status": "enqueued"}, status=202)

    def _apply(
        self, index: str, method: str, rest: list[str], body: Any, query: Any
    ) -> tuple[str, dict[str, Any]]:
        docs = self.documents.setdefault(index, {})
        if not rest and method in ("POST", "PUT"):
            pk = query["primaryKey"]
            for doc in body:
                docs[str(doc[pk])] = doc
            return "documentAdditionOrUpdate", {
                "receivedDocuments": len(body),
                "indexedDocuments": len(body),
            }
        if rest == ["delete-batch"]:
            gone = [docs.pop(str(i)) for i in body if str(i) in docs]
            return "documentDeletion", {"providedIds": len(body), "deletedDocuments": len(gone)}
        if rest == ["delete"]:
            name, _, value = body["filter"].partition(" = ")
            victims = [k for k, d in docs.items() if str(d.get(name)) == value]
            for key in victims:
                docs.pop(key)
            return "documentDeletion", {"deletedDocuments": len(victims)}
        count = len(docs)
        docs.clear()
        return "documentDeletion", {"deletedDocuments": count}

    async def _list_tasks(self, request: web.Request) -> web.Response:
        self.received.append(Received("GET", "/tasks", dict(request.query), None))
        uids = [int(u) for u in request.query["uids"].split(",")]
        return web.json_response({"results": [self.tasks[u] for u in uids if u in self.tasks]})

    async def _cancel(self, request: web.Request) -> web.Response:
        self.received.append(Received("POST", "/tasks/cancel", dict(request.query), None))
        for uid in request.query["uids"].split(","):
            task = self.tasks.get(int(uid))
            if task is not None and task["status"] in ("enqueued", "processing"):
                task["status"] = "canceled"
        return web.json_response({"taskUid": next(self._uids)})

    async def _get_document(self, request: web.Request) -> web.Response:
        doc = self.documents.get(request.match_info["uid"], {}).get(request.match_info["id"])
        if doc is None:
            error = {
                "message": f"Document `{request.match_info['id']}` not found.",
                "code": "document_not_found",
                "type": "invalid_request",
                "link": "https://docs.meilisearch.com/errors#document_not_found",
            }
            return web.json_response(error, status=404)
        return web.json_response(doc)


@dataclass
class Fleet:
    """`groups` replica groups of fake nodes named `g{i}n{j}`."""

    groups: list[list[FakeNode]]

    @property
    def nodes(self) -> list[FakeNode]:
        return [node for group in self.groups for node in group]

    def node(self, node_id: str) -> FakeNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def config(self, tmp_path: Path, **extra: Any) -> dict[str, Any]:
        return {
            "shards": 8,
            "replication_factor": 2,
            "replica_groups": [
                {"id": f"g{i}", "nodes": [{"id": n.node_id, "url": n.url} for n in group]}
                for i, group in enumerate(self.groups)
            ],
            "state_path": str(tmp_path / "state.sqlite3"),
            "health": {"interval_ms": 50, "timeout_ms": 200, "unhealthy_after": 1},
            **extra,
        }


StartFleet = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def fleet() -> AsyncIterator[StartFleet]:
    """`await fleet(groups=2, nodes_per_group=3)` starts fake nodes, closed after the test."""
    started: list[FakeNode] = []

    async def start(groups: int = 2, nodes_per_group: int = 3) -> Fleet:
        layout: list[list[FakeNode]] = []
        for g in range(groups):
            members = []
            for n in range(nodes_per_group):
                node = FakeNode(f"g{g}n{n}")
                node.server = TestServer(node.app())
                await node.server.start_server()
                started.append(node)
                members.append(node)
            layout.append(members)
        return Fleet(layout)

    yield start
    for node in started:
        await node.stop()


StartProxy = Callable[[dict[str, Any]], AbstractAsyncContextManager[ProxyClient]]


@asynccontextmanager
async def _running_proxy(config: dict[str, Any]) -> AsyncIterator[ProxyClient]:
    async with TestClient(TestServer(make_app(from_mapping(config, env={})))) as client:
        yield client


@pytest.fixture
def proxy() -> StartProxy:
    """`async with proxy(fleet.config(tmp_path)) as client:` runs the proxy app in-process."""
    return _running_proxy


# Real devnodes holding one sharded index, for the read-path tests (search, listing): six
# cluster nodes (two groups of three, RF=2, 8 shards) loaded exactly as Miroir places
# documents, and one reference node holding every document, to compare answers with.

READ_KEY = "miroir-read-tests-master-key-0123"
READ_SHARDS = 8
READ_GROUPS = {"g0": ("r0", "r1", "r2"), "g1": ("r3", "r4", "r5")}
_WORDS = ("quick", "brown", "fox", "lazy", "dog", "jumps", "over", "river", "stone", "light")


def read_documents() -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "title": " ".join(_WORDS[(i * k * 7 + k) % len(_WORDS)] for k in range(1, 3 + i % 4)),
            "color": ("red", "green", "blue")[i % 3],
            "year": 1950 + (i * 13) % 70,
            "rank": (i * 37) % 150,
            "tag": f"t{i % 5}",
        }
        for i in range(150)
    ]


@dataclass
class ShardedIndex:
    uid: str
    nodes: dict[str, NodeProcess]
    reference: NodeProcess
    documents: list[dict[str, Any]]

    def config(self, tmp_path: Path, **extra: Any) -> dict[str, Any]:
        return {
            "shards": READ_SHARDS,
            "replication_factor": 2,
            "replica_groups": [
                {"id": g, "nodes": [{"id": n, "url": self.nodes[n].url} for n in ids]}
                for g, ids in READ_GROUPS.items()
            ],
            "node_master_key": READ_KEY,
            "state_path": str(tmp_path / "state.sqlite3"),
            # One probe round at start: reads route around dead nodes by themselves.
            "health": {"interval_ms": 60_000, "timeout_ms": 500},
            **extra,
        }

    def meta(self) -> IndexMeta:
        return IndexMeta(self.uid, READ_SHARDS, "id", "2026-01-01T00:00:00.000000Z")

    def ask_reference(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {READ_KEY}"}
        return requests.request(
            method, self.reference.url + path, headers=headers, timeout=10, **kwargs
        )


def _load(node: NodeProcess, uid: str, documents: list[dict[str, Any]], reserved: bool) -> None:
    filterable = ["color", "year", "tag", "id", *(["_miroir_shard"] if reserved else [])]
    steps: list[tuple[str, Any]] = [
        ("/indexes", {"uid": uid, "primaryKey": "id"}),
        (
            f"/indexes/{uid}/settings",
            {"filterableAttributes": filterable, "sortableAttributes": ["rank", "year"]},
        ),
        (f"/indexes/{uid}/documents", documents),
    ]
    headers = {"Authorization": f"Bearer {READ_KEY}"}
    with requests.Session() as session:
        session.headers.update(headers)
        uids = []
        for path, body in steps:
            method = "PATCH" if path.endswith("/settings") else "POST"
            uids.append(
                session.request(method, node.url + path, json=body, timeout=10).json()["taskUid"]
            )
        for task_uid in uids:
            deadline = time.monotonic() + 20
            while (task := session.get(f"{node.url}/tasks/{task_uid}", timeout=10).json())[
                "status"
            ] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, f"task {task_uid} on {node.url} never finished"
                time.sleep(0.01)
            assert task["status"] == "succeeded", task


@contextmanager
def sharded_devnodes(base_dir: Path) -> Iterator[ShardedIndex]:
    """Start and load the six cluster nodes and the reference node; stop them after."""
    ids = [n for members in READ_GROUPS.values() for n in members]
    with LocalNodes(len(ids) + 1, base_dir, READ_KEY) as local:
        nodes = dict(zip(ids, local.nodes, strict=False))
        documents = read_documents()
        held: dict[str, list[dict[str, Any]]] = {n: [] for n in ids}
        for document in documents:
            shard = shard_of(str(document["id"]), READ_SHARDS)
            for members in READ_GROUPS.values():
                for node_id in plan(None, members, 2, READ_SHARDS)[shard]:
                    held[node_id].append({**document, "_miroir_shard": shard})
        with ThreadPoolExecutor(len(ids) + 1) as pool:
            loads = [pool.submit(_load, nodes[n], "books", held[n], True) for n in ids]
            loads.append(pool.submit(_load, local.nodes[-1], "books", documents, False))
            for load in loads:
                load.result()
        yield ShardedIndex("books", nodes, local.nodes[-1], documents)


@pytest.fixture(scope="session")
def sharded_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShardedIndex]:
    """One loaded fleet for every read-only test of the session."""
    with sharded_devnodes(tmp_path_factory.mktemp("read-nodes")) as index:
        yield index
