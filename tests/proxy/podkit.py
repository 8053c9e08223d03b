"""Two proxy apps ("pods") in one process sharing one SQLite state file, no node needed, with
the test scaffolding plugin (`scaffold/`) set up."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from miroir_proxy.api.app import make_app
from miroir_proxy.config import from_mapping

from .scaffold import PLUGIN

ADMIN = {"Authorization": "Bearer admin-key"}
Client = TestClient[Any, Any]


@asynccontextmanager
async def two_pods(tmp_path: Path, coordination: dict[str, Any]) -> AsyncIterator[list[Client]]:
    """`pod-1` and `pod-2` with these coordination settings."""
    async with AsyncExitStack() as stack:
        clients = []
        for pod_id in ("pod-1", "pod-2"):
            config = {
                # Port 9 (discard) on loopback is closed: coordination needs no node.
                "replica_groups": [
                    {"id": "g0", "nodes": [{"id": "n0", "url": "http://127.0.0.1:9"}]}
                ],
                "admin_key": "admin-key",
                "state_path": str(tmp_path / "state.sqlite3"),
                "coordination": {"pod_id": pod_id, **coordination},
            }
            app = make_app(from_mapping(config, env={}), plugins=[PLUGIN])
            clients.append(await stack.enter_async_context(TestClient(TestServer(app))))
        yield clients
