"""Search results through the official SDK: filters (string and array forms), facets and
facet stats, distinct, offset/limit and page modes with maxTotalHits, multi-search (plain
and federated) and facet search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import meilisearch
import pytest
from meilisearch.errors import MeilisearchApiError
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

Wait = Callable[[TaskInfo | int], Task]
MakeIndex = Callable[..., Index]


def ids(result: dict[str, Any]) -> list[int]:
    return [hit["id"] for hit in result["hits"]]


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("genres = comedy AND year > 2008", [3]),
        ([["genres = horror", "genres = comedy"], "year >= 2010"], [3, 6, 7]),
        ("year 2000 TO 2008", [1, 5, 8]),
        ("director IN [Peele, Mangold]", [3, 6, 7]),
        ("NOT genres = action AND rating >= 7.6", [2, 6, 8, 10]),
        ("(director = Nolan OR director = Peele) AND year != 2019", [1, 6, 9, 10]),
        ("director = 'Nolan' AND genres = \"scifi\"", [9, 10]),
        ("year IN [1999, 2003]", [4, 5]),
        ("rating > 8.7", [1, 9]),
        ("tags EXISTS", [1, 4, 9]),
        ("tags NOT EXISTS", [2, 3, 5, 6, 7, 8, 10]),
        ("tags IS NULL", [9]),
        ("tags IS EMPTY", [4]),
        ("tags = imax", [1]),
        ("director = nolan", [1, 9, 10]),
    ],
)
def test_filters(movies: Index, filter_: str | list[Any], expected: list[int]) -> None:
    assert sorted(ids(movies.search("", {"filter": filter_}))) == expected


def test_facets_and_facet_stats(movies: Index) -> None:
    result = movies.search("", {"facets": ["genres", "year", "rating"], "limit": 0})
    genres = result["facetDistribution"]["genres"]
    assert genres == {"action": 5, "comedy": 2, "drama": 3, "horror": 2, "scifi": 4}
    assert list(genres) == sorted(genres)
    assert result["facetDistribution"]["year"]["2019"] == 2
    assert result["facetStats"]["year"] == {"min": 1999, "max": 2019}
    assert result["facetStats"]["rating"] == {"min": 6.3, "max": 9.0}
    assert result["hits"] == []
    assert result["estimatedTotalHits"] == 10

    every = movies.search("", {"facets": ["*"], "limit": 0})
    assert set(every["facetDistribution"]) == {"genres", "year", "director", "rating", "tags"}
    assert every["facetDistribution"]["tags"] == {"imax": 1}
    assert set(every["facetStats"]) == {"year", "rating"}

    nolan = movies.search("", {"facets": ["genres", "year"], "filter": "director = Nolan"})
    assert nolan["facetDistribution"]["genres"] == {"action": 2, "drama": 2, "scifi": 2}
    assert nolan["facetStats"]["year"] == {"min": 2008, "max": 2014}


def test_max_values_per_facet_and_count_order(movies: Index, wait_task: Wait) -> None:
    wait_task(
        movies.update_faceting_settings(
            {"maxValuesPerFacet": 2, "sortFacetValuesBy": {"genres": "count"}}
        )
    )
    result = movies.search("", {"facets": ["genres", "director"], "limit": 0})
    assert list(result["facetDistribution"]["genres"].items()) == [("action", 5), ("scifi", 4)]
    assert list(result["facetDistribution"]["director"]) == ["Haynes", "Mangold"]


def test_distinct(movies: Index) -> None:
    result = movies.search("", {"distinct": "director", "hitsPerPage": 20})
    directors = [hit["director"] for hit in result["hits"]]
    assert sorted(directors) == ["Haynes", "Mangold", "Mottola", "Nolan", "Peele", "Wachowski"]
    assert result["totalHits"] == 6
    nolan = movies.search("", {"distinct": "director", "filter": "director = Nolan"})
    assert len(nolan["hits"]) == 1


def test_offset_limit_and_page_modes(movies: Index) -> None:
    everything = ids(movies.search("", {"limit": 100}))
    assert sorted(everything) == list(range(1, 11))

    window = movies.search("", {"offset": 2, "limit": 3})
    assert ids(window) == everything[2:5]
    assert (window["offset"], window["limit"], window["estimatedTotalHits"]) == (2, 3, 10)

    page = movies.search("", {"page": 3, "hitsPerPage": 4})
    assert ids(page) == everything[8:10]
    assert (page["page"], page["hitsPerPage"], page["totalHits"], page["totalPages"]) == (
        3,
        4,
        10,
        3,
    )
    assert "estimatedTotalHits" not in page
    assert "offset" not in page

    beyond = movies.search("", {"offset": 20})
    assert (beyond["hits"], beyond["estimatedTotalHits"]) == ([], 10)
    empty_page = movies.search("", {"hitsPerPage": 0})
    assert (empty_page["hits"], empty_page["totalHits"], empty_page["totalPages"]) == ([], 10, 0)
    page_zero = movies.search("", {"page": 0, "hitsPerPage": 5})
    assert (page_zero["hits"], page_zero["totalPages"]) == ([], 2)


def test_max_total_hits_caps_both_modes(movies: Index, wait_task: Wait) -> None:
    wait_task(movies.update_pagination_settings({"maxTotalHits": 4}))
    capped = movies.search("", {"limit": 20})
    assert len(capped["hits"]) == 4
    assert capped["estimatedTotalHits"] == 4
    page = movies.search("", {"page": 1, "hitsPerPage": 3})
    assert (page["totalHits"], page["totalPages"]) == (4, 2)
    assert len(movies.search("", {"page": 2, "hitsPerPage": 3})["hits"]) == 1
    clamped = movies.search("", {"offset": 3, "limit": 10})
    assert (len(clamped["hits"]), clamped["estimatedTotalHits"]) == (1, 4)
    assert movies.search("", {"offset": 6})["hits"] == []


def test_multi_search(client: meilisearch.Client, movies: Index, make_index: MakeIndex) -> None:
    make_index("books", [{"id": 1, "title": "Matrix Theory"}, {"id": 2, "title": "Emma"}])
    answer = client.multi_search(
        [
            {"indexUid": "movies", "q": "matrix", "limit": 1},
            {"indexUid": "books", "q": "matrix"},
        ]
    )
    first, second = answer["results"]
    assert first["indexUid"] == "movies"
    assert len(first["hits"]) == 1
    assert first["estimatedTotalHits"] == 2
    assert second["indexUid"] == "books"
    assert ids(second) == [1]


def test_federated_multi_search(
    client: meilisearch.Client, movies: Index, make_index: MakeIndex
) -> None:
    make_index("books", [{"id": 1, "title": "Matrix Theory"}, {"id": 2, "title": "Emma"}])
    answer: dict[str, Any] = client.multi_search(
        [
            {"indexUid": "movies", "q": "matrix"},
            {"indexUid": "books", "q": "matrix", "federationOptions": {"weight": 0.5}},
        ],
        federation={"limit": 10},
    )
    assert "results" not in answer
    assert answer["estimatedTotalHits"] == 3
    assert answer["limit"] == 10
    origins = [(hit["_federation"]["indexUid"], hit["id"]) for hit in answer["hits"]]
    assert sorted(origins) == [("books", 1), ("movies", 4), ("movies", 5)]
    weighted = [hit["_federation"]["weightedRankingScore"] for hit in answer["hits"]]
    assert weighted == sorted(weighted, reverse=True)
    book = next(h for h in answer["hits"] if h["_federation"]["indexUid"] == "books")
    assert book["_federation"]["queriesPosition"] == 1
    assert book["_federation"]["weightedRankingScore"] <= 0.5


def test_federated_facets_by_index(
    client: meilisearch.Client, movies: Index, make_index: MakeIndex
) -> None:
    make_index(
        "books",
        [{"id": 1, "title": "Matrix Theory", "genres": ["math"]}],
        settings={"filterableAttributes": ["genres"]},
    )
    answer: dict[str, Any] = client.multi_search(
        [{"indexUid": "movies", "q": "matrix"}, {"indexUid": "books", "q": "matrix"}],
        federation={"facetsByIndex": {"movies": ["genres"], "books": ["genres"]}},
    )
    by_index = answer["facetsByIndex"]
    assert by_index["movies"]["distribution"] == {"genres": {"action": 2, "scifi": 2}}
    assert by_index["books"]["distribution"] == {"genres": {"math": 1}}

    merged: dict[str, Any] = client.multi_search(
        [{"indexUid": "movies", "q": "matrix"}, {"indexUid": "books", "q": "matrix"}],
        federation={
            "facetsByIndex": {"movies": ["genres"], "books": ["genres"]},
            "mergeFacets": {},
        },
    )
    assert merged["facetDistribution"] == {"genres": {"action": 2, "math": 1, "scifi": 2}}


def test_multi_search_errors_name_the_query(client: meilisearch.Client, movies: Index) -> None:
    with pytest.raises(MeilisearchApiError) as err:
        client.multi_search([{"indexUid": "movies", "q": "x"}, {"indexUid": "nope", "q": "x"}])
    assert err.value.code == "index_not_found"
    assert err.value.message.startswith("Inside `.queries[1]`: Index `nope` not found.")


def test_facet_search(movies: Index) -> None:
    answer = movies.facet_search("genres", "dra")
    assert answer["facetHits"] == [{"value": "drama", "count": 3}]
    assert answer["facetQuery"] == "dra"
    assert isinstance(answer["processingTimeMs"], int)

    narrowed = movies.facet_search("genres", "dra", {"filter": "year > 2010"})
    assert narrowed["facetHits"] == [{"value": "drama", "count": 2}]

    everything = movies.facet_search("genres")
    assert [hit["value"] for hit in everything["facetHits"]] == [
        "action",
        "comedy",
        "drama",
        "horror",
        "scifi",
    ]
