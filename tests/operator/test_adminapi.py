"""The operator's admin-API client against a real proxy (in-process) configured by the
operator's own builder, in front of a real devnode."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from miroir_operator import adminapi
from miroir_proxy.cli.processes import NodeBinary, NodeProcess

from .opkit import ADMIN_KEY, CLOSED, empty_node, proxy_for, until_async


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


async def test_a_group_is_added_followed_and_removed(
    tmp_path: Path, devnode: NodeProcess, node_binary: NodeBinary, master_key: str
) -> None:
    with empty_node(tmp_path / "g1-0", node_binary, master_key) as node:
        async with (
            proxy_for(tmp_path, devnode.url, master_key) as url,
            aiohttp.ClientSession() as session,
        ):
            client = adminapi.AdminClient(session, url, ADMIN_KEY)
            (g0,) = await client.groups()
            assert (g0.id, g0.state, g0.operation) == ("g0", "active", None)

            added = await client.add_group("g1", [("g1-0", node.url)])

            async def g1_active() -> bool:
                return any(g.id == "g1" and g.state == "active" for g in await client.groups())

            await until_async(g1_active, "g1 to become active")
            g1 = next(g for g in await client.groups() if g.id == "g1")
            assert g1.operation == added
            assert g1.shards_synced == g1.shards_total
            operation = await client.operation(added)
            assert (operation.kind, operation.state, operation.finished) == (
                "group-add",
                "succeeded",
                True,
            )

            removed = await client.remove_group("g1")

            async def removal_done() -> bool:
                return (await client.operation(removed)).finished

            await until_async(removal_done, "the removal to finish")
            assert (await client.operation(removed)).state == "succeeded"
            assert [g.id for g in await client.groups()] == ["g0"]


async def test_a_node_that_is_not_an_empty_meilisearch_is_refused(
    tmp_path: Path, devnode: NodeProcess, master_key: str
) -> None:
    async with (
        proxy_for(tmp_path, devnode.url, master_key) as url,
        aiohttp.ClientSession() as session,
    ):
        client = adminapi.AdminClient(session, url, ADMIN_KEY)
        with pytest.raises(adminapi.AdminRefused) as refused:
            await client.add_group("g1", [("g1-0", CLOSED)])
        assert (refused.value.status, refused.value.code) == (400, "miroir_invalid_node")
        assert [g.id for g in await client.groups()] == ["g0"]
