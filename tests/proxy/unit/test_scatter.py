"""Scatter/gather and the read plans over in-process fake nodes that record every request.

Each fake node holds the documents of the shards placement gives it and answers a search
with its hits in score order, honouring only the `_miroir_shard IN [...]` restriction, so
these tests see exactly which node was asked for which shards, and what the merge made of
the answers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from miroir_proxy.config import MiroirConfig, from_mapping
from miroir_proxy.core.covering import Covering, covering_set
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.core.planner import SHARD_FIELD
from miroir_proxy.dispatch import listing, reads
from miroir_proxy.dispatch.broadcast import NodeRefused
from miroir_proxy.dispatch.cluster import Cluster, topology_from_config
from miroir_proxy.dispatch.reads import IndexView
from miroir_proxy.nodes.client import NodeClient

SHARDS = 8
DOCS: list[dict[str, Any]] = [
    {"id": i, "score": ((i * 37) % 101) / 101, "color": ("red", "blue", "green")[i % 3]}
    for i in range(60)
]
RESTRICTION = re.compile(r"_miroir_shard IN \[([0-9, ]*)\]")


@dataclass
class FakeNode:
    node_id: str
    held: frozenset[int] = frozenset()
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    fail_slices: bool = False  # answer counts, then 500 on every request for documents
    flat: bool = False  # every hit ties (a placeholder search)
    server: TestServer | None = None

    def shards_asked(self, body: dict[str, Any]) -> set[int]:
        filters = body.get("filter")
        for item in filters if isinstance(filters, list) else [filters]:
            found = RESTRICTION.fullmatch(item) if isinstance(item, str) else None
            if found:
                return {int(s) for s in found.group(1).split(",")}
        return set(self.held)

    def documents(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        shards = self.shards_asked(body)
        docs = [
            {**d, SHARD_FIELD: shard_of(str(d["id"]), SHARDS)}
            for d in DOCS
            if shard_of(str(d["id"]), SHARDS) in shards & self.held
        ]
        return sorted(docs, key=lambda d: (-d["score"], d["id"]))

    async def search(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.status != 200:
            return web.json_response({"message": "no", "code": "x"}, status=self.status)
        docs = self.documents(body)
        if self.flat:
            docs.sort(key=lambda d: d["id"])
        hits = [{**d, "_rankingScore": 1.0 if self.flat else d["score"]} for d in docs]
        if "attributesToRetrieve" in body:
            keep = {*body["attributesToRetrieve"], "_rankingScore"}
            hits = [{k: v for k, v in hit.items() if k in keep} for hit in hits]
        if "page" in body:
            per_page = body["hitsPerPage"]
            answer: dict[str, Any] = {"hits": hits[:per_page], "query": ""}
            answer.update(hitsPerPage=per_page, page=1, totalHits=len(hits))
        else:
            offset, limit = body.get("offset", 0), body.get("limit", 20)
            answer = {"hits": hits[offset : offset + limit], "query": ""}
            answer["estimatedTotalHits"] = len(hits)
        if body.get("facets"):
            counts: dict[str, int] = {}
            for d in docs:
                counts[d["color"]] = counts.get(d["color"], 0) + 1
            answer["facetDistribution"] = {"color": counts, SHARD_FIELD: {"1": 1}}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def fetch(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.fail_slices and body["limit"] > 0:
            return web.json_response({"message": "gone"}, status=503)
        docs = sorted(self.documents(body), key=lambda d: d["id"])
        for rule in reversed(body.get("sort") or []):
            name, _, direction = rule.partition(":")
            docs.sort(key=lambda d: d[name], reverse=direction == "desc")
        page = docs[body["offset"] : body["offset"] + body["limit"]]
        answer = {"results": page, "offset": body["offset"], "limit": body["limit"]}
        return web.json_response({**answer, "total": len(docs)})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/indexes/{uid}/search", self.search)
        app.router.add_post("/indexes/{uid}/documents/fetch", self.fetch)
        return app


@dataclass
class Fleet:
    cluster: Cluster
    nodes: dict[str, FakeNode]

    def asked(self) -> dict[str, list[dict[str, Any]]]:
        return {n: node.requests for n, node in self.nodes.items() if node.requests}

    def reset(self) -> None:
        for node in self.nodes.values():
            node.requests.clear()

    async def stop(self, *node_ids: str) -> None:
        for node_id in node_ids:
            server = self.nodes[node_id].server
            assert server is not None
            await server.close()


GROUPS = {"g0": ["a0", "a1", "a2"], "g1": ["b0", "b1", "b2"]}


def fleet_config(urls: dict[str, str], policy: str = "partial") -> MiroirConfig:
    return from_mapping(
        {
            "shards": SHARDS,
            "replication_factor": 2,
            "replica_groups": [
                {"id": g, "nodes": [{"id": n, "url": urls[n]} for n in nodes]}
                for g, nodes in GROUPS.items()
            ],
            "unavailable_shards": policy,
            "timeouts": {"node_read_ms": 2000},
        },
        env={},
    )


@pytest.fixture(params=["partial"])
async def fakes(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    nodes = {n: FakeNode(n) for ids in GROUPS.values() for n in ids}
    for node in nodes.values():
        node.server = TestServer(node.app())
        await node.server.start_server()
    config = fleet_config(
        {n: str(node.server.make_url("")).rstrip("/") for n, node in nodes.items() if node.server},
        request.param,
    )
    topology = topology_from_config(config)
    async with NodeClient.from_config(config) as client:
        cluster = Cluster(config, topology, client)
        for group in topology.groups:
            for node_id, held in cluster.placement(group, SHARDS).node_shards.items():
                nodes[node_id].held = held
        yield Fleet(cluster, nodes)
    for node in nodes.values():
        if node.server is not None:
            await node.server.close()


VIEW = IndexView("books", SHARDS, "id", {})
BY_SCORE = sorted(DOCS, key=lambda d: (-d["score"], d["id"]))


def ids(hits: Sequence[dict[str, Any]]) -> list[int]:
    return [hit["id"] for hit in hits]


async def test_each_node_is_asked_only_for_the_shards_it_serves(fakes: Fleet) -> None:
    result = await reads.search(fakes.cluster, VIEW, {"q": "x", "limit": 5})
    asked = [
        (node_id, fakes.nodes[node_id].shards_asked(body))
        for node_id, bodies in fakes.asked().items()
        for body in bodies
    ]
    shards = [s for _, served in asked for s in served]
    assert sorted(shards) == list(range(SHARDS))  # every shard once, no replica twice
    assert set(fakes.asked()) <= set(GROUPS["g0"]) or set(fakes.asked()) <= set(GROUPS["g1"])
    for node_id, served in asked:
        assert served <= fakes.nodes[node_id].held
    for bodies in fakes.asked().values():
        assert all(b["showRankingScore"] is True and b["offset"] == 0 for b in bodies)
        assert all(SHARD_FIELD in str(b["filter"]) for b in bodies)  # RF=2: always restricted
    assert ids(result.body["hits"]) == ids(BY_SCORE[:5])
    assert result.degraded == ()


async def test_merged_pages_equal_one_node_order(fakes: Fleet) -> None:
    pages = []
    for offset in range(0, 50, 10):
        answer = await reads.search(fakes.cluster, VIEW, {"offset": offset, "limit": 10})
        assert answer.body["estimatedTotalHits"] == len(DOCS)
        assert answer.body["offset"] == offset
        pages.extend(ids(answer.body["hits"]))
    assert pages == ids(BY_SCORE[:50])
    fakes.reset()
    page3 = await reads.search(fakes.cluster, VIEW, {"page": 3, "hitsPerPage": 7})
    assert ids(page3.body["hits"]) == ids(BY_SCORE[14:21])
    assert page3.body["totalHits"] == len(DOCS)
    assert page3.body["totalPages"] == 9
    assert fakes.asked()
    for bodies in fakes.asked().values():
        assert all(b["page"] == 1 and b["hitsPerPage"] == 21 for b in bodies)


def steer(fleet: Fleet, monkeypatch: pytest.MonkeyPatch, turn: int) -> None:
    """Serve the next reads from the covering of round-robin `turn` (group, then replica
    rotation), whatever turn the cluster itself would take."""
    cluster = fleet.cluster
    groups = list(cluster.topology.search_groups())
    groups = groups[turn % 2 :] + groups[: turn % 2]

    def covering(
        shards: int, only: Sequence[int] | None = None, *, pinned: bool = False
    ) -> Covering:
        placed = [(g.id, cluster.placement(g, shards)) for g in groups]
        return covering_set(placed, cluster.is_healthy, rotation=turn // 2, shards=only)

    monkeypatch.setattr(cluster, "covering", covering)


def shard_major(docs: Sequence[dict[str, Any]]) -> list[int]:
    """The replica-independent order of tied hits and of listed documents: by shard, then
    in a node's order (the fakes order by id)."""
    return [d["id"] for d in sorted(docs, key=lambda d: (shard_of(str(d["id"]), SHARDS), d["id"]))]


@pytest.mark.parametrize("body", [{}, {"attributesToRetrieve": ["color"]}])
async def test_pages_of_tied_hits_do_not_depend_on_the_replicas_serving_them(
    fakes: Fleet, body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for node in fakes.nodes.values():
        node.flat = True
    whole = await reads.search(fakes.cluster, VIEW, {**body, "limit": 60})
    kept = body.get("attributesToRetrieve") or list(DOCS[0])
    assert whole.body["hits"] == [{k: DOCS[i][k] for k in kept} for i in shard_major(DOCS)]
    for size in (7, 10, 25):
        pages: list[dict[str, Any]] = []
        served: set[frozenset[str]] = set()
        for turn, offset in enumerate(range(0, 60, size)):
            steer(fakes, monkeypatch, turn)
            fakes.reset()
            page = await reads.search(
                fakes.cluster, VIEW, {**body, "offset": offset, "limit": size}
            )
            served.add(frozenset(fakes.asked()))
            pages.extend(page.body["hits"])
        assert pages == whole.body["hits"]
        assert len(served) > 1  # the pages really came from different nodes
    assert all(SHARD_FIELD not in hit for hit in pages)


async def test_hits_never_show_reserved_fields_or_unasked_scores(fakes: Fleet) -> None:
    result = await reads.search(fakes.cluster, VIEW, {"facets": ["*"]})
    assert all(set(hit) == {"id", "score", "color"} for hit in result.body["hits"])
    counts = result.body["facetDistribution"]
    assert set(counts) == {"color"}  # `_miroir_shard` facet dropped
    assert sum(counts["color"].values()) == len(DOCS)
    shown = await reads.search(fakes.cluster, VIEW, {"showRankingScore": True, "limit": 1})
    assert shown.body["hits"][0]["_rankingScore"] == BY_SCORE[0]["score"]


async def test_a_pinned_primary_key_asks_only_the_owning_shard(fakes: Fleet) -> None:
    await reads.search(fakes.cluster, VIEW, {"filter": "id = 17"})
    bodies = [b for bs in fakes.asked().values() for b in bs]
    assert len(bodies) == 1
    assert bodies[0]["filter"] == ["id = 17", f"{SHARD_FIELD} IN [{shard_of('17', SHARDS)}]"]


async def test_the_tenant_filter_is_anded_as_an_array_item(fakes: Fleet) -> None:
    view = IndexView("books", SHARDS, "id", {}, tenant_filter="color = red")
    await reads.search(fakes.cluster, view, {"filter": "score > 0.5"})
    for bodies in fakes.asked().values():
        assert bodies[0]["filter"][:2] == ["score > 0.5", "color = red"]


async def test_a_dead_replica_is_replaced_by_another_in_its_group(fakes: Fleet) -> None:
    await fakes.stop("a0")
    for _ in range(4):  # round robin visits both groups
        result = await reads.search(fakes.cluster, VIEW, {"limit": 60})
        assert result.degraded == ()
        assert ids(result.body["hits"]) == ids(BY_SCORE)


async def test_a_dead_group_falls_back_to_the_other_group(fakes: Fleet) -> None:
    await fakes.stop("a0", "a1", "a2")
    for _ in range(2):
        fakes.reset()
        result = await reads.search(fakes.cluster, VIEW, {"limit": 60})
        assert result.degraded == ()
        assert ids(result.body["hits"]) == ids(BY_SCORE)
        assert set(fakes.asked()) <= {"b0", "b1", "b2"}


async def test_shards_no_group_can_serve_are_degraded(fakes: Fleet) -> None:
    await fakes.stop("a0", "a1", "a2", "b0", "b1")
    result = await reads.search(fakes.cluster, VIEW, {"limit": 60})
    missing = set(range(SHARDS)) - fakes.nodes["b2"].held
    assert missing
    assert set(result.degraded) == missing
    assert all(shard_of(str(i), SHARDS) not in missing for i in ids(result.body["hits"]))
    assert reads.enforce_policy(fakes.cluster, result.degraded) == {
        "X-Miroir-Degraded": "shards=" + ",".join(map(str, sorted(missing)))
    }


@pytest.mark.parametrize("fakes", ["error"], indirect=True)
async def test_the_error_policy_refuses_a_degraded_read(fakes: Fleet) -> None:
    with pytest.raises(MiroirError) as caught:
        reads.enforce_policy(fakes.cluster, (1, 5))
    assert caught.value.code == "miroir_shard_unavailable"
    assert caught.value.status == 503


async def test_node_5xx_is_retried_and_4xx_is_passed_through(fakes: Fleet) -> None:
    fakes.nodes["a0"].status = 500
    fakes.nodes["b0"].status = 500
    result = await reads.search(fakes.cluster, VIEW, {"limit": 60})
    assert ids(result.body["hits"]) == ids(BY_SCORE)
    for node in fakes.nodes.values():
        node.status = 400
    with pytest.raises(NodeRefused) as caught:
        await reads.search(fakes.cluster, VIEW, {})
    assert caught.value.response.status == 400
    assert orjson.loads(caught.value.response.body) == {"message": "no", "code": "x"}


@pytest.mark.parametrize(
    "body", [[], {"limit": -1}, {"offset": "1"}, {"filter": 3}, {"showRankingScore": 1}]
)
async def test_bodies_the_proxy_cannot_plan_are_left_to_a_node(fakes: Fleet, body: Any) -> None:
    with pytest.raises(reads.NotUnderstood):
        await reads.search(fakes.cluster, VIEW, body)
    assert fakes.asked() == {}


async def test_distinct_field_is_fetched_for_the_merge_and_stripped(fakes: Fleet) -> None:
    body = {"distinct": "color", "attributesToRetrieve": ["id"], "limit": 10}
    result = await reads.search(fakes.cluster, VIEW, body)
    for bodies in fakes.asked().values():
        assert bodies[0]["attributesToRetrieve"] == ["id", "color", SHARD_FIELD]
    # The fake nodes do not dedupe: the merge keeps the best hit of each colour.
    assert len(result.body["hits"]) == 3
    assert all(set(hit) == {"id"} for hit in result.body["hits"])


async def test_listing_pages_cover_every_document_once(fakes: Fleet) -> None:
    seen: list[int] = []
    for offset in range(0, 70, 9):
        page = await listing.list_documents(
            fakes.cluster, "books", SHARDS, "id", {"offset": offset, "limit": 9}
        )
        assert page.body["total"] == len(DOCS)
        assert all(SHARD_FIELD not in doc for doc in page.body["results"])
        seen.extend(doc["id"] for doc in page.body["results"])
    assert sorted(seen) == [d["id"] for d in DOCS]


async def test_listing_pages_are_shard_major_whichever_replicas_serve_them(
    fakes: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sort in (None, ["color:asc"]):
        extra = {"sort": sort} if sort else {}
        seen: list[int] = []
        served: set[frozenset[str]] = set()
        for turn, offset in enumerate(range(0, 60, 8)):
            steer(fakes, monkeypatch, turn)
            fakes.reset()
            page = await listing.list_documents(
                fakes.cluster, "books", SHARDS, "id", {"offset": offset, "limit": 8, **extra}
            )
            served.add(frozenset(fakes.asked()))
            seen.extend(doc["id"] for doc in page.body["results"])
        expected = shard_major(DOCS)
        if sort:
            expected.sort(key=lambda i: DOCS[i]["color"])  # stable: ties stay shard-major
        assert seen == expected
        assert len(served) > 1


async def test_listing_fetches_only_the_slices_it_returns(fakes: Fleet) -> None:
    await listing.list_documents(fakes.cluster, "books", SHARDS, "id", {"limit": 3})
    fetches = [b for bs in fakes.asked().values() for b in bs if b["limit"] > 0]
    assert len(fetches) == 1  # the first node of the covering set has ≥ 3 documents
    assert fetches[0]["offset"] == 0 and fetches[0]["limit"] == 3


def test_get_listing_parameters_convert_like_meilisearch() -> None:
    body = listing.body_from_params(
        {"offset": "2", "limit": "5", "fields": "id,title", "filter": '["a = 1"]'}
    )
    assert body == {"offset": 2, "limit": 5, "fields": ["id", "title"], "filter": ["a = 1"]}
    assert listing.body_from_params({"filter": "a = 1"}) == {"filter": "a = 1"}
    for bad in ({"limit": "-1"}, {"nope": "1"}, {"retrieveVectors": "yes"}):
        with pytest.raises(reads.NotUnderstood):
            listing.body_from_params(bad)


async def test_listing_starts_over_without_a_node_lost_between_rounds(fakes: Fleet) -> None:
    for node_id in ("a0", "b0"):
        fakes.nodes[node_id].fail_slices = True
    page = await listing.list_documents(fakes.cluster, "books", SHARDS, "id", {"limit": 100})
    assert sorted(doc["id"] for doc in page.body["results"]) == [d["id"] for d in DOCS]
    assert page.body["total"] == len(DOCS)
    assert page.degraded == ()
    refused = [b for n in ("a0", "b0") for b in fakes.nodes[n].requests if b["limit"] > 0]
    assert refused  # the first attempt did lose a node
