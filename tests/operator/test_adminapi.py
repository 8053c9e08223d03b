"""The operator's admin-API client against a real proxy (in-process) configured by the
operator's own builder, in front of a real devnode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from miroir_operator import adminapi
from miroir_operator.builders import proxy
from miroir_operator.spec import parse_cluster
from miroir_proxy.api.app import make_app
from miroir_proxy.cli.processes import NodeProcess
from miroir_proxy.config import from_mapping

from .opkit import until_async

ADMIN_KEY = "operator-admin-key"
CLOSED = "http://127.0.0.1:9"  # discard port on loopback: nothing listens


@asynccontextmanager
async def proxy_for(tmp_path: Path, node_url: str, master_key: str) -> AsyncIterator[str]:
    """A proxy with the configuration the operator renders for a one-node cluster, its
    node's URL pointed at `node_url`."""
    cluster = parse_cluster(
        {"metadata": {"name": "t", "namespace": "ns", "uid": "u"}, "spec": {"shards": 4}}
    )
    raw: dict[str, Any] = yaml.safe_load(proxy.config_text(proxy.proxy_config(cluster)))
    raw["replica_groups"][0]["nodes"][0]["url"] = node_url
    raw["state_path"] = str(tmp_path / "state.sqlite3")
    env = {"MIROIR_ADMIN_KEY": ADMIN_KEY, "MIROIR_NODE_MASTER_KEY": master_key}
    async with TestServer(make_app(from_mapping(raw, env=env))) as server:
        yield str(server.make_url(""))


async def test_topology_and_readiness_of_a_real_proxy(
    tmp_path: Path, devnode: NodeProcess, master_key: str
) -> None:
    async with (
        proxy_for(tmp_path, devnode.url, master_key) as url,
        aiohttp.ClientSession() as session,
    ):
        client = adminapi.AdminClient(session, url, ADMIN_KEY)
        topology = await client.topology()
        assert topology.shards == 4 and topology.replication_factor == 1
        assert topology.epoch >= 1
        (group,) = topology.groups
        assert (group.id, group.state) == ("g0", "active")
        assert [(n.id, n.url) for n in group.nodes] == [("g0-0", devnode.url)]
        await until_async(client.ready, "the proxy to report ready")


async def test_a_proxy_without_live_nodes_is_not_ready(tmp_path: Path, master_key: str) -> None:
    async with proxy_for(tmp_path, CLOSED, master_key) as url, aiohttp.ClientSession() as session:
        client = adminapi.AdminClient(session, url, ADMIN_KEY)

        async def not_ready() -> bool:
            return not await client.ready()

        await until_async(not_ready, "the proxy to report its shards uncovered")


async def test_a_wrong_key_is_refused_with_meilisearch_error_code(
    tmp_path: Path, master_key: str
) -> None:
    async with proxy_for(tmp_path, CLOSED, master_key) as url, aiohttp.ClientSession() as session:
        with pytest.raises(adminapi.AdminRefused) as refused:
            await adminapi.AdminClient(session, url, "wrong-key").topology()
        assert refused.value.code == "invalid_api_key"
        assert refused.value.status == 403


async def test_an_unreachable_proxy_is_unavailable_within_the_deadline() -> None:
    async with aiohttp.ClientSession() as session:
        client = adminapi.AdminClient(session, CLOSED, ADMIN_KEY, timeout_s=2)
        with pytest.raises(adminapi.AdminUnavailable):
            await client.topology()
        with pytest.raises(adminapi.AdminUnavailable):
            await client.ready()
