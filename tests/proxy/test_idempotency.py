"""`Idempotency-Key`: a retried write gets its original task without reaching the nodes,
on any pod sharing the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from miroir_proxy.api.appkeys import CLUSTER, STORE

from .conftest import Fleet, ProxyClient
from .searchfleet import (
    BACKENDS,
    create_index,
    eventually,
    on_backend,
    proxy_app,
    search_fleet,
    search_nodes,
)

DOCS = "/indexes/books/documents"
BATCH = [{"id": 1, "title": "Dune"}, {"id": 2, "title": "Emma"}]


def _document_writes(fleet: Fleet) -> int:
    return sum(1 for node in fleet.nodes for r in node.writes() if "/documents" in r.path)


async def _post(
    client: ProxyClient, body: Any, key: str | None, **headers: str
) -> tuple[int, Any, Any]:
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await client.post(DOCS, json=body, headers=headers)
    return response.status, await response.json(), response.headers


@pytest.mark.parametrize("key", ["retry-1", None], ids=["with-key", "without-key"])
async def test_a_retry_returns_the_original_task_without_touching_nodes(
    tmp_path: Path, key: str | None
) -> None:
    async with search_fleet() as fleet, proxy_app(fleet.config(tmp_path)) as client:
        await create_index(client)
        status, first, _ = await _post(client, BATCH, key)
        assert status == 202
        sent = _document_writes(fleet)
        assert sent > 0
        status, second, headers = await _post(client, BATCH, key)
        assert status == 202
        listed = await client.get("/tasks", params={"types": "documentAdditionOrUpdate"})
        uids = [t["uid"] for t in (await listed.json())["results"]]
    if key is None:
        # Without the header a retry is a second write: the key is what prevents it.
        assert second["taskUid"] != first["taskUid"]
        assert _document_writes(fleet) == 2 * sent
        return
    assert second == first
    assert headers["Idempotent-Replayed"] == "true"
    assert _document_writes(fleet) == sent
    assert uids == [first["taskUid"]]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_retry_on_another_pod_gets_the_same_task(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    async with search_fleet() as fleet:
        config = fleet.config(tmp_path)
        on_backend(config, backend, request)
        async with proxy_app(config) as first_pod, proxy_app(config) as second_pod:
            await create_index(first_pod)
            status, original, _ = await _post(first_pod, BATCH, "cross-pod")
            assert status == 202
            sent = _document_writes(fleet)
            status, replayed, headers = await _post(second_pod, BATCH, "cross-pod")
    assert (status, replayed) == (202, original)
    assert headers["Idempotent-Replayed"] == "true"
    assert _document_writes(fleet) == sent


async def test_the_same_key_for_another_request_is_refused(tmp_path: Path) -> None:
    async with search_fleet() as fleet, proxy_app(fleet.config(tmp_path)) as client:
        await create_index(client)
        assert (await _post(client, BATCH, "k"))[0] == 202
        sent = _document_writes(fleet)
        status, error, _ = await _post(client, [{"id": 3, "title": "Ubik"}], "k")
        assert status == 409
        assert error["code"] == "miroir_idempotency_key_reused"
        assert error["type"] == "invalid_request"
        # The same body on another route is another request too.
        response = await client.put(DOCS, json=BATCH, headers={"Idempotency-Key": "k"})
        assert response.status == 409
        assert _document_writes(fleet) == sent


def _count_calls(obj: Any, name: str) -> list[int]:
    """Count calls of `obj.name` (an async method), through a wrapper on the instance."""
    calls = [0]
    original: Callable[..., Awaitable[Any]] = getattr(obj, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


async def test_a_duplicate_arriving_mid_flight_waits_and_gets_the_same_task(
    tmp_path: Path,
) -> None:
    async with search_fleet() as fleet, proxy_app(fleet.config(tmp_path)) as client:
        await create_index(client)
        nodes = search_nodes(fleet)
        gate = asyncio.Event()
        for node in nodes:
            node.write_gate = gate
        lookups = _count_calls(client.app[STORE], "kv_get")
        first = asyncio.create_task(_post(client, BATCH, "twice"))
        await eventually(lambda: sum(n.held_writes for n in nodes) > 0)
        held = sum(n.held_writes for n in nodes)
        second = asyncio.create_task(_post(client, BATCH, "twice"))
        # The duplicate found the key reserved and polls for the outcome.
        await eventually(lambda: lookups[0] >= 2)
        assert sum(n.held_writes for n in nodes) == held
        gate.set()
        (s1, a1, h1), (s2, a2, h2) = await asyncio.gather(first, second)
    assert (s1, s2) == (202, 202)
    assert a1 == a2
    assert "Idempotent-Replayed" not in h1
    assert h2["Idempotent-Replayed"] == "true"
    # The duplicate sent nothing: no node got the batch twice (counting the writes seen
    # when the first was held would race the first's own slower node calls).
    per_node = [sum("/documents" in r.path for r in node.writes()) for node in fleet.nodes]
    assert max(per_node) == 1 and sum(per_node) >= held, per_node


async def test_a_failed_write_releases_its_key(tmp_path: Path) -> None:
    async with search_fleet() as fleet, proxy_app(fleet.config(tmp_path)) as client:
        await create_index(client)
        for node in fleet.nodes:
            node.refuse_writes = True
        status, error, _ = await _post(client, BATCH, "after-outage")
        assert (status, error["code"]) == (503, "miroir_no_quorum")
        for node in fleet.nodes:
            node.refuse_writes = False
        # Failed writes mark their nodes down; writes wait for the prober to see them back.
        cluster = client.app[CLUSTER]
        await eventually(lambda: all(cluster.is_healthy(n.node_id) for n in fleet.nodes))
        status, answer, headers = await _post(client, BATCH, "after-outage")
    assert status == 202
    assert "Idempotent-Replayed" not in headers
    assert answer["type"] == "documentAdditionOrUpdate"


async def test_keys_are_scoped_by_credentials(tmp_path: Path) -> None:
    async with search_fleet() as fleet, proxy_app(fleet.config(tmp_path)) as client:
        await create_index(client)
        _, first, _ = await _post(client, BATCH, "shared", Authorization="Bearer alice")
        status, second, headers = await _post(client, BATCH, "shared", Authorization="Bearer bob")
    assert status == 202
    assert "Idempotent-Replayed" not in headers
    assert first["taskUid"] != second["taskUid"]


async def test_reads_ignore_the_header(tmp_path: Path) -> None:
    async with search_fleet() as fleet, proxy_app(fleet.config(tmp_path)) as client:
        await create_index(client)
        for q in ("a", "b"):
            response = await client.post(
                "/indexes/books/search", json={"q": q}, headers={"Idempotency-Key": "same"}
            )
            assert response.status == 200
            assert (await response.json())["query"] == q
