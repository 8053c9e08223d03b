"""Search relevance and presentation through the official SDK: the response shape, sort as
a ranking rule, ranking scores and their details, typo tolerance, synonyms, stop words,
phrase and negative queries, attribute settings, highlighting, cropping and GET search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

Wait = Callable[[TaskInfo | int], Task]
ApiCall = Callable[..., requests.Response]


def ids(result: dict[str, Any]) -> list[int]:
    return [hit["id"] for hit in result["hits"]]


def test_plain_query_response_shape(movies: Index, movie_documents: list[dict[str, Any]]) -> None:
    result = movies.search("matrix")
    assert sorted(ids(result)) == [4, 5]
    assert result["query"] == "matrix"
    assert result["estimatedTotalHits"] == 2
    assert result["limit"] == 20
    assert result["offset"] == 0
    assert isinstance(result["processingTimeMs"], int)
    assert "facetDistribution" not in result
    assert result["hits"][0] == next(m for m in movie_documents if m["id"] == ids(result)[0])


def test_sort_on_placeholder_search(movies: Index) -> None:
    years = [hit["year"] for hit in movies.search("", {"sort": ["year:desc"]})["hits"]]
    assert years == sorted(years, reverse=True)
    ratings = [hit["rating"] for hit in movies.search("", {"sort": ["rating:asc"]})["hits"]]
    assert ratings == sorted(ratings)


def test_sort_is_a_ranking_rule_after_words(movies: Index) -> None:
    # Same words bucket: the sort decides.
    assert ids(movies.search("dark", {"sort": ["year:asc"]})) == [1, 2]
    assert ids(movies.search("dark", {"sort": ["year:desc"]})) == [2, 1]
    # "The Dark Knight" matches both words, so it beats a newer film that matches one.
    assert ids(movies.search("dark knight", {"sort": ["year:desc"]})) == [1, 2]


def test_sort_shows_in_details_but_not_in_the_score(movies: Index) -> None:
    params = {"showRankingScore": True, "showRankingScoreDetails": True}
    plain = {hit["id"]: hit for hit in movies.search("dark", params)["hits"]}
    sorted_hits = movies.search("dark", {**params, "sort": ["year:desc"]})["hits"]
    assert [hit["id"] for hit in sorted_hits] == [2, 1]
    for hit in sorted_hits:
        details = hit["_rankingScoreDetails"]
        assert details["year:desc"]["value"] == hit["year"]
        assert details["words"]["order"] < details["year:desc"]["order"]
        assert hit["_rankingScore"] == plain[hit["id"]]["_rankingScore"]


def test_highlight_and_formatted_values(
    movies: Index, movie_documents: list[dict[str, Any]]
) -> None:
    result = movies.search("knight", {"attributesToHighlight": ["title"]})
    hit = next(hit for hit in result["hits"] if hit["id"] == 1)
    formatted = hit["_formatted"]
    assert formatted["title"] == "The Dark <em>Knight</em>"
    assert formatted["id"] == "1"
    assert formatted["year"] == "2008"
    assert formatted["overview"] == movie_documents[0]["overview"]
    assert hit["title"] == "The Dark Knight"

    custom = movies.search(
        "matrix",
        {"attributesToHighlight": ["*"], "highlightPreTag": "[", "highlightPostTag": "]"},
    )
    titles = {hit["_formatted"]["title"] for hit in custom["hits"]}
    assert titles == {"The [Matrix]", "[Matrix] Reloaded"}


def test_prefix_and_typo_highlighting(movies: Index) -> None:
    params = {"attributesToHighlight": ["title"], "showMatchesPosition": True}
    prefix = {hit["id"]: hit for hit in movies.search("matr", params)["hits"]}
    assert prefix[4]["_formatted"]["title"] == "The <em>Matr</em>ix"
    assert prefix[4]["_matchesPosition"]["title"] == [{"start": 4, "length": 4}]
    typo = {hit["id"]: hit for hit in movies.search("matrex", params)["hits"]}
    assert typo[4]["_formatted"]["title"] == "The <em>Matrix</em>"


def test_phrase_queries_and_matching_strategy(movies: Index) -> None:
    assert ids(movies.search('"dark knight"')) == [1]
    assert movies.search('"knight dark"')["hits"] == []
    assert ids(movies.search("dark knight", {"matchingStrategy": "all"})) == [1]


def test_negative_keywords(movies: Index) -> None:
    assert ids(movies.search("matrix -reloaded")) == [4]
    assert ids(movies.search('matrix -"matrix reloaded"')) == [4]


def test_cropping(movies: Index, movie_documents: list[dict[str, Any]]) -> None:
    result = movies.search(
        "hacker", {"attributesToCrop": ["overview"], "cropLength": 3, "cropMarker": "~"}
    )
    cropped = result["hits"][0]["_formatted"]["overview"]
    assert "hacker" in cropped
    assert "~" in cropped
    assert "<em>" not in cropped
    assert len(cropped.replace("~", " ").split()) == 3
    assert result["hits"][0]["overview"] == movie_documents[3]["overview"]


def test_matches_position(movies: Index) -> None:
    result = movies.search("matrix", {"showMatchesPosition": True})
    hit = next(hit for hit in result["hits"] if hit["id"] == 4)
    assert hit["_matchesPosition"] == {"title": [{"start": 4, "length": 6}]}
    assert "_matchesPosition" not in movies.search("matrix")["hits"][0]


def test_ranking_score_and_details(movies: Index) -> None:
    placeholder = movies.search("", {"showRankingScore": True})
    assert {hit["_rankingScore"] for hit in placeholder["hits"]} == {1.0}

    result = movies.search(
        "dark knight", {"showRankingScore": True, "showRankingScoreDetails": True}
    )
    scores = [hit["_rankingScore"] for hit in result["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < score <= 1 for score in scores)
    assert scores[0] > scores[1]
    best, other = (
        result["hits"][0]["_rankingScoreDetails"],
        result["hits"][1]["_rankingScoreDetails"],
    )
    assert best["words"]["matchingWords"] == 2
    assert best["words"]["maxMatchingWords"] == 2
    assert best["words"]["order"] == 0
    assert other["words"]["matchingWords"] == 1
    # Each rule's score is rank / max rank (Meilisearch's ScoreDetails).
    assert (best["words"]["score"], other["words"]["score"]) == (1.0, 0.5)
    assert {"typo", "proximity"} <= set(best)


def test_typo_details(movies: Index) -> None:
    params = {"showRankingScoreDetails": True}
    typo = movies.search("matrex", params)["hits"][0]["_rankingScoreDetails"]["typo"]
    assert (typo["typoCount"], typo["maxTypoCount"], typo["score"]) == (1, 1, 0.5)
    exact = movies.search("matrix", params)["hits"][0]["_rankingScoreDetails"]["typo"]
    assert (exact["typoCount"], exact["score"]) == (0, 1.0)


def test_ranking_score_threshold(movies: Index) -> None:
    scored = movies.search("dark knight", {"showRankingScore": True})["hits"]
    threshold = (scored[0]["_rankingScore"] + scored[1]["_rankingScore"]) / 2
    kept = movies.search(
        "dark knight", {"rankingScoreThreshold": threshold, "showRankingScore": True}
    )
    assert ids(kept) == [scored[0]["id"]]
    assert all(hit["_rankingScore"] >= threshold for hit in kept["hits"])


def test_attributes_to_search_on(movies: Index) -> None:
    assert movies.search("family", {"attributesToSearchOn": ["title"]})["hits"] == []
    assert sorted(ids(movies.search("family", {"attributesToSearchOn": ["overview"]}))) == [6, 7]


def test_typo_tolerance_on_and_off(movies: Index, wait_task: Wait) -> None:
    assert sorted(ids(movies.search("matrex"))) == [4, 5]
    wait_task(movies.update_typo_tolerance({"enabled": False}))
    assert movies.search("matrex")["hits"] == []
    assert sorted(ids(movies.search("matrix"))) == [4, 5]


def test_synonyms(movies: Index, wait_task: Wait) -> None:
    assert movies.search("flick")["hits"] == []
    wait_task(movies.update_synonyms({"flick": ["movie"]}))
    assert sorted(ids(movies.search("flick"))) == [6, 8]


def test_stop_words(movies: Index, wait_task: Wait) -> None:
    strict = {"matchingStrategy": "all"}
    assert ids(movies.search("the matrix", strict)) == [4]
    wait_task(movies.update_stop_words(["the"]))
    assert sorted(ids(movies.search("the matrix", strict))) == [4, 5]


def test_searchable_and_displayed_attributes(
    movies: Index, wait_task: Wait, movie_documents: list[dict[str, Any]]
) -> None:
    assert sorted(ids(movies.search("family"))) == [6, 7]
    wait_task(movies.update_searchable_attributes(["title"]))
    assert movies.search("family")["hits"] == []

    wait_task(movies.update_displayed_attributes(["title", "year"]))
    hits = movies.search("matrix")["hits"]
    assert {frozenset(hit) for hit in hits} == {frozenset({"title", "year"})}
    # Since v0.28 the documents API ignores displayedAttributes.
    assert dict(movies.get_document(4)) == movie_documents[3]


def test_get_search_matches_post_search(movies: Index, api: ApiCall) -> None:
    body = {
        "q": "action",
        "filter": "year > 2000",
        "sort": ["year:desc", "rating:asc"],
        "facets": ["genres", "director"],
        "attributesToRetrieve": ["title", "year"],
        "attributesToHighlight": ["title"],
        "limit": 2,
        "offset": 1,
    }
    query = (
        "q=action&filter=year%20%3E%202000&sort=year:desc,rating:asc&facets=genres,director"
        "&attributesToRetrieve=title,year&attributesToHighlight=title&limit=2&offset=1"
    )
    via_get = api("GET", f"/indexes/movies/search?{query}").json()
    via_post = movies.search(str(body.pop("q")), body)
    for answer in (via_get, via_post):
        answer.pop("processingTimeMs")
        answer.pop("requestUid", None)
    assert via_get == via_post
    assert len(via_get["hits"]) == 2


def test_a_quoted_phrase_is_never_dropped_by_the_last_strategy(movies: Index) -> None:
    # Meilisearch's SDK suite: `coco "dumbo"` finds Dumbo. No film has both, and `last`
    # drops words from the end of the query but never a phrase, so "knight" goes first.
    assert ids(movies.search('knight "the matrix"')) == [4]
    assert ids(movies.search('matrix "dark waters"')) == [2]
    # Without a phrase the first word stays, as before.
    assert ids(movies.search("waters zzz")) == [2]
    # Several phrases: each must match; the words around them may go.
    assert ids(movies.search('"dark knight" "the joker" zzz')) == [1]
