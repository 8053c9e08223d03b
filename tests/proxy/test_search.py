"""Search through the proxy over six real devnodes (2 groups x 3 nodes, RF=2, 8 shards),
compared with one reference devnode holding every document.

Equal ranking scores may be ordered differently by a node than by the merge (a node breaks
ties by internal document id), so relevance answers are compared as a score sequence plus
the set of documents at each score; `sort` on a unique field must match exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import groupby
from pathlib import Path
from typing import Any

import meilisearch
import pytest
import requests

from miroir_proxy.api.appkeys import STORE
from miroir_proxy.core.assignment import plan
from miroir_proxy.core.hashing import shard_of

from .conftest import (
    READ_GROUPS,
    READ_KEY,
    READ_SHARDS,
    ProxyClient,
    ShardedIndex,
    StartProxy,
    sharded_devnodes,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(
    sharded_index: ShardedIndex, proxy: StartProxy, tmp_path: Path
) -> AsyncIterator[ProxyClient]:
    async with proxy(sharded_index.config(tmp_path)) as running:
        await running.app[STORE].put_index(sharded_index.meta())
        yield running


async def search(client: ProxyClient, body: dict[str, Any], uid: str = "books") -> dict[str, Any]:
    response = await client.post(f"/indexes/{uid}/search", json=body)
    assert response.status == 200, await response.text()
    assert "X-Miroir-Degraded" not in response.headers
    answer: dict[str, Any] = await response.json()
    return answer


def reference(index: ShardedIndex, body: dict[str, Any]) -> dict[str, Any]:
    response = index.ask_reference("POST", f"/indexes/{index.uid}/search", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def by_score(hits: list[dict[str, Any]]) -> list[tuple[float, set[int]]]:
    return [
        (score, {hit["id"] for hit in group})
        for score, group in groupby(hits, key=lambda hit: hit["_rankingScore"])
    ]


@pytest.mark.parametrize("q", ["quick fox", "lazy", "river stone light", ""])
async def test_relevance_order_matches_one_node(
    client: ProxyClient, sharded_index: ShardedIndex, q: str
) -> None:
    body = {"q": q, "limit": 200, "showRankingScore": True}
    mine, theirs = await search(client, body), reference(sharded_index, body)
    assert by_score(mine["hits"]) == by_score(theirs["hits"])
    assert mine["estimatedTotalHits"] == theirs["estimatedTotalHits"]
    assert all("_miroir_shard" not in hit for hit in mine["hits"])


@pytest.mark.parametrize("sort", [["rank:asc"], ["rank:desc"], ["year:desc", "rank:asc"]])
async def test_sorted_order_matches_one_node_exactly(
    client: ProxyClient, sharded_index: ShardedIndex, sort: list[str]
) -> None:
    body = {"q": "fox", "sort": sort, "limit": 200, "filter": "color != green"}
    mine, theirs = await search(client, body), reference(sharded_index, body)
    assert [h["id"] for h in mine["hits"]] == [h["id"] for h in theirs["hits"]]
    assert mine["hits"] == theirs["hits"]  # no score fields leak when not asked for


@pytest.mark.parametrize("sort", [None, ["rank:asc"]])
async def test_five_pages_of_ten_equal_one_page_of_fifty(
    client: ProxyClient, sort: list[str] | None
) -> None:
    extra = {"sort": sort} if sort else {}
    whole = await search(client, {"limit": 50, **extra})
    pages = [await search(client, {"offset": o, "limit": 10, **extra}) for o in range(0, 50, 10)]
    assert [h["id"] for p in pages for h in p["hits"]] == [h["id"] for h in whole["hits"]]
    numbered = [await search(client, {"page": p, "hitsPerPage": 10, **extra}) for p in range(1, 6)]
    assert [h["id"] for p in numbered for h in p["hits"]] == [h["id"] for h in whole["hits"]]
    assert numbered[0]["totalHits"] == 150 and numbered[0]["totalPages"] == 15


async def test_facets_and_stats_sum_to_one_node(
    client: ProxyClient, sharded_index: ShardedIndex
) -> None:
    body = {"q": "quick", "facets": ["color", "year", "tag"], "limit": 0}
    mine, theirs = await search(client, body), reference(sharded_index, body)
    assert mine["facetDistribution"] == theirs["facetDistribution"]
    assert mine["facetStats"] == theirs["facetStats"]
    everything = await search(client, {"facets": ["*"], "limit": 0})
    assert set(everything["facetDistribution"]) == {"color", "year", "tag", "id"}
    assert sum(everything["facetDistribution"]["color"].values()) == 150


async def test_distinct_is_global(client: ProxyClient, sharded_index: ShardedIndex) -> None:
    body = {"distinct": "tag", "attributesToRetrieve": ["id"], "sort": ["rank:asc"]}
    mine, theirs = await search(client, body), reference(sharded_index, body)
    assert mine["hits"] == theirs["hits"]
    assert len(mine["hits"]) == 5


async def test_get_search_converts_the_query_string(client: ProxyClient) -> None:
    response = await client.get(
        "/indexes/books/search",
        params={"q": "fox", "sort": "rank:asc", "limit": "7", "filter": "color = red"},
    )
    assert response.status == 200
    got = await response.json()
    posted = await search(
        client, {"q": "fox", "sort": ["rank:asc"], "limit": 7, "filter": "color = red"}
    )
    assert [h["id"] for h in got["hits"]] == [h["id"] for h in posted["hits"]]
    assert got["requestUid"] != posted["requestUid"]


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/indexes/books/search", {"filter": "doggo = 1"}),
        ("POST", "/indexes/books/search", {"sort": ["title:asc"]}),
        ("POST", "/indexes/books/search", {"limit": "ten"}),
        ("POST", "/indexes/books/search", {"q": "x", "unknown": 1}),
        ("GET", "/indexes/books/search", {"limit": "-3"}),
        ("GET", "/indexes/books/search", {"filter": "color = "}),
        ("POST", "/indexes/books/facet-search", {"facetName": "title"}),
        ("POST", "/multi-search", {"queries": [{"indexUid": "books", "filter": "x = 1"}]}),
        (
            "POST",
            "/multi-search",
            {"federation": {}, "queries": [{"indexUid": "books", "limit": 1}]},
        ),
    ],
)
async def test_errors_are_the_single_node_errors(
    client: ProxyClient, sharded_index: ShardedIndex, method: str, path: str, payload: Any
) -> None:
    if method == "GET":
        mine = await client.get(path, params=payload)
        theirs = sharded_index.ask_reference("GET", path, params=payload)
    else:
        mine = await client.post(path, json=payload)
        theirs = sharded_index.ask_reference("POST", path, json=payload)
    assert mine.status == theirs.status_code
    assert await mine.json() == theirs.json()


async def test_a_missing_index_is_not_found(client: ProxyClient) -> None:
    response = await client.post("/indexes/nope/search", json={})
    assert response.status == 404
    assert (await response.json())["code"] == "index_not_found"


async def test_plain_multi_search_lists_each_answer(
    client: ProxyClient, sharded_index: ShardedIndex
) -> None:
    queries = [{"q": "fox", "sort": ["rank:asc"]}, {"filter": "tag = t1", "sort": ["rank:desc"]}]
    response = await client.post(
        "/multi-search", json={"queries": [{"indexUid": "books", **q} for q in queries]}
    )
    assert response.status == 200
    results = (await response.json())["results"]
    assert [r["indexUid"] for r in results] == ["books", "books"]
    for result, query in zip(results, queries, strict=True):
        assert result["hits"] == reference(sharded_index, query)["hits"]


async def test_federated_search_merges_by_weighted_score(
    client: ProxyClient, sharded_index: ShardedIndex
) -> None:
    body = {
        "federation": {"limit": 30, "facetsByIndex": {"books": ["color"]}},
        "queries": [
            {"indexUid": "books", "q": "quick"},
            {"indexUid": "books", "q": "river", "federationOptions": {"weight": 0.5}},
        ],
    }
    response = await client.post("/multi-search", json=body)
    assert response.status == 200
    mine = await response.json()
    theirs = sharded_index.ask_reference("POST", "/multi-search", json=body).json()
    weighted = [h["_federation"]["weightedRankingScore"] for h in mine["hits"]]
    assert weighted == [h["_federation"]["weightedRankingScore"] for h in theirs["hits"]]
    assert weighted == sorted(weighted, reverse=True)
    assert mine["estimatedTotalHits"] == theirs["estimatedTotalHits"]
    assert (
        mine["facetsByIndex"]["books"]["distribution"]
        == (theirs["facetsByIndex"]["books"]["distribution"])
    )


async def test_facet_search_sums_counts(client: ProxyClient, sharded_index: ShardedIndex) -> None:
    for body in ({"facetName": "tag"}, {"facetName": "color", "facetQuery": "re", "q": "fox"}):
        response = await client.post("/indexes/books/facet-search", json=body)
        assert response.status == 200
        theirs = sharded_index.ask_reference(
            "POST", "/indexes/books/facet-search", json=body
        ).json()
        assert (await response.json())["facetHits"] == theirs["facetHits"]


async def test_dead_nodes_are_routed_around_and_only_then_reported(
    proxy: StartProxy, tmp_path: Path
) -> None:
    with sharded_devnodes(tmp_path / "nodes") as index:
        (tmp_path / "strict").mkdir()
        lenient_config = index.config(tmp_path)
        strict_config = index.config(tmp_path / "strict", unavailable_shards="error")
        async with proxy(lenient_config) as lenient, proxy(strict_config) as strict:
            for running in (lenient, strict):
                await running.app[STORE].put_index(index.meta())
            index.nodes["r0"].kill()
            for _ in range(4):  # the round robin reaches both groups
                answer = await search(lenient, {"limit": 0})
                assert answer["estimatedTotalHits"] == 150
            index.nodes["r1"].kill()
            index.nodes["r2"].kill()
            for _ in range(4):
                answer = await search(strict, {"limit": 0})
                assert answer["estimatedTotalHits"] == 150
            lost = plan(None, READ_GROUPS["g1"], 2, READ_SHARDS)[0]
            for node_id in lost:
                index.nodes[node_id].kill()
            survivor = next(n for n in READ_GROUPS["g1"] if n not in lost)
            missing = set(range(READ_SHARDS)) - {
                s
                for s, row in enumerate(plan(None, READ_GROUPS["g1"], 2, READ_SHARDS))
                if survivor in row
            }
            response = await lenient.post("/indexes/books/search", json={"limit": 200})
            assert response.status == 200
            assert response.headers["X-Miroir-Degraded"] == "shards=" + ",".join(
                str(s) for s in sorted(missing)
            )
            hits = (await response.json())["hits"]
            assert hits and all(shard_of(str(h["id"]), READ_SHARDS) not in missing for h in hits)
            refused = await strict.post("/indexes/books/search", json={})
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "10"
            assert (await refused.json())["code"] == "miroir_shard_unavailable"


async def test_a_tenant_token_filter_is_anded_on_every_node(
    sharded_index: ShardedIndex, proxy: StartProxy, tmp_path: Path
) -> None:
    key_uid = "0b7d4a9e-5b8f-4a57-9a39-8b1f1f3f2c10"
    key = {"uid": key_uid, "actions": ["search"], "indexes": ["books"], "expiresAt": None}
    values = set()
    for node in sharded_index.nodes.values():
        created = requests.post(
            f"{node.url}/keys",
            json=key,
            headers={"Authorization": f"Bearer {READ_KEY}"},
            timeout=10,
        )
        assert created.status_code == 201, created.text
        values.add(created.json()["key"])
    (api_key,) = values  # same uid and master key: the same key on every node
    token = meilisearch.Client("http://unused", READ_KEY).generate_tenant_token(
        key_uid, {"books": {"filter": "color = red"}}, api_key=api_key
    )
    config = sharded_index.config(tmp_path, master_key=READ_KEY)
    async with proxy(config) as client:
        await client.app[STORE].put_index(sharded_index.meta())
        headers = {"Authorization": f"Bearer {token}"}
        body = {"filter": "year > 1980", "limit": 200, "facets": ["color"]}
        response = await client.post("/indexes/books/search", json=body, headers=headers)
        assert response.status == 200, await response.text()
        answer = await response.json()
    expected = reference(sharded_index, {**body, "filter": ["year > 1980", "color = red"]})
    assert answer["facetDistribution"] == {"color": {"red": expected["estimatedTotalHits"]}}
    assert sorted(h["id"] for h in answer["hits"]) == sorted(h["id"] for h in expected["hits"])
