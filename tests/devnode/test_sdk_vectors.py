"""Vector search with userProvided embedders through the official SDK: the `embedders`
setting, `_vectors` in documents (every accepted form, task errors worded as Meilisearch's),
`retrieveVectors`, semantic and hybrid search and `/similar`.

Expected answers come from Meilisearch's own vector tests (crates/meilisearch/tests/vector)
and from milli's scoring: a semantic score is `1 - (1 - cos) / 2` at f32 precision.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import meilisearch
import pytest
import requests
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

from tests.conftest import wait_for

Wait = Callable[[TaskInfo | int], Task]
ApiCall = Callable[..., requests.Response]
MANUAL = {"manual": {"source": "userProvided", "dimensions": 3}}
DOGGOS: list[dict[str, Any]] = [
    {"id": 0, "name": "kefir", "_vectors": {"manual": [0, 0, 0]}},
    {"id": 1, "name": "echo", "_vectors": {"manual": [1, 1, 1]}},
    {"id": 2, "name": "billou", "_vectors": {"manual": [[2, 2, 2], [2, 2, 3]]}},
    {"id": 3, "name": "intel",
     "_vectors": {"manual": {"regenerate": False, "embeddings": [3, 3, 3]}}},
    {"id": 4, "name": "max",
     "_vectors": {"manual": {"regenerate": False, "embeddings": [[4, 4, 4], [4, 4, 5]]}}},
]  # fmt: skip


def f32(value: float) -> float:
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def score(query: list[float], embedding: list[float]) -> float:
    """milli's semantic score, computed independently of the devnode's code."""
    norms = math.hypot(*query) * math.hypot(*embedding)
    if norms <= 1.1920929e-07:
        return 1.0
    cos = sum(a * b for a, b in zip(query, embedding, strict=True)) / norms
    return f32(1.0 - f32((1.0 - max(-1.0, min(1.0, cos))) / 2.0))


@pytest.fixture
def doggos(make_index: Callable[..., Index]) -> Index:
    return make_index("doggo", DOGGOS, settings={"embedders": MANUAL})


def failed(client: meilisearch.Client, task: TaskInfo) -> dict[str, Any]:
    done = wait_for(client, task)
    assert done.status == "failed"
    assert done.error is not None
    return dict(done.error)


def test_embedders_setting_round_trip(
    client: meilisearch.Client, wait_task: Wait, api: ApiCall
) -> None:
    index = client.index("doggo")
    wait_task(index.update_embedders(MANUAL))
    assert index.get_embedders().embedders["manual"].dimensions == 3
    path = "/indexes/doggo/settings/embedders"
    assert api("GET", path).json() == MANUAL
    wait_task(api("PATCH", path, json={"manual": {"dimensions": 4}}).json()["taskUid"])
    assert api("GET", path).json() == {"manual": {"source": "userProvided", "dimensions": 4}}
    wait_task(api("PATCH", path, json={"manual": None}).json()["taskUid"])
    assert api("GET", path).json() == {}
    wait_task(index.update_embedders(MANUAL))
    wait_task(index.reset_embedders())
    assert api("GET", "/indexes/doggo/settings").json()["embedders"] == {}


@pytest.mark.parametrize(
    ("embedder", "message"),
    [
        (
            {"source": "userProvided"},
            "`.embedders.manual`: Missing field `dimensions` "
            "(note: this field is mandatory for source `userProvided`)",
        ),
        (
            {"source": "manual", "dimensions": 3},
            "Unknown value `manual` at `.embedders.manual.source`: expected one of `openAi`, "
            "`huggingFace`, `ollama`, `userProvided`, `rest`, `composite`",
        ),
        (
            {"source": "userProvided", "dimensions": 0},
            "`.embedders.manual.dimensions`: `dimensions` cannot be zero",
        ),
        (
            {"source": "userProvided", "dimensions": "3"},
            "Invalid value type at `.embedders.manual.dimensions`: expected a positive integer, "
            'but found a string: `"3"`',
        ),
    ],
)
def test_embedder_settings_are_validated(
    api: ApiCall, embedder: dict[str, Any], message: str
) -> None:
    response = api("PATCH", "/indexes/doggo/settings", json={"embedders": {"manual": embedder}})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_settings_embedders"
    assert response.json()["message"] == message


def test_vectors_forms_and_retrieve_vectors(
    doggos: Index, client: meilisearch.Client, wait_task: Wait
) -> None:
    shown = client.http.post("indexes/doggo/documents/fetch", {"retrieveVectors": True})
    vectors = {doc["id"]: doc["_vectors"]["manual"] for doc in shown["results"]}
    assert vectors[0] == {"embeddings": [[0.0, 0.0, 0.0]], "regenerate": False}
    assert vectors[2] == {"embeddings": [[2.0, 2.0, 2.0], [2.0, 2.0, 3.0]], "regenerate": False}
    assert vectors[3] == {"embeddings": [[3.0, 3.0, 3.0]], "regenerate": False}
    assert "_vectors" not in client.http.post("indexes/doggo/documents/fetch", {})["results"][0]
    assert "_vectors" not in client.http.get("indexes/doggo/documents/1")
    wait_task(doggos.add_documents([{"id": 1, "name": "echo", "_vectors": {"manual": None}}]))
    one = client.http.get("indexes/doggo/documents/1?retrieveVectors=true")
    assert one["_vectors"] == {"manual": {"embeddings": [], "regenerate": False}}
    # A replaced document that gives no embeddings keeps its own.
    wait_task(doggos.add_documents([{"id": 0, "name": "kefir v2"}]))
    zero = client.http.get("indexes/doggo/documents/0?retrieveVectors=true")
    assert zero["_vectors"]["manual"]["embeddings"] == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("vectors", "code", "message"),
    [
        (
            {"manual": [0, 0]},
            "invalid_vector_dimensions",
            "Index `doggo`: Invalid vector dimensions in document with id `9` in "
            "`._vectors.manual`.\n  - note: embedding #0 has dimensions 2\n"
            "  - note: embedder `manual` requires 3",
        ),
        (
            {"manual": {"embeddings": [0, 0, 0]}},
            "invalid_vectors_type",
            "Index `doggo`: Bad embedder configuration in the document with id: `9`. Missing "
            "field `._vectors.manual.regenerate`\n  - note: `._vectors.manual` must be an array "
            "of floats, an array of arrays of floats, or an object with field `regenerate`",
        ),
        (
            {"manual": {"embeddings": [[True]], "regenerate": False}},
            "invalid_vectors_type",
            "Index `doggo`: Bad embedder configuration in the document with id: `9`. Invalid "
            "value type at `._vectors.manual.embeddings[0][0]`: expected a number, but found a "
            "boolean: `true`",
        ),
        (
            {"manual": {"regenerate": False, "embeddings": [0.1, [0.2, 0.3]]}},
            "invalid_vectors_type",
            "Index `doggo`: Bad embedder configuration in the document with id: `9`. Invalid "
            "value type at `._vectors.manual.embeddings[1]`: expected a number, but found an "
            "array: `[0.2,0.3]`",
        ),
        (
            {"manaul": [0, 0, 0]},
            "vector_embedding_error",
            "Index `doggo`: While embedding documents for embedder `manual`: no vectors provided "
            "for document `9`\n- Note: `manual` has `source: userProvided`, so documents must "
            "provide embeddings as an array in `_vectors.manual`.\n- Hint: opt-out for a "
            "document with `_vectors.manual: null`",
        ),
    ],
)
def test_bad_vectors_fail_the_task(
    doggos: Index, client: meilisearch.Client, vectors: dict[str, Any], code: str, message: str
) -> None:
    error = failed(client, doggos.add_documents([{"id": 9, "name": "x", "_vectors": vectors}]))
    assert (error["code"], error["message"]) == (code, message)


def test_semantic_search_ranks_by_cosine(doggos: Index, client: meilisearch.Client) -> None:
    query = [1.0, 0.5, 0.0]
    result = doggos.search(
        "",
        {
            "vector": query,
            "hybrid": {"embedder": "manual", "semanticRatio": 1.0},
            "showRankingScore": True,
            "showRankingScoreDetails": True,
        },
    )
    best = {doc["id"]: max(score(query, e) for e in doc["embeddings"]) for doc in _embeddings()}
    expected = sorted(best, key=lambda i: (-best[i], i))
    assert [hit["id"] for hit in result["hits"]] == expected
    for hit in result["hits"]:
        assert hit["_rankingScore"] == best[hit["id"]]
        assert hit["_rankingScoreDetails"] == {
            "vectorSort": {"order": 0, "similarity": best[hit["id"]]}
        }
    assert result["semanticHitCount"] == 5
    assert result["estimatedTotalHits"] == 5


def _embeddings() -> list[dict[str, Any]]:
    out = []
    for doc in DOGGOS:
        raw = doc["_vectors"]["manual"]
        raw = raw["embeddings"] if isinstance(raw, dict) else raw
        out.append({"id": doc["id"], "embeddings": raw if isinstance(raw[0], list) else [raw]})
    return out


def test_documents_without_embeddings_come_last(
    doggos: Index, client: meilisearch.Client, wait_task: Wait
) -> None:
    wait_task(doggos.add_documents([{"id": 5, "name": "ghost", "_vectors": {"manual": None}}]))
    hits = doggos.search(
        "",
        {
            "vector": [1, 1, 1],
            "hybrid": {"embedder": "manual", "semanticRatio": 1.0},
            "showRankingScoreDetails": True,
            "showRankingScore": True,
            "offset": 5,
        },
    )["hits"]
    assert [hit["id"] for hit in hits] == [5]
    assert hits[0]["_rankingScore"] == 0.0
    assert hits[0]["_rankingScoreDetails"] == {"vectorSort": {"order": 0, "similarity": None}}


def test_hybrid_merges_by_weighted_score(doggos: Index) -> None:
    query = [0.0, 0.0, 1.0]
    params = {"vector": query, "showRankingScore": True}
    keyword = doggos.search("kefir", {"showRankingScore": True})["hits"]
    assert [hit["id"] for hit in keyword] == [0]
    for ratio in (0.2, 0.5, 0.8):
        result = doggos.search(
            "kefir", {**params, "hybrid": {"embedder": "manual", "semanticRatio": ratio}}
        )
        semantic = {d["id"]: max(score(query, e) for e in d["embeddings"]) for d in _embeddings()}
        weighted = {i: s * f32(ratio) for i, s in semantic.items()}
        keyword_weight = f32(1.0 - f32(ratio))
        # kefir is both a keyword hit (score 1) and a semantic one (score 0.5 for a zero vector):
        weighted[0] = max(weighted[0], keyword[0]["_rankingScore"] * keyword_weight)
        expected = sorted(weighted, key=lambda i: (-weighted[i], i))
        assert [hit["id"] for hit in result["hits"]] == expected, ratio
        assert result["semanticHitCount"] == (4 if weighted[0] > semantic[0] * f32(ratio) else 5)


def test_hybrid_keeps_good_keyword_results_alone(doggos: Index) -> None:
    result = doggos.search(
        "kefir",
        {"vector": [1, 1, 1], "hybrid": {"embedder": "manual", "semanticRatio": 0.1}, "limit": 1},
    )
    assert [hit["id"] for hit in result["hits"]] == [0]
    assert result["semanticHitCount"] == 0
    # Without a vector a userProvided embedder has nothing to search with: keyword results.
    result = doggos.search("echo", {"hybrid": {"embedder": "manual"}})
    assert [hit["id"] for hit in result["hits"]] == [1]
    assert result["semanticHitCount"] == 0


def test_semantic_errors(doggos: Index, api: ApiCall) -> None:
    def error(body: dict[str, Any]) -> tuple[str, str]:
        response = api("POST", "/indexes/doggo/search", json=body)
        assert response.status_code == 400
        return response.json()["code"], response.json()["message"]

    assert error({"vector": [1, 1], "hybrid": {"embedder": "manual"}}) == (
        "invalid_vector_dimensions",
        "Invalid vector dimensions: expected: `3`, found: `2`.",
    )
    assert error({"vector": [1, 1, 1], "hybrid": {"embedder": "nope"}}) == (
        "invalid_search_embedder",
        "Cannot find embedder with name `nope`.",
    )
    code, _ = error({"q": "kefir", "hybrid": {"embedder": "manual", "semanticRatio": 1.0}})
    assert code == "vector_embedding_error"


def test_retrieve_vectors_in_search_hits(doggos: Index) -> None:
    hits = doggos.search("kefir", {"retrieveVectors": True})["hits"]
    assert hits[0]["_vectors"] == {"manual": {"embeddings": [[0.0, 0.0, 0.0]], "regenerate": False}}
    assert "_vectors" not in doggos.search("kefir")["hits"][0]


def test_similar_documents(doggos: Index, api: ApiCall) -> None:
    body = {"id": 1, "embedder": "manual", "showRankingScore": True}
    result = doggos.get_similar_documents(body)
    target = [1.0, 1.0, 1.0]
    best = {d["id"]: max(score(target, e) for e in d["embeddings"]) for d in _embeddings()}
    del best[1]
    assert [hit["id"] for hit in result["hits"]] == sorted(best, key=lambda i: (-best[i], i))
    assert [hit["_rankingScore"] for hit in result["hits"]] == sorted(best.values(), reverse=True)
    assert (result["id"], result["estimatedTotalHits"], result["offset"]) == ("1", 4, 0)
    got = api("GET", "/indexes/doggo/similar?id=1&embedder=manual&limit=2&offset=1").json()
    assert [hit["id"] for hit in got["hits"]] == [hit["id"] for hit in result["hits"][1:3]]
    filtered = api("POST", "/indexes/doggo/similar", json={**body, "filter": "id = 2"})
    assert filtered.status_code == 400
    assert filtered.json()["code"] == "invalid_similar_filter"
    missing = api("POST", "/indexes/doggo/similar", json={**body, "id": 42})
    assert missing.status_code == 400
    assert missing.json()["code"] == "not_found_similar_id"
    assert missing.json()["message"] == "Document `42` not found."
    unknown = api("POST", "/indexes/doggo/similar", json={**body, "embedder": "nope"})
    assert unknown.json()["code"] == "invalid_similar_embedder"


def test_stats_count_embeddings_and_format_sizes(doggos: Index, client: meilisearch.Client) -> None:
    stats = client.http.get("indexes/doggo/stats")
    # Five documents, seven embeddings (billou and max have two each).
    assert (stats["numberOfEmbeddedDocuments"], stats["numberOfEmbeddings"]) == (5, 7)
    human = doggos.get_stats(size_format="human", show_internal_database_sizes=True)
    assert human.number_of_documents == 5
    assert set(human.internal_database_sizes or {}) == {"documents"}
    shown = client.http.get("indexes/doggo/stats?sizeFormat=human")
    assert shown["rawDocumentDbSize"].endswith((" B", " KiB", " MiB"))
    raw = client.http.get("indexes/doggo/stats?showInternalDatabaseSizes=true")
    assert set(raw["internalDatabaseSizes"]) == {"documents"}
    assert "internalDatabaseSizes" not in client.http.get("indexes/doggo/stats")
    everything = client.get_all_stats(size_format="human", show_internal_database_sizes=True)
    assert isinstance(everything["databaseSize"], str)
    assert "internalDatabaseSizes" in everything["indexes"]["doggo"]


def test_stats_parameters_are_checked(doggos: Index, api: ApiCall) -> None:
    for path in ("/stats", "/indexes/doggo/stats"):
        answer = api("GET", path + "?sizeFormat=big").json()
        assert answer["code"] == "invalid_stats_size_format"
        answer = api("GET", path + "?showInternalDatabaseSizes=yes").json()
        assert answer["code"] == "invalid_stats_show_internal_database_sizes"


def test_federated_search_merges_a_hybrid_list_in_its_own_order(
    doggos: Index, client: meilisearch.Client
) -> None:
    hybrid = {"embedder": "manual", "semanticRatio": 0.2}
    query = {"indexUid": "doggo", "q": "kefir zzz", "vector": [0, 0, 1], "hybrid": hybrid}
    alone = client.multi_search([{**query, "showRankingScore": True}])["results"][0]["hits"]
    scores = [hit["_rankingScore"] for hit in alone]
    assert scores != sorted(scores, reverse=True)  # the weak keyword hit leads the mix
    federated = client.multi_search([query], federation={})["hits"]
    # milli merges the queries' lists head by head: one list keeps its own order.
    assert [hit["id"] for hit in federated] == [hit["id"] for hit in alone]


def test_vectors_that_displayed_attributes_hide_stay_hidden(doggos: Index, wait_task: Wait) -> None:
    wait_task(doggos.update_displayed_attributes(["name"]))
    hit = doggos.search("kefir", {"retrieveVectors": True})["hits"][0]
    assert hit == {"name": "kefir"}
    wait_task(doggos.update_displayed_attributes(["name", "_vectors"]))
    hit = doggos.search("kefir", {"retrieveVectors": True})["hits"][0]
    assert set(hit) == {"name", "_vectors"}


def test_semantic_search_follows_the_ranking_rules(
    make_index: Callable[..., Index], wait_task: Wait
) -> None:
    twins = [
        {"id": i, "price": price, "_vectors": {"manual": vector}}
        for i, (price, vector) in enumerate([(30, [1, 0, 0]), (10, [1, 0, 0]), (20, [0, 1, 0])])
    ]
    index = make_index(
        "twins", twins, settings={"embedders": MANUAL, "sortableAttributes": ["price"]}
    )
    body = {
        "vector": [1, 0, 0],
        "hybrid": {"embedder": "manual", "semanticRatio": 1.0},
        "sort": ["price:asc"],
        "showRankingScoreDetails": True,
    }
    # Default rules: the similarity first (words' place), the sort breaks its ties.
    hits = index.search("", body)["hits"]
    assert [hit["id"] for hit in hits] == [1, 0, 2]
    assert hits[0]["_rankingScoreDetails"] == {
        "vectorSort": {"order": 0, "similarity": 1.0},
        "price:asc": {"order": 1, "value": 10},
    }
    # `sort` before every relevancy rule: the price decides first.
    wait_task(index.update_ranking_rules(["sort", "words", "typo"]))
    assert [hit["id"] for hit in index.search("", body)["hits"]] == [1, 2, 0]
    # A custom rule after the relevancy rules breaks similarity ties.
    wait_task(index.update_ranking_rules(["words", "price:desc"]))
    assert [hit["id"] for hit in index.search("", {**body, "sort": None})["hits"]] == [0, 1, 2]
