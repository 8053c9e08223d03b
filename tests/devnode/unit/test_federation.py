"""Multi-search: independent results with "Inside `.queries[i]`" errors, federated merging by
weighted score, per-query restrictions, facetsByIndex / mergeFacets, and the HTTP routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler

from miroir_devnode.app import make_error_middleware
from miroir_devnode.auth import AUTH, AuthContext
from miroir_devnode.engine.federation import multi_search
from miroir_devnode.engine.index import Index
from miroir_devnode.errors import MeiliError
from miroir_devnode.node import NODE_KEY, index_not_found
from miroir_devnode.routes.search import routes
from miroir_devnode.settings import defaults


def make_index(uid: str, docs: list[dict[str, Any]], **settings: Any) -> Index:
    full = defaults()
    full.update(settings)
    index = Index(uid, "id", full)
    index.upsert((str(doc["id"]), doc) for doc in docs)
    return index


@dataclass
class FakeAuth:
    denied: set[str] = field(default_factory=set)
    filters: dict[str, Any] = field(default_factory=dict)

    def allows_index(self, uid: str) -> bool:
        return uid not in self.denied

    def tenant_filter(self, index_uid: str) -> Any:
        return self.filters.get(index_uid)


@dataclass
class FakeNode:
    indexes: dict[str, Index]
    features: dict[str, bool] = field(default_factory=dict)

    def get_index(self, uid: str) -> Index:
        if uid not in self.indexes:
            raise index_not_found(uid)
        return self.indexes[uid]


@pytest.fixture
def node() -> FakeNode:
    fruits = make_index(
        "fruits",
        [
            {"id": 1, "name": "red apple", "color": "red", "price": 3},
            {"id": 2, "name": "green apple", "color": "green", "price": 2},
            {"id": 3, "name": "banana", "color": "yellow", "price": 1},
        ],
        filterableAttributes=["color", "price"],
    )
    cars = make_index(
        "cars",
        [
            {"id": 1, "name": "red apple car", "color": "red", "price": 9000},
            {"id": 2, "name": "blue truck", "color": "blue", "price": 20000},
        ],
        filterableAttributes=["color", "price"],
        faceting={"maxValuesPerFacet": 100, "sortFacetValuesBy": {"*": "count"}},
    )
    return FakeNode({"fruits": fruits, "cars": cars})


def run(node: FakeNode, body: Any, auth: FakeAuth | None = None) -> dict[str, Any]:
    return multi_search(body, get_index=node.get_index, auth=auth or FakeAuth())


def error_of(node: FakeNode, body: Any, auth: FakeAuth | None = None) -> tuple[str, str]:
    with pytest.raises(MeiliError) as caught:
        run(node, body, auth)
    return caught.value.code, caught.value.message


def test_independent_queries_keep_their_own_shape(node: FakeNode) -> None:
    result = run(
        node,
        {
            "queries": [
                {"indexUid": "fruits", "q": "apple", "limit": 1},
                {"indexUid": "cars", "q": "truck", "facets": ["color"]},
            ]
        },
    )
    first, second = result["results"]
    assert list(first)[:2] == ["indexUid", "hits"]
    assert (first["indexUid"], first["limit"], first["estimatedTotalHits"]) == ("fruits", 1, 2)
    assert second["facetDistribution"] == {"color": {"blue": 1}}


def test_tenant_filter_applies_per_index(node: FakeNode) -> None:
    auth = FakeAuth(filters={"fruits": "color = green"})
    result = run(node, {"queries": [{"indexUid": "fruits", "q": "apple"}]}, auth)
    assert [h["id"] for h in result["results"][0]["hits"]] == [2]


def test_errors_name_the_failing_query(node: FakeNode) -> None:
    with pytest.raises(MeiliError) as caught:
        run(node, {"queries": [{"indexUid": "fruits"}, {"indexUid": "nope"}]})
    # The missing index is named in the body, not the URL: 400, not 404.
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        400,
        "index_not_found",
        "Inside `.queries[1]`: Index `nope` not found.",
    )
    code, message = error_of(node, {"queries": [{"indexUid": "fruits", "sort": ["price:asc"]}]})
    assert (code, message.split(": ")[0]) == ("invalid_search_sort", "Inside `.queries[0]`")
    assert error_of(node, {"queries": [{"indexUid": "fruits", "federationOptions": {}}]}) == (
        "invalid_multi_search_federation_options",
        "Inside `.queries[0]`: Using `federationOptions` is not allowed in a non-federated "
        "search.\n - Hint: remove `federationOptions` from query #0 or add `federation` to the "
        "request.",
    )
    assert error_of(node, {"queries": [{"q": "x"}]}) == (
        "missing_index_uid",
        "Missing field `indexUid` inside `.queries[0]`",
    )
    assert error_of(node, {"queries": [{"indexUid": "fruits", "limit": "x"}]})[1] == (
        "Invalid value type at `.queries[0].limit`: expected a positive integer, but found a "
        'string: `"x"`'
    )
    assert error_of(node, {"queries": [{"indexUid": "fruits", "doggo": 1}]})[1].startswith(
        "Unknown field `doggo` inside `.queries[0]`: expected one of `indexUid`, `q`, `offset`"
    )
    assert error_of(node, {})[1] == "Missing field `queries`"


def test_unauthorized_index_is_refused_before_any_query(node: FakeNode) -> None:
    body = {"queries": [{"indexUid": "nope"}, {"indexUid": "cars"}]}
    assert error_of(node, body, FakeAuth(denied={"cars"})) == (
        "invalid_api_key",
        "Inside `.queries[1]`: The provided API key is invalid.",
    )


def test_federated_merge_by_weighted_score(node: FakeNode) -> None:
    body = {
        "federation": {"limit": 3},
        "queries": [
            {"indexUid": "fruits", "q": "apple", "showRankingScore": True},
            {"indexUid": "cars", "q": "apple", "federationOptions": {"weight": 2.0}},
        ],
    }
    result = run(node, body)
    assert list(result)[:5] == ["hits", "processingTimeMs", "limit", "offset", "estimatedTotalHits"]
    assert result["estimatedTotalHits"] == 3
    first = result["hits"][0]
    assert first["_federation"]["indexUid"] == "cars"
    assert first["_federation"]["queriesPosition"] == 1
    scores = [h["_federation"]["weightedRankingScore"] for h in result["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert "_rankingScore" not in first
    fruit = next(h for h in result["hits"] if h["_federation"]["indexUid"] == "fruits")
    assert list(fruit)[-2:] == ["_federation", "_rankingScore"]
    assert all(
        "_rankingScore" in h for h in result["hits"] if h["_federation"]["indexUid"] == "fruits"
    )
    paged = run(node, {**body, "federation": {"hitsPerPage": 2, "page": 2}})
    assert (paged["totalHits"], paged["totalPages"], len(paged["hits"])) == (3, 2, 1)


def test_federated_queries_reject_pagination_and_facets(node: FakeNode) -> None:
    body = {
        "federation": {},
        "queries": [{"indexUid": "fruits"}, {"indexUid": "cars", "limit": 20}],
    }
    assert error_of(node, body) == (
        "invalid_multi_search_query_pagination",
        "Inside `.queries[1]`: Using pagination options is not allowed in federated queries.\n"
        " - Hint: remove `limit` from query #1 or remove `federation` from the request\n"
        " - Hint: pass `federation.limit` and `federation.offset` for pagination in federated "
        "search",
    )
    body = {"federation": {}, "queries": [{"indexUid": "cars", "facets": ["color", "price"]}]}
    assert error_of(node, body) == (
        "invalid_multi_search_query_facets",
        "Inside `.queries[0]`: Using facet options is not allowed in federated queries.\n"
        " - Hint: remove `facets` from query #0 or remove `federation` from the request\n"
        ' - Hint: pass `federation.facetsByIndex.cars: ["color", "price"]` for facets in '
        "federated search",
    )
    weight = {
        "federation": {},
        "queries": [{"indexUid": "cars", "federationOptions": {"weight": -1}}],
    }
    assert error_of(node, weight)[0] == "invalid_multi_search_weight"


def test_facets_by_index_and_merged_facets(node: FakeNode) -> None:
    queries = [{"indexUid": "fruits", "q": "apple"}, {"indexUid": "cars"}]
    facets = {"fruits": ["color"], "cars": ["color", "price"]}
    result = run(node, {"federation": {"facetsByIndex": facets}, "queries": queries})
    assert result["facetsByIndex"]["fruits"] == {
        "distribution": {"color": {"green": 1, "red": 1}},
        "stats": {},
    }
    assert result["facetsByIndex"]["cars"]["stats"] == {"price": {"min": 9000.0, "max": 20000.0}}
    assert "facetDistribution" not in result
    with pytest.raises(MeiliError) as caught:
        run(node, {"federation": {"facetsByIndex": facets, "mergeFacets": {}}, "queries": queries})
    assert caught.value.code == "invalid_multi_search_facet_order"
    # Indexes run in uid order: `cars` fixes the order of `color`, `fruits` then disagrees.
    assert caught.value.message == (
        "Inside `.federation.facetsByIndex.fruits`: Inconsistent order for values in facet "
        "`color`: index `cars` orders by count, but index `fruits` orders alphabetically.\n"
        " - Hint: Remove `federation.mergeFacets` or change `faceting.sortFacetValuesBy` to be "
        "consistent in settings.\n - Note: index `fruits` used in `.queries[0]`"
    )
    node.indexes["cars"].settings["faceting"] = {
        "maxValuesPerFacet": 100,
        "sortFacetValuesBy": {"*": "alpha"},
    }
    merged = run(
        node,
        {
            "federation": {"facetsByIndex": facets, "mergeFacets": {"maxValuesPerFacet": 2}},
            "queries": queries,
        },
    )
    assert merged["facetDistribution"]["color"] == {"blue": 1, "green": 1}
    assert merged["facetStats"] == {"price": {"min": 9000.0, "max": 20000.0}}
    assert "facetsByIndex" not in merged
    bad = {"federation": {"facetsByIndex": {"cars": ["name"]}}, "queries": queries}
    code, message = error_of(node, bad)
    assert code == "invalid_multi_search_facets"
    assert message.startswith(
        "Inside `.federation.facetsByIndex.cars`: Invalid facet distribution:"
    )


def test_federated_index_errors_and_deduplication(node: FakeNode) -> None:
    with pytest.raises(MeiliError) as caught:
        run(node, {"federation": {}, "queries": [{"indexUid": "cars"}, {"indexUid": "nope"}]})
    assert (caught.value.status, caught.value.message) == (
        400,
        "Inside `.queries[1]`: Index `nope` not found.",
    )
    unused = {
        "federation": {"facetsByIndex": {"nope": ["color"]}},
        "queries": [{"indexUid": "cars"}],
    }
    with pytest.raises(MeiliError) as caught:
        run(node, unused)
    assert caught.value.message == (
        "Inside `.federation.facetsByIndex.nope`: Index `nope` not found.\n"
        " - Note: index `nope` is not used in queries"
    )
    twice = {
        "federation": {},
        "queries": [{"indexUid": "fruits", "q": "apple"}, {"indexUid": "fruits", "q": "red"}],
    }
    result = run(node, twice)
    assert sorted(h["id"] for h in result["hits"]) == [1, 2]
    assert result["estimatedTotalHits"] == 2


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    @web.middleware
    async def open_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[AUTH] = AuthContext()
        return await handler(request)

    app = web.Application(middlewares=[make_error_middleware(10**6), open_auth])  # type: ignore[list-item]
    app[NODE_KEY] = node  # type: ignore[misc]
    app.router.add_routes(routes)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_routes(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/indexes/fruits/search?q=apple&limit=1&attributesToRetrieve=id")
    assert response.status == 200
    body = await response.json()
    assert (body["hits"], body["limit"], body["estimatedTotalHits"]) == ([{"id": 1}], 1, 2)
    response = await client.post("/indexes/nope/search", json={"limit": "x"})
    assert (response.status, (await response.json())["code"]) == (400, "invalid_search_limit")
    response = await client.post("/indexes/nope/search", json={})
    assert (response.status, (await response.json())["code"]) == (404, "index_not_found")
    response = await client.post("/multi-search", json={"queries": [{"indexUid": "cars"}]})
    assert [r["indexUid"] for r in (await response.json())["results"]] == ["cars"]
    response = await client.post("/indexes/fruits/facet-search", json={"facetName": "color"})
    assert (await response.json())["facetHits"][0] == {"value": "green", "count": 1}
    response = await client.post("/indexes/fruits/similar", json={"id": 1, "embedder": "manual"})
    assert (response.status, await response.json()) == (
        400,
        {
            "message": "Cannot find embedder with name `manual`.",
            "code": "invalid_similar_embedder",
            "type": "invalid_request",
            "link": "https://docs.meilisearch.com/errors#invalid_similar_embedder",
        },
    )
    response = await client.get("/indexes/fruits/similar?id=1")
    assert (await response.json())["message"] == "Missing parameter `embedder`"
