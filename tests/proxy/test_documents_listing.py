"""Document listing through the proxy over six real devnodes (RF=2, two groups): one global
list whose `total` counts each document once, paged without gaps or duplicates, compared
with a reference devnode holding every document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from miroir_proxy.api.appkeys import STORE

from .conftest import ProxyClient, ShardedIndex, StartProxy

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(
    sharded_index: ShardedIndex, proxy: StartProxy, tmp_path: Path
) -> AsyncIterator[ProxyClient]:
    async with proxy(sharded_index.config(tmp_path)) as running:
        await running.app[STORE].put_index(sharded_index.meta())
        yield running


async def fetch(client: ProxyClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/indexes/books/documents/fetch", json=body)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


@pytest.mark.parametrize("size", [7, 20, 64])
async def test_pages_list_every_document_once(client: ProxyClient, size: int) -> None:
    seen: list[int] = []
    for offset in range(0, 160, size):
        page = await fetch(client, {"offset": offset, "limit": size})
        assert page["total"] == 150
        assert (page["offset"], page["limit"]) == (offset, size)
        assert len(page["results"]) == max(0, min(size, 150 - offset))
        assert all("_miroir_shard" not in doc for doc in page["results"])
        seen.extend(doc["id"] for doc in page["results"])
    assert sorted(seen) == list(range(150))
    assert len(seen) == 150


async def test_filter_fields_and_ids_apply_globally(
    client: ProxyClient, sharded_index: ShardedIndex
) -> None:
    body = {"filter": "color = red AND year > 1970", "fields": ["id", "year"], "limit": 200}
    mine = await fetch(client, body)
    theirs = sharded_index.ask_reference("POST", "/indexes/books/documents/fetch", json=body).json()
    assert mine["total"] == theirs["total"]
    assert sorted(mine["results"], key=lambda d: d["id"]) == theirs["results"]
    by_ids = await fetch(client, {"ids": [3, "17", 140], "fields": ["id"]})
    assert sorted(d["id"] for d in by_ids["results"]) == [3, 17, 140]
    assert by_ids["total"] == 3


async def test_get_listing_matches_post(client: ProxyClient) -> None:
    response = await client.get(
        "/indexes/books/documents", params={"offset": "5", "limit": "9", "fields": "id,tag"}
    )
    assert response.status == 200
    got = await response.json()
    assert got == await fetch(client, {"offset": 5, "limit": 9, "fields": ["id", "tag"]})
    assert all(set(doc) == {"id", "tag"} for doc in got["results"])


@pytest.mark.parametrize(
    ("method", "params", "body"),
    [
        ("POST", None, {"filter": "title = x"}),
        ("POST", None, {"limit": -1}),
        ("POST", None, {"nope": 1}),
        ("GET", {"filter": "title = x"}, None),
        ("GET", {"limit": "x"}, None),
        ("GET", {"nope": "1"}, None),
    ],
)
async def test_errors_are_the_single_node_errors(
    client: ProxyClient,
    sharded_index: ShardedIndex,
    method: str,
    params: dict[str, str] | None,
    body: Any,
) -> None:
    path = "/indexes/books/documents" + ("/fetch" if method == "POST" else "")
    mine = await client.request(method, path, params=params, json=body)
    theirs = sharded_index.ask_reference(method, path, params=params, json=body)
    assert mine.status == theirs.status_code
    assert await mine.json() == theirs.json()


async def test_a_missing_index_is_not_found(client: ProxyClient) -> None:
    response = await client.post("/indexes/nope/documents/fetch", json={})
    assert response.status == 404
    assert (await response.json())["code"] == "index_not_found"


@pytest.mark.parametrize("sort", [["rank:desc"], ["year:asc", "rank:asc"]])
async def test_sorted_pages_match_one_node(
    client: ProxyClient, sharded_index: ShardedIndex, sort: list[str]
) -> None:
    body: dict[str, Any] = {"sort": sort, "fields": ["id", "tag"], "limit": 200}
    theirs = sharded_index.ask_reference("POST", "/indexes/books/documents/fetch", json=body)
    assert theirs.status_code == 200, theirs.text
    pages: list[dict[str, Any]] = []
    for offset in range(0, 150, 40):
        page = await fetch(client, {**body, "offset": offset, "limit": 40})
        assert page["total"] == 150
        pages.extend(page["results"])
    assert pages == theirs.json()["results"]  # sort fields fetched for the merge are dropped
