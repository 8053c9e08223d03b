"""Read-your-writes: a session's search, on any pod, waits for the session's last write
on the group that acknowledged it and reads from that group.

The fake nodes finish each task (and only then show its documents to searches) a fixed
delay after enqueueing it, like a node busy indexing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from miroir_proxy.api.appkeys import CLUSTER
from miroir_proxy.dispatch.sessions import HEADER, acknowledging_group
from miroir_proxy.state.store import NodeTaskRef

from .conftest import ProxyClient
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
SEARCH = "/indexes/books/search"


async def _found(client: ProxyClient, headers: dict[str, str]) -> list[Any]:
    response = await client.post(SEARCH, json={"q": ""}, headers=headers)
    assert response.status == 200, await response.text()
    return [hit["id"] for hit in (await response.json())["hits"]]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_write_is_visible_to_the_next_search_through_another_pod(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    async with search_fleet() as fleet:
        config = fleet.config(tmp_path, features={"session_wait_ms": 5_000})
        on_backend(config, backend, request)
        async with proxy_app(config) as writer_pod, proxy_app(config) as reader_pod:
            await create_index(writer_pod)
            for node in search_nodes(fleet):
                node.task_delay_s = 1.0
            session = {HEADER: "client-42"}
            response = await writer_pod.post(
                DOCS, json=[{"id": 7, "title": "Dune"}], headers=session
            )
            assert response.status == 202
            # Without the session the node has not indexed the write yet: the race is real.
            assert await _found(reader_pod, {}) == []
            started = time.monotonic()
            assert await _found(reader_pod, session) == [7]
            waited = time.monotonic() - started
    assert waited < 5.0


async def test_a_session_reads_from_the_group_that_acknowledged(tmp_path: Path) -> None:
    async with search_fleet() as fleet, proxy_app(fleet.config(tmp_path)) as client:
        await create_index(client)
        # Group g0 misses the write (its nodes fail); quorum is met in g1 alone.
        missed = fleet.groups[0]
        for node in missed:
            node.refuse_writes = True
        session = {HEADER: "client-7"}
        response = await client.post(DOCS, json=[{"id": 1, "title": "Emma"}], headers=session)
        assert response.status == 202, await response.text()
        for node in missed:
            node.refuse_writes = False
        cluster = client.app[CLUSTER]
        await eventually(lambda: all(cluster.is_healthy(n.node_id) for n in missed))
        results = [await _found(client, session) for _ in range(4)]
        searched_missed = sum(n.searches for n in search_nodes(fleet) if n in missed)
        without = [await _found(client, {}) for _ in range(4)]
    assert results == [[1]] * 4
    assert searched_missed == 0
    # Without the session, searches also reach the group that missed the write.
    assert [] in without


async def test_a_session_without_writes_searches_normally(tmp_path: Path) -> None:
    async with search_fleet() as fleet, proxy_app(fleet.config(tmp_path)) as client:
        await create_index(client)
        assert await _found(client, {HEADER: "never-wrote"}) == []


def _ref(node: str, group: str, uid: int | None) -> NodeTaskRef:
    status = "enqueued" if uid is not None else "failed"
    return NodeTaskRef(node=node, group=group, shards=[0], uid=uid, status=status, error=None)


def test_the_group_to_read_from_is_the_fully_acknowledging_one() -> None:
    refs = [
        _ref("a0", "a", 1),
        _ref("a1", "a", None),
        _ref("b0", "b", 4),
        _ref("b1", "b", 5),
    ]
    assert acknowledging_group(refs) == ("b", (("b0", 4), ("b1", 5)))
    assert acknowledging_group([_ref("a0", "a", 1), _ref("a1", "a", None)]) == (
        "a",
        (("a0", 1),),
    )
    assert acknowledging_group([_ref("a0", "a", None)]) is None
