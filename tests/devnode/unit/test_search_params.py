"""Search request validation and response assembly against a small real index: parameter
types and messages (POST and GET), both pagination modes with the maxTotalHits caps, facets
and stats, distinct, sort and filter errors, facet search and the documents listing."""

from __future__ import annotations

from typing import Any

import pytest

from miroir_devnode.engine.documents_fetch import fetch_documents
from miroir_devnode.engine.facet_search import facet_search, parse_facet_search
from miroir_devnode.engine.index import Index
from miroir_devnode.engine.search import search
from miroir_devnode.engine.search_params import parse_search_body
from miroir_devnode.engine.search_query_string import fix_sort_parameter, query_string_to_body
from miroir_devnode.engine.similar import parse_similar
from miroir_devnode.engine.validation import did_you_mean
from miroir_devnode.errors import MeiliError
from miroir_devnode.settings import defaults

MOVIES = [
    {"id": 1, "title": "Carol", "genres": ["Romance", "Drama"], "year": 2015, "color": "red"},
    {"id": 2, "title": "Wonder Woman", "genres": ["Action"], "year": 2017, "color": "blue"},
    {
        "id": 3,
        "title": "Life of Pi",
        "genres": ["Adventure", "Drama"],
        "year": 2012,
        "color": "red",
    },
    {"id": 4, "title": "Mad Max", "genres": ["Adventure", "Action"], "year": 2015, "color": "Red"},
    {"id": 5, "title": "Moana", "genres": ["Fantasy", "Action"], "year": 2016, "color": "green"},
]


def make_index(docs: list[dict[str, Any]] = MOVIES, **settings: Any) -> Index:
    full = defaults()
    full.update(settings)
    index = Index("movies", "id", full)
    index.upsert((str(doc["id"]), doc) for doc in docs)
    return index


@pytest.fixture
def movies() -> Index:
    return make_index(
        filterableAttributes=["genres", "year", "color"], sortableAttributes=["year", "title"]
    )


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(MeiliError) as caught:
        call(*args, **kwargs)
    return caught.value.code, caught.value.message


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"limit": "x"},
            "invalid_search_limit",
            "Invalid value type at `.limit`: expected a positive integer, but found a string: "
            '`"x"`',
        ),
        (
            {"offset": -1},
            "invalid_search_offset",
            "Invalid value type at `.offset`: expected a positive integer, but found a negative "
            "integer: `-1`",
        ),
        (
            {"limit": None},
            "invalid_search_limit",
            "Invalid value type at `.limit`: expected a positive integer, but found null",
        ),
        (
            {"q": ["doggo"]},
            "invalid_search_q",
            'Invalid value type at `.q`: expected a string, but found an array: `["doggo"]`',
        ),
        (
            {"attributesToRetrieve": [1]},
            "invalid_search_attributes_to_retrieve",
            "Invalid value type at `.attributesToRetrieve[0]`: expected a string, but found a "
            "positive integer: `1`",
        ),
        (
            {"showRankingScore": "true"},
            "invalid_search_show_ranking_score",
            "Invalid value type at `.showRankingScore`: expected a boolean, but found a string: "
            '`"true"`',
        ),
        (
            {"matchingStrategy": "doggo"},
            "invalid_search_matching_strategy",
            "Unknown value `doggo` at `.matchingStrategy`: expected one of `last`, `all`, "
            "`frequency`",
        ),
        (
            {"matchingStrategy": {"doggo": "doggo"}},
            "invalid_search_matching_strategy",
            "Invalid value type at `.matchingStrategy`: expected a string, but found an object: "
            '`{"doggo":"doggo"}`',
        ),
        (
            {"rankingScoreThreshold": 42},
            "invalid_search_ranking_score_threshold",
            "Invalid value at `.rankingScoreThreshold`: the value of `rankingScoreThreshold` is "
            "invalid, expected a float between `0.0` and `1.0`.",
        ),
        (
            {"rankingScoreThreshold": "doggo"},
            "invalid_search_ranking_score_threshold",
            "Invalid value type at `.rankingScoreThreshold`: expected a number, but found a "
            'string: `"doggo"`',
        ),
        (
            {"hybrid": {"semanticRatio": 0.2}},
            "invalid_search_hybrid_query",
            "Missing field `embedder` inside `.hybrid`",
        ),
        (
            [],
            "bad_request",
            "Invalid value type: expected an object, but found an array: `[]`",
        ),
    ],
)
def test_body_type_errors(body: Any, code: str, message: str) -> None:
    assert error_of(parse_search_body, body) == (code, message)


def test_locales_are_checked_against_meilisearch_list() -> None:
    assert parse_search_body({"locales": ["fr", "jpn", "cmn"]}).locales == ["fr", "jpn", "cmn"]
    code, message = error_of(parse_search_body, {"locales": ["en", "xx"]})
    assert code == "invalid_search_locales"
    assert message.startswith("Unknown value `xx` at `.locales[1]`: expected one of `af`, `ak`, ")
    assert message.endswith("`zul`, `cym`, `cmn`")
    message = error_of(query_string_to_body, {"locales": "xx"})[1]
    assert message.startswith(
        "Invalid value in parameter `locales`: Unsupported locale `xx`, expected one of af, ak, "
    )
    assert message.endswith("yid, zho, zul")


def test_unknown_field_lists_fields_in_meilisearch_order_with_suggestion() -> None:
    code, message = error_of(parse_search_body, {"limt": 1})
    assert code == "bad_request"
    assert message.startswith(
        "Unknown field `limt`: did you mean `limit`? expected one of `q`, `offset`, `limit`, "
        "`page`, `hitsPerPage`, `attributesToRetrieve`, "
    )
    assert message.endswith("`showRankingScoreDetails`, `showPerformanceDetails`")
    assert error_of(parse_search_body, {"query": "x"})[1].startswith(
        "Unknown field `query`: expected one of `q`, "
    )


def test_did_you_mean_budget_follows_length() -> None:
    assert did_you_mean("filler", ["q", "filter"]) == "did you mean `filter`? "
    assert did_you_mean("abc", ["abd"]) == ""
    assert did_you_mean("attributes_to_highlight", ["attributesToHighlight"]) != ""


def test_first_invalid_field_in_client_order_wins() -> None:
    code, _ = error_of(parse_search_body, {"page": "x", "limit": "y"})
    assert code == "invalid_search_page"


def test_query_string_conversion_and_errors() -> None:
    body = query_string_to_body(
        {
            "q": "mad",
            "limit": "5",
            "showRankingScore": "true",
            "facets": "genres,year",
            "filter": '["year = 2015"]',
            "sort": "year:desc,_geoPoint(1.5, 2):asc,title:asc",
            "hybridEmbedder": "default",
        }
    )
    assert body == {
        "q": "mad",
        "limit": 5,
        "showRankingScore": True,
        "facets": ["genres", "year"],
        "filter": ["year = 2015"],
        "sort": ["year:desc", "_geoPoint(1.5,2):asc", "title:asc"],
        "hybrid": {"embedder": "default", "semanticRatio": 0.5},
    }
    assert query_string_to_body({"filter": "year = 2015"})["filter"] == "year = 2015"
    assert error_of(query_string_to_body, {"limit": "doggo"}) == (
        "invalid_search_limit",
        "Invalid value in parameter `limit`: could not parse `doggo` as a positive integer",
    )
    assert error_of(query_string_to_body, {"showMatchesPosition": "doggo"})[1] == (
        "Invalid value in parameter `showMatchesPosition`: could not parse `doggo` as a boolean, "
        "expected either `true` or `false`"
    )
    assert error_of(query_string_to_body, {"matchingStrategy": "doggo"})[1] == (
        "Unknown value `doggo` for parameter `matchingStrategy`: expected one of `last`, `all`, "
        "`frequency`"
    )
    code, message = error_of(query_string_to_body, {"lmit": "1"})
    assert code == "bad_request"
    assert message.startswith(
        "Unknown parameter `lmit`: did you mean `limit`? expected one of `q`, `vector`"
    )
    assert error_of(query_string_to_body, {"vector": "1,2"})[0] == "missing_search_hybrid"
    assert fix_sort_parameter('"a:asc"') == ["a:asc"]


def test_offset_mode_echoes_requested_limit_and_caps_by_max_total_hits() -> None:
    index = make_index(pagination={"maxTotalHits": 3})
    result = search(index, {"offset": 2, "limit": 5})
    assert [h["id"] for h in result["hits"]] == [3]
    assert (result["limit"], result["offset"], result["estimatedTotalHits"]) == (5, 2, 3)
    beyond = search(index, {"offset": 10})
    assert (beyond["hits"], beyond["offset"], beyond["limit"]) == ([], 3, 20)
    keys = list(search(index, {}))
    assert keys[:6] == [
        "hits",
        "query",
        "processingTimeMs",
        "limit",
        "offset",
        "estimatedTotalHits",
    ]
    assert keys[-1] == "requestUid"


def test_page_mode_counts_pages_and_caps_totals() -> None:
    index = make_index(pagination={"maxTotalHits": 4})
    result = search(index, {"hitsPerPage": 3, "page": 2})
    assert [h["id"] for h in result["hits"]] == [4]
    assert {k: result[k] for k in ("hitsPerPage", "page", "totalPages", "totalHits")} == {
        "hitsPerPage": 3,
        "page": 2,
        "totalPages": 2,
        "totalHits": 4,
    }
    assert "estimatedTotalHits" not in result
    zero = search(index, {"page": 0})
    assert (zero["hits"], zero["page"], zero["totalHits"]) == ([], 0, 4)
    empty_pages = search(index, {"hitsPerPage": 0})
    assert (empty_pages["hits"], empty_pages["totalPages"]) == ([], 0)


def test_facets_distribution_stats_and_sorting(movies: Index) -> None:
    result = search(movies, {"facets": ["year", "genres"]})
    assert list(result["facetDistribution"]) == ["genres", "year"]
    assert result["facetDistribution"]["genres"] == {
        "Action": 3,
        "Adventure": 2,
        "Drama": 2,
        "Fantasy": 1,
        "Romance": 1,
    }
    assert result["facetStats"] == {"year": {"min": 2012.0, "max": 2017.0}}
    by_count = make_index(
        filterableAttributes=["genres"],
        faceting={"maxValuesPerFacet": 2, "sortFacetValuesBy": {"*": "alpha", "genres": "count"}},
    )
    assert search(by_count, {"facets": ["*"]})["facetDistribution"] == {
        "genres": {"Action": 3, "Adventure": 2}
    }


def test_facet_errors(movies: Index) -> None:
    assert error_of(search, movies, {"facets": ["doggo"]}) == (
        "invalid_search_facets",
        "Invalid facet distribution: Attribute `doggo` is not filterable. Available filterable "
        "attributes patterns are: `color, genres, year`.",
    )
    assert error_of(search, movies, {"facets": ["doggo", "neko"]})[1] == (
        "Invalid facet distribution: Attributes `doggo, neko` are not filterable. Available "
        "filterable attributes patterns are: `color, genres, year`."
    )
    assert error_of(search, make_index(), {"facets": ["doggo"]})[1] == (
        "Invalid facet distribution: Attribute `doggo` is not filterable. This index does not "
        "have configured filterable attributes."
    )


def test_filters_and_tenant_filter_are_anded(movies: Index) -> None:
    result = search(movies, {"filter": "year = 2015"}, tenant_filter="color = red")
    assert sorted(h["id"] for h in result["hits"]) == [1, 4]
    result = search(movies, {"filter": ["genres = Drama"]}, tenant_filter="year > 2013")
    assert [h["id"] for h in result["hits"]] == [1]
    code, message = error_of(search, movies, {"filter": "title = Carol"})
    assert code == "invalid_search_filter"
    assert message.startswith("Index `movies`: Attribute `title` is not filterable.")
    assert error_of(search, movies, {"filter": True}) == (
        "invalid_search_filter",
        "Invalid syntax for the filter parameter: `expected String, Array, found: true`.",
    )


def test_sort_validation_and_order(movies: Index) -> None:
    ids = [h["id"] for h in search(movies, {"sort": ["year:desc", "title:asc"]})["hits"]]
    assert ids == [2, 5, 1, 4, 3]
    assert error_of(search, movies, {"sort": ["color:asc"]}) == (
        "invalid_search_sort",
        "Index `movies`: Attribute `color` is not sortable. Available sortable attributes are: "
        "`title, year`.",
    )
    assert error_of(search, movies, {"sort": ["year"]})[1] == (
        "Invalid syntax for the sort parameter: expected expression ending by `:asc` or `:desc`, "
        "found `year`."
    )
    hidden = make_index(sortableAttributes=["year", "title"], displayedAttributes=["title"])
    assert error_of(search, hidden, {"sort": ["id:asc"]})[1].endswith(
        "are: `title, <..hidden-attributes>`."
    )
    no_rule = make_index(sortableAttributes=["year"], rankingRules=["words", "typo"])
    assert error_of(search, no_rule, {"sort": ["year:asc"]})[1] == (
        "Index `movies`: You must specify where `sort` is listed in the rankingRules setting to "
        "use the sort parameter at search time."
    )


def test_distinct_parameter_must_be_filterable_and_overrides_setting(movies: Index) -> None:
    hits = search(movies, {"distinct": "color"})["hits"]
    # Facet values are compared normalized: "Red" and "red" are one value.
    assert [h["id"] for h in hits] == [1, 2, 5]
    assert error_of(search, movies, {"distinct": "title"}) == (
        "invalid_search_distinct",
        "Index `movies`: Attribute `title` is not filterable and thus, cannot be used as distinct "
        "attribute. Available filterable attributes patterns are: `color, genres, year`.",
    )


def test_search_on_requires_searchable(movies: Index) -> None:
    index = make_index(searchableAttributes=["title", "color"])
    assert [h["id"] for h in search(index, {"q": "red", "attributesToSearchOn": ["color"]})["hits"]]
    assert error_of(search, index, {"q": "x", "attributesToSearchOn": ["genres"]}) == (
        "invalid_search_attributes_to_search_on",
        "Index `movies`: Attribute `genres` is not searchable. Available searchable attributes "
        "are: `color, title`.",
    )


def test_retrieve_intersects_displayed_and_scores_are_optional() -> None:
    index = make_index(displayedAttributes=["id", "title"])
    hit = search(index, {"q": "carol", "attributesToRetrieve": ["title", "year"]})["hits"][0]
    assert hit == {"title": "Carol"}
    hit = search(index, {"q": "carol", "showRankingScore": True, "showRankingScoreDetails": True})[
        "hits"
    ][0]
    assert list(hit)[:2] == ["id", "title"]
    assert 0 < hit["_rankingScore"] <= 1
    assert "words" in hit["_rankingScoreDetails"]


def test_semantic_parameters_are_refused_like_without_embedders(movies: Index) -> None:
    assert error_of(search, movies, {"q": "x", "hybrid": {"embedder": "default"}}) == (
        "invalid_search_embedder",
        "Cannot find embedder with name `default`.",
    )
    assert error_of(search, movies, {"vector": [0.1]}) == (
        "missing_search_hybrid",
        "Invalid request: missing `hybrid` parameter when `vector` is present.",
    )
    assert (
        error_of(search, movies, {"personalize": {"userContext": "x"}})[0] == "feature_not_enabled"
    )
    assert search(movies, {"hybrid": {"embedder": "default"}})["hits"]
    assert error_of(parse_similar, {"id": 1}) == ("bad_request", "Missing field `embedder`")


def test_facet_search(movies: Index) -> None:
    def run(body: dict[str, Any], index: Index = movies) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = facet_search(index, parse_facet_search(body))["facetHits"]
        return hits

    assert run({"facetName": "genres", "facetQuery": "ad"}) == [{"value": "Adventure", "count": 2}]
    assert run({"facetName": "genres", "facetQuery": "advneture"}) == [
        {"value": "Adventure", "count": 2}
    ]
    assert run({"facetName": "genres", "filter": "year = 2015"}) == [
        {"value": "Action", "count": 1},
        {"value": "Adventure", "count": 1},
        {"value": "Drama", "count": 1},
        {"value": "Romance", "count": 1},
    ]
    assert run({"facetName": "color", "q": "mad"}) == [{"value": "Red", "count": 1}]
    assert error_of(parse_facet_search, {"facetQuery": "a"}) == (
        "missing_facet_search_facet_name",
        "Missing field `facetName`",
    )
    assert error_of(run, {"facetName": "title"})[0] == "invalid_facet_search_facet_name"
    disabled = make_index(filterableAttributes=["genres"], facetSearch=False)
    assert error_of(run, {"facetName": "genres"}, disabled) == (
        "facet_search_disabled",
        "The facet search is disabled for this index",
    )


def test_documents_listing(movies: Index) -> None:
    def fetch(**kwargs: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "offset": 0, "limit": 20, "fields": None, "filter": None, "ids": None, "sort": None
        }  # fmt: skip
        params.update(kwargs)
        return fetch_documents(movies, **params)

    page = fetch(offset=1, limit=2, fields=["title"])
    assert page == {
        "results": [{"title": "Wonder Woman"}, {"title": "Life of Pi"}],
        "offset": 1,
        "limit": 2,
        "total": 5,
    }
    assert [d["id"] for d in fetch(ids=["5", "2", "404"])["results"]] == [2, 5]
    assert fetch(filter="color = red", fields=["id"])["results"] == [
        {"id": 1},
        {"id": 3},
        {"id": 4},
    ]
    assert [d["id"] for d in fetch(sort=["year:asc", "title:desc"])["results"]] == [3, 4, 1, 5, 2]
    code, message = error_of(fetch, filter="title = x")
    assert code == "invalid_document_filter"
    assert message.startswith("Attribute `title` is not filterable.")
    assert error_of(fetch, sort=["color:asc"]) == (
        "invalid_document_sort",
        "Attribute `color` is not sortable. Available sortable attributes are: `title, year`.",
    )
