"""Fixtures shared by every test tier: node processes (devnode or a real Meilisearch), an SDK
client that starts each test from an empty node, and a guard against orphaned asyncio tasks.

One node serves the whole session; tests that kill, restart or inject faults get their own.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import meilisearch
import pytest
import requests
from hypothesis import settings
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

from miroir_proxy.cli.processes import NodeBinary, NodeProcess, resolve_node_binary

from .redis_cluster import RedisCluster
from .redis_server import RedisServer

MASTER_KEY = "miroir-test-master-key-0123456789"
TASK_TIMEOUT_MS = 20_000
HTTP_TIMEOUT_S = 10
FAULTS_PATH = "/_devnode/faults"
_REPO = Path(__file__).resolve().parent.parent
_OUR_CODE = tuple(str(_REPO / part) for part in ("proxy", "devnode", "operator", "tests"))

ApiCall = Callable[..., requests.Response]

# Hypothesis' per-example deadline is a timed assertion: on a loaded 2-core box a correct
# example can take longer than 200 ms. Correctness is what the properties check; speed is
# `make bench`'s business.
settings.register_profile("miroir", deadline=None)
settings.load_profile("miroir")


@pytest.fixture(scope="session")
def master_key() -> str:
    return MASTER_KEY


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server per session; tests isolate themselves by key namespace."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real 3-master Redis Cluster per session, isolated by key namespace as well."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def node_binary() -> NodeBinary:
    return resolve_node_binary()


@pytest.fixture(scope="session")
def devnode(
    tmp_path_factory: pytest.TempPathFactory, node_binary: NodeBinary
) -> Iterator[NodeProcess]:
    node = NodeProcess(
        tmp_path_factory.mktemp("devnode"), master_key=MASTER_KEY, binary=node_binary
    )
    node.start()
    try:
        node.wait_healthy(30.0)
        yield node
    finally:
        node.stop()


def wait_for(client: meilisearch.Client, task: TaskInfo | int) -> Task:
    uid = task if isinstance(task, int) else task.task_uid
    return client.wait_for_task(uid, timeout_in_ms=TASK_TIMEOUT_MS, interval_in_ms=5)


def reset_node(client: meilisearch.Client) -> None:
    """Leave the node as a fresh one: no indexes, webhooks, extra keys or finished tasks."""
    # The SDK's annotation says list, but the route answers the paginated object.
    indexes: Any = client.get_raw_indexes({"limit": 1000})
    indexes = indexes["results"]
    for task in [client.delete_index(index["uid"]) for index in indexes]:
        wait_for(client, task)
    for webhook in client.get_webhooks().results:
        if webhook.isEditable:
            client.delete_webhook(webhook.uuid)
    for key in client.get_keys({"limit": 1000}).results:
        if not (key.name or "").startswith("Default "):
            client.delete_key(key.uid)
    wait_for(client, client.delete_tasks({"statuses": ["succeeded", "failed", "canceled"]}))


@pytest.fixture
def client(devnode: NodeProcess) -> meilisearch.Client:
    sdk = meilisearch.Client(devnode.url, MASTER_KEY, timeout=HTTP_TIMEOUT_S)
    reset_node(sdk)
    return sdk


@pytest.fixture
def wait_task(client: meilisearch.Client) -> Callable[[TaskInfo | int], Task]:
    """Waits for a task and insists it succeeded, showing the task's error when it did not."""

    def wait(task: TaskInfo | int) -> Task:
        done = wait_for(client, task)
        assert done.status == "succeeded", f"task {done.uid} {done.status}: {done.error}"
        return done

    return wait


@pytest.fixture
def make_index(
    client: meilisearch.Client, wait_task: Callable[[TaskInfo | int], Task]
) -> Callable[..., Index]:
    """`make_index(uid, documents, settings=None, primary_key="id")`: loaded in one task each."""

    def make(
        uid: str,
        documents: Sequence[Mapping[str, Any]] = (),
        settings: Mapping[str, Any] | None = None,
        primary_key: str | None = "id",
    ) -> Index:
        wait_task(client.create_index(uid, {"primaryKey": primary_key}))
        index = client.index(uid)
        if settings:
            wait_task(index.update_settings(dict(settings)))
        if documents:
            wait_task(index.add_documents(list(documents)))
        return index

    return make


# A small catalogue every search suite shares: overlapping words (dark, knight, matrix),
# repeated directors for distinct, arrays for facets, and a field that is missing, empty
# or null for the EXISTS/IS NULL/IS EMPTY filters.
MOVIES: list[dict[str, Any]] = [
    {"id": 1, "title": "The Dark Knight", "overview": "Batman faces the Joker in Gotham",
     "genres": ["action", "drama"], "year": 2008, "rating": 9.0, "director": "Nolan",
     "tags": ["imax"]},
    {"id": 2, "title": "Dark Waters", "overview": "A lawyer uncovers a chemical scandal",
     "genres": ["drama"], "year": 2019, "rating": 7.6, "director": "Haynes"},
    {"id": 3, "title": "Knight and Day", "overview": "A spy comedy with Tom Cruise",
     "genres": ["action", "comedy"], "year": 2010, "rating": 6.3, "director": "Mangold"},
    {"id": 4, "title": "The Matrix", "overview": "A hacker discovers the simulated reality",
     "genres": ["action", "scifi"], "year": 1999, "rating": 8.7, "director": "Wachowski",
     "tags": []},
    {"id": 5, "title": "Matrix Reloaded", "overview": "Neo fights agents again",
     "genres": ["action", "scifi"], "year": 2003, "rating": 7.2, "director": "Wachowski"},
    {"id": 6, "title": "Get Out", "overview": "A horror movie about a visit to a family",
     "genres": ["horror"], "year": 2017, "rating": 7.7, "director": "Peele"},
    {"id": 7, "title": "Us", "overview": "A family meets their doppelgangers",
     "genres": ["horror"], "year": 2019, "rating": 6.8, "director": "Peele"},
    {"id": 8, "title": "Superbad", "overview": "Two teens comedy movie night",
     "genres": ["comedy"], "year": 2007, "rating": 7.6, "director": "Mottola"},
    {"id": 9, "title": "Inception", "overview": "A thief enters dreams",
     "genres": ["action", "scifi"], "year": 2010, "rating": 8.8, "director": "Nolan",
     "tags": None},
    {"id": 10, "title": "Interstellar", "overview": "Explorers travel through a wormhole",
     "genres": ["scifi", "drama"], "year": 2014, "rating": 8.7, "director": "Nolan"},
]  # fmt: skip

MOVIE_SETTINGS: dict[str, Any] = {
    "filterableAttributes": ["genres", "year", "director", "rating", "tags"],
    "sortableAttributes": ["rating", "year"],
}


@pytest.fixture(scope="session")
def movie_documents() -> list[dict[str, Any]]:
    return MOVIES


@pytest.fixture
def movies(make_index: Callable[..., Index]) -> Index:
    """The `movies` index: MOVIES with MOVIE_SETTINGS (filterable and sortable fields)."""
    return make_index("movies", MOVIES, settings=MOVIE_SETTINGS)


@pytest.fixture
def api(devnode: NodeProcess) -> Iterator[ApiCall]:
    """Raw HTTP for what the SDK hides: `api(method, path, key=MASTER_KEY, **requests_kwargs)`.

    `key=None` sends no Authorization header.
    """
    with requests.Session() as session:

        def call(
            method: str, path: str, *, key: str | None = MASTER_KEY, **kwargs: Any
        ) -> requests.Response:
            headers = dict(kwargs.pop("headers", {}))
            if key is not None:
                headers["Authorization"] = f"Bearer {key}"
            return session.request(
                method, devnode.url + path, headers=headers, timeout=HTTP_TIMEOUT_S, **kwargs
            )

        yield call


@pytest.fixture
def fresh_node(tmp_path: Path, node_binary: NodeBinary) -> Iterator[Callable[..., NodeProcess]]:
    """Factory of healthy private nodes (master key set) that a test may kill or restart."""
    started: list[NodeProcess] = []

    def start(*, fault_injection: bool = False) -> NodeProcess:
        node = NodeProcess(
            tmp_path / f"node-{len(started)}",
            master_key=MASTER_KEY,
            binary=node_binary,
            fault_injection=fault_injection,
        )
        started.append(node)
        node.start()
        node.wait_healthy(30.0)
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture(scope="session")
def _fault_node_process(
    tmp_path_factory: pytest.TempPathFactory, node_binary: NodeBinary
) -> Iterator[tuple[NodeProcess, dict[str, Any]]]:
    if not node_binary.is_devnode:
        pytest.skip("fault injection is a devnode test feature")
    node = NodeProcess(
        tmp_path_factory.mktemp("faultnode"),
        master_key=MASTER_KEY,
        binary=node_binary,
        fault_injection=True,
    )
    node.start()
    try:
        node.wait_healthy(30.0)
        defaults = _faults(node, "GET")
        yield node, defaults
    finally:
        node.stop()


@pytest.fixture
def fault_node(_fault_node_process: tuple[NodeProcess, dict[str, Any]]) -> Iterator[NodeProcess]:
    """A devnode with `/_devnode/faults`; every fault is switched off again after the test."""
    node, defaults = _fault_node_process
    if node.is_paused:
        node.resume()
    yield node
    if node.is_paused:
        node.resume()
    _faults(node, "PUT", defaults)


def _faults(
    node: NodeProcess, method: str, body: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    response = requests.request(
        method,
        node.url + FAULTS_PATH,
        json=body,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=HTTP_TIMEOUT_S,
    )
    response.raise_for_status()
    faults: dict[str, Any] = response.json()
    return faults


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.obj = _fail_on_orphan_tasks(item.obj)


def _fail_on_orphan_tasks(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., Coroutine[Any, Any, None]]:
    """STYLE.md §9: a test fails when code of ours leaves tasks running after the test body.

    Library-owned tasks (aiohttp keep-alive connection handlers) are closed by their fixtures
    at teardown, so only tasks whose coroutine is defined in this repository count.
    """

    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        before = asyncio.all_tasks()
        await test(*args, **kwargs)
        orphans = [
            task
            for task in asyncio.all_tasks() - before
            if task is not asyncio.current_task() and not task.done() and _is_ours(task)
        ]
        for task in orphans:
            task.cancel()
        assert not orphans, f"test left asyncio tasks running: {orphans}"

    return guarded


def _is_ours(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and code.co_filename.startswith(_OUR_CODE)
