"""The official SDK cannot tell a proxy over 6 nodes (RG=2, RF=2, S=16) from a single node.

Every test asks both targets the same thing and asserts the same observable answer, plus
the property itself (each id found, each unique word found once, ...) so that two equally
wrong answers cannot pass. Both targets are loaded once per module with the same 1,000
documents; tests that change settings or keys use their own index or key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import meilisearch
import pytest

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .conftest import MASTER_KEY, NODE_KEY, http, node_http, sdk, strip, wait_done
from .parity_data import Targets, both, error_of, load, make_documents, unique_word

UID = "e2e_parity"
COUNT = 1_000
UNIQUE = 200
DOCUMENTS = make_documents(COUNT, UNIQUE)


@pytest.fixture(scope="module")
def targets(e2e_cluster: DevCluster, devnode: NodeProcess, master_key: str) -> Targets:
    pair = {"proxy": sdk(e2e_cluster.url, master_key), "node": sdk(devnode.url, master_key)}
    both(pair, lambda client: load(client, UID, DOCUMENTS))
    return pair


@pytest.fixture
def fresh_uid(targets: Targets, request: pytest.FixtureRequest) -> Iterator[str]:
    uid = f"{UID}_{request.node.name.split('[')[0][5:40]}"
    yield uid
    both(targets, lambda client: wait_done(client, client.delete_index(uid).task_uid))


def test_each_of_1000_documents_is_fetched_by_id(targets: Targets) -> None:
    def fetch_all(client: meilisearch.Client) -> list[dict[str, Any]]:
        index = client.index(UID)
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda d: dict(index.get_document(d["id"])), DOCUMENTS))

    proxy, node = both(targets, fetch_all)
    assert node == DOCUMENTS
    assert proxy == DOCUMENTS


def test_documents_are_spread_over_every_node(targets: Targets, e2e_cluster: DevCluster) -> None:
    held = {}
    for node_id, node in e2e_cluster.node_ids().items():
        answer = node_http(node, "GET", f"/indexes/{UID}/documents", params={"limit": 1})
        assert answer.status_code == 200, answer.text
        held[node_id] = answer.json()["total"]
        assert "_miroir_shard" in answer.json()["results"][0]
    assert all(count > 0 for count in held.values()), held
    # Inside each group every document lives on RF=2 of the three nodes.
    assert sum(held[n] for n in ("n0", "n1", "n2")) == 2 * COUNT, held
    assert sum(held[n] for n in ("n3", "n4", "n5")) == 2 * COUNT, held
    stats = both(targets, lambda c: c.index(UID).get_stats().number_of_documents)
    assert stats == (COUNT, COUNT)


def test_a_unique_word_in_each_of_200_documents_is_found_exactly_once(targets: Targets) -> None:
    def find_all(client: meilisearch.Client) -> list[tuple[int, list[int]]]:
        index = client.index(UID)

        def find(i: int) -> tuple[int, list[int]]:
            answer = index.search(unique_word(i), {"limit": 5})
            return answer["estimatedTotalHits"], [hit["id"] for hit in answer["hits"]]

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(find, range(UNIQUE)))

    proxy, node = both(targets, find_all)
    expected = [(1, [i]) for i in range(UNIQUE)]
    assert node == expected
    assert proxy == expected


def test_facet_counts_over_three_colours_sum_to_the_document_count(targets: Targets) -> None:
    ask = {"facets": ["color", "rank"], "limit": 0}
    proxy, node = both(targets, lambda c: c.index(UID).search("", ask))
    assert sum(proxy["facetDistribution"]["color"].values()) == COUNT
    assert proxy["facetDistribution"]["color"] == node["facetDistribution"]["color"]
    assert proxy["estimatedTotalHits"] == node["estimatedTotalHits"] == COUNT
    assert proxy["facetStats"] == node["facetStats"] == {"rank": {"min": 0, "max": COUNT - 1}}
    # 1,000 distinct ranks, capped at maxValuesPerFacet (100) in the same order as one node.
    assert list(proxy["facetDistribution"]["rank"].items()) == list(
        node["facetDistribution"]["rank"].items()
    )
    filtered = both(
        targets, lambda c: c.index(UID).search("amber", {"facets": ["color"], "limit": 0})
    )
    assert filtered[0]["facetDistribution"] == filtered[1]["facetDistribution"]


def _pages(client: meilisearch.Client, query: str, mode: str, extra: dict[str, Any]) -> Any:
    index = client.index(UID)
    ask = {"showRankingScore": True, **extra}
    if mode == "offset":
        pages = [index.search(query, {**ask, "offset": 10 * p, "limit": 10}) for p in range(5)]
        whole = index.search(query, {**ask, "offset": 0, "limit": 50})
        totals = [(p["estimatedTotalHits"], p["offset"], p["limit"]) for p in pages]
    else:
        pages = [index.search(query, {**ask, "page": p, "hitsPerPage": 10}) for p in range(1, 6)]
        whole = index.search(query, {**ask, "page": 1, "hitsPerPage": 50})
        totals = [(p["totalHits"], p["totalPages"], p["page"]) for p in pages]
    paged = [hit for page in pages for hit in page["hits"]]
    return paged, whole["hits"], totals


@pytest.mark.parametrize("mode", ["offset", "page"])
@pytest.mark.parametrize(
    ("query", "extra"),
    [
        ("amber", {}),
        ("", {"sort": ["rank:asc"]}),
        ("birch", {"sort": ["rank:desc"], "filter": "color != green"}),
    ],
    ids=["relevance", "sort", "sort-filter"],
)
def test_five_pages_of_ten_equal_one_page_of_fifty(
    targets: Targets, mode: str, query: str, extra: dict[str, Any]
) -> None:
    proxy, node = both(targets, lambda client: _pages(client, query, mode, extra))
    for side, (paged, whole, _) in (("node", node), ("proxy", proxy)):
        ids, wanted = [hit["id"] for hit in paged], [hit["id"] for hit in whole]
        repeated = sorted(i for i in set(ids) if ids.count(i) > 1)
        skipped = sorted(set(wanted) - set(ids))
        assert ids == wanted, f"{side}: pages repeat {repeated}, skip {skipped}"
        assert paged == whole
    assert proxy[2] == node[2]
    if "sort" in extra:
        assert [strip(hit) for hit in proxy[0]] == [strip(hit) for hit in node[0]]
    else:
        # Equal scores tie-break on internal ids, which differ; the score order cannot.
        assert [hit["_rankingScore"] for hit in proxy[0]] == [
            hit["_rankingScore"] for hit in node[0]
        ]


def test_settings_changes_reach_every_node_and_hide_the_shard_field(
    targets: Targets, e2e_cluster: DevCluster, fresh_uid: str
) -> None:
    both(targets, lambda client: load(client, fresh_uid, DOCUMENTS[:30]))
    change = {
        "searchableAttributes": ["title"],
        "filterableAttributes": ["color"],
        "sortableAttributes": ["rank"],
        "synonyms": {"amber": ["ember"]},
        "typoTolerance": {"minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 8}},
    }

    def apply(client: meilisearch.Client) -> dict[str, Any]:
        index = client.index(fresh_uid)
        done = wait_done(client, index.update_settings(change).task_uid)
        assert done.status == "succeeded", done
        done = wait_done(client, index.update_distinct_attribute("color").task_uid)
        assert done.status == "succeeded", done
        return dict(client.http.get(f"indexes/{fresh_uid}/settings"))

    proxy, node = both(targets, apply)
    assert proxy == node
    assert proxy["filterableAttributes"] == ["color"]
    for node_id, member in e2e_cluster.node_ids().items():
        held = node_http(member, "GET", f"/indexes/{fresh_uid}/settings").json()
        assert set(held["filterableAttributes"]) == {
            "color",
            "_miroir_expires_at",
            "_miroir_shard",
        }, node_id
        shown = {k: v for k, v in held.items() if k != "filterableAttributes"}
        assert shown == {k: v for k, v in proxy.items() if k != "filterableAttributes"}, node_id
    filterable = both(targets, lambda c: c.index(fresh_uid).get_filterable_attributes())
    assert filterable == (["color"], ["color"])


def test_task_uids_are_integers_and_wait_for_task_works(targets: Targets, fresh_uid: str) -> None:
    def run(client: meilisearch.Client) -> list[Any]:
        index = client.index(fresh_uid)
        first = index.add_documents(DOCUMENTS[:40])
        second = index.update_documents([{"id": 1, "color": "teal"}])
        third = index.delete_document(2)
        enqueued = [first, second, third]
        assert all(type(t.task_uid) is int for t in enqueued)
        assert first.task_uid < second.task_uid < third.task_uid
        done = [wait_done(client, t.task_uid) for t in enqueued]
        raw = client.http.get(f"tasks/{third.task_uid}")
        listed = client.get_tasks({"indexUids": [fresh_uid], "types": ["documentDeletion"]})
        return [
            [(t.status, t.type, t.details, t.index_uid) for t in done],
            sorted(raw),
            [t.uid for t in listed.results] == [third.task_uid],
            dict(index.get_document(1)),
        ]

    proxy, node = both(targets, run)
    assert proxy == node
    assert [status for status, *_ in proxy[0]] == ["succeeded"] * 3
    assert proxy[2] is True


def test_a_search_only_key_searches_but_cannot_write(
    targets: Targets, e2e_cluster: DevCluster
) -> None:
    def scenario(client: meilisearch.Client) -> list[Any]:
        key = client.create_key(
            {
                "description": "e2e search",
                "actions": ["search"],
                "indexes": [UID],
                "expiresAt": None,
            }
        )
        try:
            limited = sdk(client.config.url, key.key)
            found = limited.index(UID).search("amber", {"limit": 3})["estimatedTotalHits"]
            write = error_of(lambda: limited.index(UID).add_documents([{"id": 5000}]))
            listing = error_of(lambda: limited.get_keys())
            other = error_of(lambda: limited.index("elsewhere").search(""))
            return [found, write, listing, other, key.uid, key.key]
        finally:
            client.delete_key(key.uid)

    proxy, node = both(targets, scenario)
    assert proxy[:4] == node[:4]
    assert proxy[1] == (403, "invalid_api_key", "auth")
    assert proxy[0] > 0


def test_keys_created_through_the_proxy_exist_identically_on_every_node(
    targets: Targets, e2e_cluster: DevCluster
) -> None:
    client = targets["proxy"]
    key = client.create_key(
        {
            "name": "e2e-everywhere",
            "actions": ["documents.get"],
            "indexes": ["*"],
            "expiresAt": None,
        }
    )
    try:
        # The nodes derive the value from their own master key, the proxy from the clients'.
        on_nodes = hmac.new(NODE_KEY.encode(), key.uid.encode(), hashlib.sha256).hexdigest()
        assert (
            key.key == hmac.new(MASTER_KEY.encode(), key.uid.encode(), hashlib.sha256).hexdigest()
        )
        for node_id, node in e2e_cluster.node_ids().items():
            held = node_http(node, "GET", f"/keys/{key.uid}")
            assert held.status_code == 200, (node_id, held.text)
            assert (held.json()["uid"], held.json()["key"]) == (key.uid, on_nodes), node_id
        reader = sdk(e2e_cluster.url, key.key)
        assert dict(reader.index(UID).get_document(7)) == DOCUMENTS[7]
    finally:
        client.delete_key(key.uid)
    gone = node_http(e2e_cluster.nodes[0], "GET", f"/keys/{key.uid}")
    assert gone.status_code == 404


def test_tenant_tokens_restrict_results_the_same_way(targets: Targets) -> None:
    def scenario(client: meilisearch.Client) -> list[Any]:
        key = client.create_key(
            {
                "description": "e2e tenant",
                "actions": ["search"],
                "indexes": ["*"],
                "expiresAt": None,
            }
        )
        try:
            red = client.generate_tenant_token(
                key.uid, {UID: {"filter": "color = red"}}, api_key=key.key
            )
            tenant = sdk(client.config.url, red).index(UID)
            everything = tenant.search("", {"limit": 1000, "facets": ["color"]})
            narrowed = tenant.search("amber", {"filter": "rank < 500", "limit": 1000})
            other = client.generate_tenant_token(key.uid, ["somewhere_else"], api_key=key.key)
            refused = error_of(lambda: sdk(client.config.url, other).index(UID).search(""))
            forged = error_of(lambda: sdk(client.config.url, red + "x").index(UID).search(""))
            return [
                everything["estimatedTotalHits"],
                everything["facetDistribution"],
                {hit["color"] for hit in everything["hits"]},
                sorted(hit["id"] for hit in narrowed["hits"]),
                refused,
                forged,
            ]
        finally:
            client.delete_key(key.uid)

    proxy, node = both(targets, scenario)
    assert proxy == node
    assert proxy[0] == sum(1 for d in DOCUMENTS if d["color"] == "red")
    assert proxy[2] == {"red"}
    assert proxy[4] == (403, "invalid_api_key", "auth")


def test_the_proxy_answers_health_and_version_like_a_node(targets: Targets) -> None:
    proxy, node = both(targets, lambda c: (c.health(), sorted(c.get_version())))
    assert proxy == node
    assert http("GET", targets["proxy"].config.url + "/health", key=None).status_code == 200
