"""Vector search through Miroir answers like one node: a userProvided embedder set through
the proxy, documents with `_vectors`, semantic and hybrid searches at several semantic
ratios (both the keyword-only shortcut and the weighted mix), `retrieveVectors` and
`/similar`, each merged across 16 shards on 6 nodes and compared with one devnode holding
the same corpus.

Ties would be broken by insertion order on the node and by shard through the proxy, so the
corpus avoids them: random 4-dimension embeddings (no two similarities equal), and keyword
queries made of words only one document has.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .conftest import MASTER_KEY, sdk, wait_done
from .parity_data import COLORS, Targets, both, unique_word
from .test_parity_reads import stable

UID = "e2e_vectors"
COUNT = 240
DIMENSIONS = 4
EMBEDDERS = {"manual": {"source": "userProvided", "dimensions": DIMENSIONS}}


def _vector(rng: random.Random) -> list[float]:
    return [round(rng.uniform(-1, 1), 4) for _ in range(DIMENSIONS)]


def make_documents() -> list[dict[str, Any]]:
    rng = random.Random(12)
    documents = []
    for i in range(COUNT):
        vectors: Any = _vector(rng)
        if i % 5 == 0:  # several embeddings: the best one counts
            vectors = [vectors, _vector(rng)]
        elif i % 7 == 0:
            vectors = {"regenerate": False, "embeddings": vectors}
        documents.append(
            {
                "id": i,
                "title": f"{unique_word(i)} amber" if i < 60 else "amber birch",
                "color": COLORS[i % 3],
                "_vectors": {"manual": vectors},
            }
        )
    return documents


QUERY_VECTORS = [_vector(random.Random(seed)) for seed in (1, 2, 3)]


def post(client: Any, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    answer = requests.post(
        client.config.url + path,
        json=body,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=10,
    )
    return answer.status_code, stable(answer.json())


@pytest.fixture(scope="module")
def targets(e2e_cluster: DevCluster, devnode: NodeProcess, master_key: str) -> Targets:
    pair = {"proxy": sdk(e2e_cluster.url, master_key), "node": sdk(devnode.url, master_key)}
    documents = make_documents()

    def load(client: Any) -> None:
        created = client.create_index(UID, {"primaryKey": "id"})
        index = client.index(UID)
        settings = index.update_settings({"filterableAttributes": ["color"]})
        embedders = index.update_embedders(EMBEDDERS)
        added = index.add_documents(documents)
        for task in (created, settings, embedders, added):
            done = wait_done(client, task.task_uid)
            assert done.status == "succeeded", done

    both(pair, load)
    return pair


def same(targets: Targets, path: str, body: dict[str, Any]) -> Any:
    proxy, node = both(targets, lambda client: post(client, path, body))
    assert proxy == node, body
    return node[1]


def test_embedders_setting_reads_back_through_the_proxy(targets: Targets) -> None:
    proxy, node = both(targets, lambda c: c.http.get(f"indexes/{UID}/settings/embedders"))
    assert proxy == node == EMBEDDERS


# Not q "" with a ratio up to 0.55: its placeholder keyword hits, all scored 1.0, are good
# enough alone, and a node orders those ties by insertion, which a fleet cannot know.
SEARCHES = [
    (q, ratio)
    for q in ("", "qabc", "qaab amber")
    for ratio in (0.0, 0.3, 0.5, 0.8, 1.0)
    if q or ratio > 0.55
]


@pytest.mark.parametrize(("q", "ratio"), SEARCHES)
def test_semantic_and_hybrid_search(targets: Targets, ratio: float, q: str) -> None:
    for vector in QUERY_VECTORS:
        for window in ({"limit": 7}, {"offset": 5, "limit": 4}, {"hitsPerPage": 6, "page": 2}):
            body = {
                "q": q,
                "vector": vector,
                "hybrid": {"embedder": "manual", "semanticRatio": ratio},
                "showRankingScore": True,
                **window,
            }
            answer = same(targets, f"/indexes/{UID}/search", body)
            assert answer["hits"], body
            assert "semanticHitCount" in answer


def test_keyword_shortcut_and_mix_both_happen(targets: Targets) -> None:
    base = {"q": "qabc", "vector": QUERY_VECTORS[0], "limit": 1, "showRankingScore": True}
    alone = same(
        targets,
        f"/indexes/{UID}/search",
        {**base, "hybrid": {"embedder": "manual", "semanticRatio": 0.3}},
    )
    assert alone["semanticHitCount"] == 0 and alone["hits"][0]["id"] == 28
    mixed = same(
        targets,
        f"/indexes/{UID}/search",
        {**base, "hybrid": {"embedder": "manual", "semanticRatio": 0.9}},
    )
    assert mixed["semanticHitCount"] == 1


def test_filters_facets_details_and_retrieved_vectors(targets: Targets) -> None:
    body = {
        "q": "qaab",
        "vector": QUERY_VECTORS[1],
        "hybrid": {"embedder": "manual", "semanticRatio": 0.6},
        "filter": "color = red",
        "facets": ["color"],
        "showRankingScoreDetails": True,
        "retrieveVectors": True,
        "attributesToRetrieve": ["title"],
        "limit": 5,
    }
    answer = same(targets, f"/indexes/{UID}/search", body)
    assert all("_vectors" in hit and "id" not in hit for hit in answer["hits"])
    plain = same(targets, f"/indexes/{UID}/search", {**body, "retrieveVectors": False})
    assert all("_vectors" not in hit for hit in plain["hits"])


def test_semantic_errors_are_a_nodes(targets: Targets) -> None:
    for body in (
        {"vector": [1, 2], "hybrid": {"embedder": "manual"}},
        {"vector": [1, 2, 3, 4], "hybrid": {"embedder": "nope", "semanticRatio": 0.4}},
        {"vector": [1, 2, 3, 4]},
        {"q": "amber", "hybrid": {"embedder": "manual", "semanticRatio": 1.0}},
    ):
        proxy, node = both(targets, lambda c, b=body: post(c, f"/indexes/{UID}/search", b))
        assert proxy == node and node[0] == 400, body


def test_similar_documents(targets: Targets) -> None:
    for body in (
        {"id": 3, "embedder": "manual", "showRankingScore": True},
        {"id": 10, "embedder": "manual", "limit": 5, "offset": 3, "filter": "color = green"},
        {"id": 11, "embedder": "manual", "rankingScoreThreshold": 0.8, "limit": 50},
        {"id": 12, "embedder": "manual", "retrieveVectors": True, "showRankingScoreDetails": True},
        {"id": 4, "embedder": "manual", "attributesToRetrieve": ["title"], "limit": 6},
    ):
        answer = same(targets, f"/indexes/{UID}/similar", body)
        assert answer["hits"], body
    query = "?id=5&embedder=manual&limit=4&offset=2&showRankingScore=true&filter=color%20%3D%20red"
    proxy, node = both(targets, lambda c: c.http.get(f"indexes/{UID}/similar{query}"))
    assert stable(proxy) == stable(node) and len(node["hits"]) == 4
    for body in ({"id": 9999, "embedder": "manual"}, {"id": 3, "embedder": "nope"}, {"id": 3}):
        proxy, node = both(targets, lambda c, b=body: post(c, f"/indexes/{UID}/similar", b))
        assert proxy == node and node[0] == 400, body


def test_documents_show_vectors_only_when_asked(targets: Targets) -> None:
    def read(client: Any) -> list[Any]:
        one = client.http.get(f"indexes/{UID}/documents/10?retrieveVectors=true")
        plain = client.http.get(f"indexes/{UID}/documents/10")
        fetched = client.http.post(
            f"indexes/{UID}/documents/fetch", {"ids": [3, 5], "retrieveVectors": True}
        )
        listed = client.http.get(f"indexes/{UID}/documents?ids=7&retrieveVectors=true")
        return [one, plain, sorted(fetched["results"], key=lambda d: d["id"]), listed]

    proxy, node = both(targets, read)
    assert proxy == node
    assert node[0]["_vectors"]["manual"]["regenerate"] is False
    assert "_vectors" not in node[1]


def test_hybrid_in_multi_search(targets: Targets) -> None:
    query = {
        "indexUid": UID,
        "q": "qabc",
        "vector": QUERY_VECTORS[2],
        "hybrid": {"embedder": "manual", "semanticRatio": 0.7},
        "limit": 6,
        "showRankingScore": True,
    }
    proxy, node = both(targets, lambda c: post(c, "/multi-search", {"queries": [query]}))
    assert proxy == node and node[1]["results"][0]["semanticHitCount"] > 0


def test_stats_count_embeddings_once_and_format_sizes(targets: Targets) -> None:
    def read(client: Any) -> list[Any]:
        index = client.http.get(f"indexes/{UID}/stats?sizeFormat=human")
        internal = client.http.get(f"indexes/{UID}/stats?showInternalDatabaseSizes=true")
        instance = client.http.get("stats?sizeFormat=human&showInternalDatabaseSizes=true")
        return [index, internal, instance["indexes"][UID], instance["databaseSize"]]

    proxy, node = both(targets, read)
    for key in ("numberOfDocuments", "numberOfEmbeddings", "numberOfEmbeddedDocuments"):
        assert proxy[0][key] == node[0][key] == proxy[2][key]
    assert node[0]["numberOfEmbeddings"] == COUNT + COUNT // 5 + (COUNT % 5 > 0)
    assert isinstance(proxy[0]["rawDocumentDbSize"], str) and isinstance(proxy[3], str)
    assert set(proxy[1]["internalDatabaseSizes"]) == set(node[1]["internalDatabaseSizes"])
    assert isinstance(proxy[2]["internalDatabaseSizes"]["documents"], str)
    bad = both(targets, lambda c: post_status(c, f"/indexes/{UID}/stats?sizeFormat=big"))
    assert bad[0] == bad[1] and bad[1][0] == 400


def post_status(client: Any, path: str) -> tuple[int, Any]:
    answer = requests.get(
        client.config.url + path, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    return answer.status_code, answer.json()


def test_compact_an_index(targets: Targets) -> None:
    def compact(client: Any) -> list[Any]:
        done = wait_done(client, client.index(UID).compact().task_uid)
        missing = wait_done(client, client.index("e2e_nowhere").compact().task_uid)
        return [done.status, done.type, done.index_uid, missing.status, missing.error["code"]]

    proxy, node = both(targets, compact)
    assert proxy == node == ["succeeded", "indexCompaction", UID, "failed", "index_not_found"]


def test_list_index_fields(targets: Targets) -> None:
    def read(client: Any) -> list[Any]:
        every = client.index(UID).get_fields(limit=100)
        filterable = client.index(UID).get_fields(filter={"filterable": True})
        page = client.index(UID).get_fields(offset=1, limit=2)
        bad = post(client, f"/indexes/{UID}/fields", {"limit": -1})
        missing = post(client, "/indexes/e2e_nowhere/fields", {})
        return [
            sorted(every.results, key=lambda f: f["name"]),
            every.total,
            filterable.results,
            (len(page.results), page.total),
            bad,
            missing,
        ]

    proxy, node = both(targets, read)
    assert proxy == node
    assert [f["name"] for f in node[0]] == ["_vectors", "color", "id", "title"]
    assert [f["name"] for f in node[2]] == ["color"]


def test_hybrid_in_federated_search(targets: Targets) -> None:
    # At 0.2 the nodes' own hybrid answers, merged by score, would give other hits.
    hybrid = {"embedder": "manual", "semanticRatio": 0.2}
    body = {
        "federation": {"limit": 8},
        "queries": [
            {"indexUid": UID, "q": "qaab", "vector": QUERY_VECTORS[0], "hybrid": hybrid},
            {"indexUid": UID, "q": "qabc", "federationOptions": {"weight": 0.9}},
        ],
    }
    proxy, node = both(targets, lambda c: post(c, "/multi-search", body))
    # Both queries find document 28: one node counts it once in estimatedTotalHits, the
    # fleet once per query (it only has the queries' counts; true of keyword queries too).
    proxy[1].pop("estimatedTotalHits")
    node[1].pop("estimatedTotalHits")
    assert proxy == node and node[0] == 200
    assert len(node[1]["hits"]) == 8


def test_facet_search_with_a_hybrid_query(targets: Targets) -> None:
    for ratio in (0.2, 1.0):
        body = {
            "facetName": "color",
            "q": "qaab",
            "vector": QUERY_VECTORS[0],
            "hybrid": {"embedder": "manual", "semanticRatio": ratio},
        }
        proxy, node = both(targets, lambda c, b=body: post(c, f"/indexes/{UID}/facet-search", b))
        assert proxy == node and node[0] == 200
        assert sum(hit["count"] for hit in node[1]["facetHits"]) == COUNT


def test_semantic_search_with_sort_first_in_the_ranking_rules(targets: Targets) -> None:
    uid = "e2e_vectors_sorted"
    documents = make_documents()[:90]

    def load(client: Any) -> None:
        created = client.create_index(uid, {"primaryKey": "id"})
        index = client.index(uid)
        settings = index.update_settings(
            {
                "sortableAttributes": ["color"],
                "rankingRules": ["sort", "words", "typo", "proximity", "attribute", "exactness"],
                "embedders": EMBEDDERS,
            }
        )
        added = index.add_documents(documents)
        for task in (created, settings, added):
            assert wait_done(client, task.task_uid).status == "succeeded"

    both(targets, load)
    body = {
        "vector": QUERY_VECTORS[1],
        "hybrid": {"embedder": "manual", "semanticRatio": 1.0},
        "sort": ["color:desc"],
        "showRankingScoreDetails": True,
        "limit": 40,
    }
    answer = same(targets, f"/indexes/{uid}/search", body)
    colors = [hit["color"] for hit in answer["hits"]]
    assert colors == sorted(colors, reverse=True) and len(set(colors)) == 2
