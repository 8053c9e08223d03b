"""Beyond the acceptance list: the other read and write routes answer like one node too —
document listing, multi-search (plain and federated), facet search, distinct, highlighting,
stats, index objects, NDJSON/CSV bodies, primary-key inference and the deletions.

Times, request uids and index timestamps legitimately differ and are dropped before
comparing. Document listing order is not compared: a node lists in insertion order, which a
sharded fleet cannot know (see the listing test).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .conftest import MASTER_KEY, sdk, wait_done
from .parity_data import Targets, both, load, make_documents

UID = "e2e_reads"
OTHER = "e2e_reads_other"
COUNT = 300
DOCUMENTS = make_documents(COUNT)
VOLATILE = frozenset({"processingTimeMs", "requestUid", "createdAt", "updatedAt"})


def stable(value: Any) -> Any:
    """`value` without the fields that differ between any two servers."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def call(method: str, path: str, **kwargs: Any) -> Any:
    """A raw request for `both`: (status, stable body)."""

    def ask(client: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {MASTER_KEY}", **kwargs.pop("headers", {})}
        answer = requests.request(
            method, client.config.url + path, headers=headers, timeout=10, **kwargs
        )
        return answer.status_code, stable(answer.json()) if answer.content else None

    return ask


@pytest.fixture(scope="module")
def targets(e2e_cluster: DevCluster, devnode: NodeProcess, master_key: str) -> Targets:
    pair = {"proxy": sdk(e2e_cluster.url, master_key), "node": sdk(devnode.url, master_key)}
    both(pair, lambda client: load(client, UID, DOCUMENTS))
    both(pair, lambda client: load(client, OTHER, DOCUMENTS[:60]))
    return pair


SAME_ANSWERS: dict[str, tuple[Any, ...]] = {
    "search-get": ("GET", f"/indexes/{UID}/search?q=amber&limit=3&sort=rank:asc"),
    "distinct": ("POST", f"/indexes/{UID}/search", {"distinct": "color", "sort": ["rank:asc"]}),
    "highlight-crop": (
        "POST",
        f"/indexes/{UID}/search",
        {
            "q": "amber",
            "limit": 3,
            "sort": ["rank:asc"],
            "attributesToHighlight": ["title"],
            "attributesToCrop": ["title"],
            "cropLength": 2,
            "showMatchesPosition": True,
            "attributesToRetrieve": ["id", "title"],
        },
    ),
    "threshold": (
        "POST",
        f"/indexes/{UID}/search",
        {"q": "amber delta", "rankingScoreThreshold": 0.9, "limit": 0},
    ),
    "page-past-the-end": (
        "POST",
        f"/indexes/{UID}/search",
        {"page": 4, "hitsPerPage": 100, "sort": ["rank:asc"], "attributesToRetrieve": ["id"]},
    ),
    "facets-and-stats": (
        "POST",
        f"/indexes/{UID}/search",
        {"facets": ["rank", "tags", "color"], "limit": 0, "filter": "color = red"},
    ),
    "facet-search": ("POST", f"/indexes/{UID}/facet-search", {"facetName": "tags"}),
    "facet-search-query": (
        "POST",
        f"/indexes/{UID}/facet-search",
        {"facetName": "color", "facetQuery": "re", "q": "amber"},
    ),
    "multi-search": (
        "POST",
        "/multi-search",
        {
            "queries": [
                {"indexUid": UID, "q": "amber", "limit": 4, "sort": ["rank:asc"]},
                {"indexUid": OTHER, "q": "ember", "limit": 2, "sort": ["rank:desc"]},
            ]
        },
    ),
    "federated": (
        "POST",
        "/multi-search",
        {
            # Every hit fits in one page: equal scores tie-break on internal ids, which
            # differ between a node and a fleet, so only whole score groups compare.
            "federation": {"limit": 100},
            "queries": [
                {"indexUid": UID, "q": "amber delta", "filter": "rank < 40"},
                {"indexUid": OTHER, "q": "cedar ember", "filter": "rank < 30"},
            ],
        },
    ),
    "index": ("GET", f"/indexes/{UID}"),
}


@pytest.mark.parametrize("name", list(SAME_ANSWERS))
def test_read_routes_answer_like_one_node(targets: Targets, name: str) -> None:
    method, path, *body = SAME_ANSWERS[name]
    kwargs = {"json": body[0]} if body else {}
    proxy, node = both(targets, call(method, path, **kwargs))
    assert node[0] == 200, node
    if name == "federated":
        assert node[1]["estimatedTotalHits"] == len(node[1]["hits"]) > 1
        proxy, node = (_ties_by_id(a[1]) for a in (proxy, node))
    assert proxy == node


def _ties_by_id(answer: dict[str, Any]) -> dict[str, Any]:
    def key(hit: dict[str, Any]) -> tuple[float, str, int]:
        return (
            -hit["_federation"]["weightedRankingScore"],
            hit["_federation"]["indexUid"],
            hit["id"],
        )

    return {**answer, "hits": sorted(answer["hits"], key=key)}


def test_index_and_instance_stats_count_each_document_once(targets: Targets) -> None:
    def counts(client: Any) -> Any:
        index = call("GET", f"/indexes/{UID}/stats")(client)[1]
        instance = call("GET", "/stats")(client)[1]["indexes"][UID]
        return [(s["numberOfDocuments"], s["fieldDistribution"]) for s in (index, instance)]

    proxy, node = both(targets, counts)
    assert proxy == node
    assert proxy[0][0] == COUNT


def test_index_listing_shows_the_same_index_objects(targets: Targets) -> None:
    # Other modules share both servers, so only this module's indexes are compared.
    def ours(client: Any) -> Any:
        status, body = call("GET", "/indexes", params={"limit": 1000})(client)
        return status, [i for i in body["results"] if i["uid"] in (UID, OTHER)], set(body)

    proxy, node = both(targets, ours)
    assert proxy == node
    assert [i["uid"] for i in proxy[1]] == sorted([UID, OTHER])


def test_document_listing_pages_cover_every_document_once(targets: Targets) -> None:
    def listing(client: Any) -> Any:
        def page(offset: int, limit: int, **extra: Any) -> Any:
            params = {"offset": offset, "limit": limit, "fields": "id,rank", **extra}
            return call("GET", f"/indexes/{UID}/documents", params=params)(client)[1]

        whole = page(0, COUNT)
        paged = [d for offset in range(0, COUNT, 25) for d in page(offset, 25)["results"]]
        fetched = call(
            "POST",
            f"/indexes/{UID}/documents/fetch",
            json={"filter": "color = red", "limit": 500, "fields": ["id"]},
        )(client)[1]
        by_ids = call(
            "POST", f"/indexes/{UID}/documents/fetch", json={"ids": [250, 5, 3], "fields": ["id"]}
        )(client)[1]
        return [
            whole["total"],
            paged == whole["results"],
            sorted(d["id"] for d in paged),
            fetched["total"],
            sorted(d["id"] for d in fetched["results"]),
            sorted(d["id"] for d in by_ids["results"]),
        ]

    proxy, node = both(targets, listing)
    for side, answer in (("node", node), ("proxy", proxy)):
        listed = answer[2]
        repeated = len(listed) - len(set(listed))
        assert answer[1] is True, f"{side}: pages of 25 differ from one page ({repeated} repeats)"
    assert proxy == node
    assert proxy[2] == list(range(COUNT))


def test_ndjson_csv_and_primary_key_inference_store_the_same_documents(
    targets: Targets,
) -> None:
    def write(client: Any) -> Any:
        url = f"{client.config.url}/indexes/e2e_bodies/documents"
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        bodies = [
            ("application/x-ndjson", b'{"doc_id": "a1", "n": 1}\n{"doc_id": "b2", "n": 2}\n'),
            ("text/csv", b"doc_id,n:number,word\nc3,3,x\nd4,4,y\n"),
        ]
        statuses = []
        for content_type, body in bodies:
            answer = requests.post(
                url, data=body, headers={**headers, "Content-Type": content_type}, timeout=10
            )
            statuses.append(wait_done(client, answer.json()["taskUid"]).status)
        listed = client.index("e2e_bodies").get_documents({"limit": 10}).results
        documents = sorted((dict(d) for d in listed), key=lambda d: d["doc_id"])
        primary_key = client.get_index("e2e_bodies").primary_key
        wait_done(client, client.delete_index("e2e_bodies").task_uid)
        return [statuses, documents, primary_key]

    proxy, node = both(targets, write)
    assert proxy == node
    assert proxy[0] == ["succeeded", "succeeded"] and proxy[2] == "doc_id"


def test_deletions_report_the_same_details_and_counts(targets: Targets) -> None:
    def delete(client: Any) -> Any:
        load(client, "e2e_deletes", DOCUMENTS)
        index = client.index("e2e_deletes")
        batch = client.http.post("indexes/e2e_deletes/documents/delete-batch", [1, 2, 3, 99_999])
        steps = [
            batch["taskUid"],
            index.delete_documents(filter="rank < 30").task_uid,
            index.delete_document(150).task_uid,
        ]
        seen: list[Any] = []
        for task_uid in steps:
            done = wait_done(client, task_uid)
            seen.append((done.status, done.type, done.details))
            seen.append(index.get_stats().number_of_documents)
        cleared = wait_done(client, index.delete_all_documents().task_uid)
        seen.append((cleared.details, index.get_stats().number_of_documents))
        wait_done(client, client.delete_index("e2e_deletes").task_uid)
        return seen

    proxy, node = both(targets, delete)
    assert proxy == node
    assert proxy[-1] == ({"deletedDocuments": COUNT - 3 - 30 - 1}, 0)
