"""Meilisearch's `_rankingScore` depends only on the query and the document, never on what
else is in the index. Miroir's merge relies on it (ARCHITECTURE.md §2), so the devnode must
give a document the same score in a 10-document index and in a 10,000-document index whose
filler shares the vocabulary (any corpus statistic such as IDF would show)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from meilisearch.index import Index

MakeIndex = Callable[..., Index]

CORE: list[dict[str, Any]] = [
    {"id": 1, "title": "The Dark Knight", "body": "a knight in the dark city"},
    {"id": 2, "title": "Night Sky", "body": "stars over the river"},
    {"id": 3, "title": "River Stone", "body": "a stone by the river at night"},
    {"id": 4, "title": "Silver Moon", "body": "moon over the dark forest"},
    {"id": 5, "title": "Stone City", "body": "the city of stone and silver"},
    {"id": 6, "title": "Forest Knight", "body": "a knight guards the forest"},
    {"id": 7, "title": "Dark River", "body": "the dark river flows"},
    {"id": 8, "title": "Moonlight", "body": "moonlight on the stone"},
    {"id": 9, "title": "City Night", "body": "the city at night"},
    {"id": 10, "title": "Knightfall", "body": "the fall of the knight"},
]
VOCABULARY = [
    "dark",
    "knight",
    "night",
    "sky",
    "river",
    "stone",
    "silver",
    "moon",
    "forest",
    "city",
]
QUERIES = ["dark knight", "night", "river stone", "silver moon forest", "knigt", "sto"]
FILLER_COUNT = 9_990


def _filler() -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {
            "id": 100 + i,
            "title": " ".join(rng.choices(VOCABULARY, k=rng.randint(1, 3))),
            "body": " ".join(rng.choices(VOCABULARY, k=rng.randint(3, 8))),
            "group": "filler",
        }
        for i in range(FILLER_COUNT)
    ]


@pytest.fixture
def indexes(make_index: MakeIndex) -> tuple[Index, Index]:
    core = [{**doc, "group": "core"} for doc in CORE]
    settings = {"filterableAttributes": ["group"]}
    small = make_index("small", core, settings=settings)
    large = make_index("large", core + _filler(), settings=settings)
    assert large.get_stats().number_of_documents == len(CORE) + FILLER_COUNT
    return small, large


def _scored(index: Index, query: str) -> dict[int, tuple[float, Any]]:
    result = index.search(
        query,
        {
            "filter": "group = core",
            "limit": 100,
            "showRankingScore": True,
            "showRankingScoreDetails": True,
        },
    )
    return {h["id"]: (h["_rankingScore"], h["_rankingScoreDetails"]) for h in result["hits"]}


def test_scores_do_not_depend_on_the_rest_of_the_index(indexes: tuple[Index, Index]) -> None:
    small, large = indexes
    distinct_scores: set[float] = set()
    for query in QUERIES:
        in_small, in_large = _scored(small, query), _scored(large, query)
        assert in_small, f"{query!r} matched nothing"
        assert in_small == in_large, query
        distinct_scores |= {score for score, _ in in_small.values()}
        assert large.search(query, {"limit": 0})["estimatedTotalHits"] > len(in_small)
    assert len(distinct_scores) >= 5
