"""A devnode answer is a pure function of the index and the query (issue 12 §1).

The engine caches term derivations, per-term features and token buffers on the index. A cache
keyed too loosely makes an answer depend on the queries asked before it: the term cache once
kept the query term of the first query that derived a word, with that query's word position,
so a later query with the same word elsewhere ranked by a stale position.

Property: for random corpora, settings, writes and query sequences, every answer of an index
that has served the earlier queries equals the answer of a fresh index built by the same writes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miroir_devnode.engine.index import Index
from miroir_devnode.engine.search import search
from miroir_devnode.settings import defaults

# Overlapping words so that prefixes, typos (5+ letters: one, 9+: two) and phrases all match.
WORDS = [
    "dark", "dart", "knight", "night", "river", "rivers", "rover", "stone", "stones",
    "silver", "moon", "moonlight", "moonlighting", "forest", "city", "cities",
]  # fmt: skip
COLORS = ["red", "green", "blue"]

Write = tuple[str, Any]  # ("upsert", [docs]) or ("delete", [ids])


def _document(draw: st.DrawFn, doc_id: int) -> dict[str, Any]:
    return {
        "id": doc_id,
        "title": " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5))),
        "body": " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=14))),
        "color": draw(st.sampled_from(COLORS)),
        "price": draw(st.integers(1, 9)),
    }


def _word(draw: st.DrawFn, pool: list[str]) -> str:
    word = draw(st.sampled_from(pool))
    shape = draw(st.sampled_from(["exact", "exact", "prefix", "typo"]))
    if shape == "prefix":
        return word[: draw(st.integers(1, len(word)))]
    if shape == "typo":
        at = draw(st.integers(0, len(word) - 1))
        return word[:at] + draw(st.sampled_from("aeioz")) + word[at + 1 :]
    return word


@st.composite
def query_bodies(draw: st.DrawFn, pool: list[str]) -> dict[str, Any]:
    words = [_word(draw, pool) for _ in range(draw(st.integers(1, 4)))]
    if len(words) > 1 and draw(st.booleans()):
        words[-2:] = ['"' + " ".join(words[-2:]) + '"']  # a phrase
    elif len(words) > 1 and draw(st.integers(0, 4)) == 0:
        words[0] = "-" + words[0]  # a negated word
    body: dict[str, Any] = {
        "q": " ".join(words),
        "showRankingScore": True,
        "showRankingScoreDetails": draw(st.booleans()),
        "offset": draw(st.integers(0, 3)),
        "limit": draw(st.integers(1, 8)),
        "matchingStrategy": draw(st.sampled_from(["last", "all", "frequency"])),
    }
    if draw(st.booleans()):
        body["filter"] = f"color = {draw(st.sampled_from(COLORS))}"
    if draw(st.booleans()):
        body["sort"] = [draw(st.sampled_from(["price:asc", "price:desc"]))]
    if draw(st.integers(0, 3)) == 0:
        body["attributesToSearchOn"] = [draw(st.sampled_from(["title", "body"]))]
    if draw(st.integers(0, 3)) == 0:
        body["distinct"] = "color"
    if draw(st.integers(0, 3)) == 0:
        body["facets"] = ["color", "price"]
    return body


@st.composite
def index_settings(draw: st.DrawFn) -> dict[str, Any]:
    base: dict[str, Any] = defaults()
    base.update(
        searchableAttributes=draw(st.sampled_from([["*"], ["title", "body"], ["body", "title"]])),
        filterableAttributes=["color", "price"],
        sortableAttributes=["price"],
    )
    if draw(st.booleans()):
        rules = list(base["rankingRules"])
        base["rankingRules"] = draw(st.permutations(rules))
    if draw(st.booleans()):
        base["synonyms"] = {"city": ["stone forest"], "moon": ["silver"]}
    if draw(st.booleans()):
        base["typoTolerance"] = {**base["typoTolerance"], "disableOnAttributes": ["title"]}
    return base


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[Write | dict[str, Any]]]:
    """Settings, then a sequence of writes and queries (writes are about one step in six).

    The queries of one sequence draw from a few words, so that they share terms: a cache
    entry made by one query is then read by others, the case a loose key gets wrong."""
    pool = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=5, unique=True))
    first = [_document(draw, i) for i in range(draw(st.integers(3, 30)))]
    steps: list[Write | dict[str, Any]] = [("upsert", first)]
    for _ in range(draw(st.integers(2, 12))):
        kind = draw(st.sampled_from(["query"] * 10 + ["upsert", "delete"]))
        if kind == "upsert":
            ids = draw(st.lists(st.integers(0, 40), min_size=1, max_size=4, unique=True))
            steps.append(("upsert", [_document(draw, i) for i in ids]))
        elif kind == "delete":
            steps.append(("delete", draw(st.lists(st.integers(0, 40), min_size=1, max_size=4))))
        else:
            steps.append(draw(query_bodies(pool)))
    return draw(index_settings()), steps


def _apply(index: Index, write: Write) -> None:
    kind, payload = write
    if kind == "upsert":
        index.upsert((str(doc["id"]), doc) for doc in payload)
    else:
        index.delete(str(doc_id) for doc_id in payload)


def _answer(index: Index, body: dict[str, Any]) -> dict[str, Any]:
    response = search(index, dict(body))
    del response["requestUid"], response["processingTimeMs"]
    return response


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_answers_do_not_depend_on_earlier_queries(
    scenario: tuple[dict[str, Any], list[Write | dict[str, Any]]],
) -> None:
    index_settings_, steps = scenario
    served = Index("purity", "id", index_settings_)
    writes: list[Write] = []
    for step in steps:
        if isinstance(step, tuple):
            _apply(served, step)
            writes.append(step)
            continue
        fresh = Index("purity", "id", index_settings_)
        for write in writes:
            _apply(fresh, write)
        assert _answer(served, step) == _answer(fresh, step), step
