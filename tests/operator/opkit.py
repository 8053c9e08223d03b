"""Operator tests: examples and helpers shared by the builder, render, chart and kopf tiers."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import kmock
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from miroir_operator.builders import proxy
from miroir_operator.spec import parse_cluster
from miroir_proxy.api.app import make_app
from miroir_proxy.cli.processes import NodeBinary, NodeProcess
from miroir_proxy.config import from_mapping

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CHART = REPO / "charts" / "miroir"
ADMIN_KEY = "operator-admin-key"
CLOSED = "http://127.0.0.1:9"  # discard port on loopback: nothing listens


class VersionedEmulator(kmock.KubernetesEmulator):
    """kmock with a fresh `metadata.resourceVersion` on every create and patch, as the API
    server gives. kopf needs it: after each patch it waits for the watch event carrying the
    version its patch returned and ignores older copies of the object meanwhile; without
    versions every queued copy looks current, and kopf would re-handle a stale one."""

    _versions = itertools.count(1000)

    async def _handle(self, request: kmock.Request) -> Any:
        changes = request.action in (kmock.action.CREATE, kmock.action.UPDATE)
        if request.resource is not None and changes and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)


def example_cluster(name: str) -> dict[str, Any]:
    """The MiroirCluster document of `examples/<name>.yaml`."""
    for document in yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text()):
        if document and document.get("kind") == "MiroirCluster":
            return dict(document)
    raise AssertionError(f"no MiroirCluster in examples/{name}.yaml")


async def until(condition: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def until_async(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0
) -> None:
    """Await `check` until it returns True; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def proxy_for(
    tmp_path: Path,
    node_url: str,
    master_key: str,
    operations: Mapping[str, Any] | None = None,
    seen: list[str] | None = None,
) -> AsyncIterator[str]:
    """A proxy with the configuration the operator renders for a one-node cluster, its
    node's URL pointed at `node_url`, `operations` settings overridden; `seen` collects
    each admin call it answers (`"POST /_miroir/groups"`)."""
    cluster = parse_cluster(
        {"metadata": {"name": "t", "namespace": "ns", "uid": "u"}, "spec": {"shards": 4}}
    )
    raw: dict[str, Any] = yaml.safe_load(proxy.config_text(proxy.proxy_config(cluster)))
    raw["replica_groups"][0]["nodes"][0]["url"] = node_url
    raw["state_path"] = str(tmp_path / "state.sqlite3")
    raw.setdefault("operations", {}).update(operations or {})
    env = {"MIROIR_ADMIN_KEY": ADMIN_KEY, "MIROIR_NODE_MASTER_KEY": master_key}
    app = make_app(from_mapping(raw, env=env))
    if seen is not None:

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith("/_miroir/"):
                seen.append(f"{request.method} {request.path}")
            return await handler(request)

        app.middlewares.append(record)
    async with TestServer(app) as server:
        yield str(server.make_url(""))


@contextmanager
def empty_node(data_dir: Path, binary: NodeBinary, master_key: str) -> Iterator[NodeProcess]:
    """A node of its own, started empty: what a new replica group's pod is."""
    node = NodeProcess(data_dir, master_key=master_key, binary=binary)
    node.start()
    try:
        node.wait_healthy(30.0)
        yield node
    finally:
        node.stop()
