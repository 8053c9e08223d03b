"""Issue 12 §1, reproduced as reported: the same 150 queries sent in order to one fresh devnode
and in reverse order to another fresh devnode with the same data must get the same answers.

Before the fix, 52 of 150 answers differed in `_rankingScore` (and so in order) in the issue's
measurement, 79 of 150 with this corpus and seed: the term cache kept the query term of the
first query that derived a word, with its position in that query.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from miroir_devnode.app import make_app
from miroir_devnode.config import NodeConfig

Client = TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}
WORDS = [f"w{i}" for i in range(400)]
ZIPF = [1 / (rank + 1) for rank in range(len(WORDS))]
SETTINGS = {
    "searchableAttributes": ["title", "body"],
    "filterableAttributes": ["color", "price", "year"],
    "sortableAttributes": ["price", "year"],
}
COLORS = ["red", "green", "blue", "black"]


def _corpus(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "title": " ".join(rng.choices(WORDS, ZIPF, k=rng.randint(2, 6))),
            "body": " ".join(rng.choices(WORDS, ZIPF, k=rng.randint(10, 40))),
            "color": rng.choice(COLORS),
            "price": rng.randint(1, 500),
            "year": rng.randint(1990, 2024),
        }
        for i in range(3000)
    ]


def _queries(rng: random.Random) -> list[dict[str, Any]]:
    queries = []
    for _ in range(150):
        body: dict[str, Any] = {
            "q": " ".join(rng.choices(WORDS, ZIPF, k=rng.randint(1, 3))),
            "showRankingScore": True,
            "offset": rng.randint(0, 20),
            "limit": 10,
        }
        if rng.random() < 0.3:
            body["filter"] = f"color = {rng.choice(COLORS)}"
        if rng.random() < 0.2:
            body["sort"] = [rng.choice(["price:asc", "year:desc"])]
        if rng.random() < 0.2:
            body["facets"] = ["color", "year"]
        queries.append(body)
    return queries


async def _call(client: Client, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else orjson.dumps(body)
    async with client.request(method, path, data=data, headers=JSON) as response:
        payload = orjson.loads(await response.read())
        assert response.status in (200, 202), payload
        return payload


async def _loaded_node(stack: AsyncExitStack, db: Path, docs: list[dict[str, Any]]) -> Client:
    client: Client = TestClient(TestServer(make_app(NodeConfig(db_path=db))))
    await client.start_server()
    stack.push_async_callback(client.close)
    await _call(client, "POST", "/indexes", {"uid": "corpus", "primaryKey": "id"})
    await _call(client, "PATCH", "/indexes/corpus/settings", SETTINGS)
    last = await _call(client, "POST", "/indexes/corpus/documents", docs)
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        task = await _call(client, "GET", f"/tasks/{last['taskUid']}")
        if task["status"] in ("succeeded", "failed", "canceled"):
            break
        assert asyncio.get_running_loop().time() < deadline, "documents never indexed"
        await asyncio.sleep(0.01)
    assert task["status"] == "succeeded", task
    return client


async def _answers(
    client: Client, queries: list[dict[str, Any]], order: range
) -> AsyncIterator[tuple[int, Any]]:
    for i in order:
        answer = await _call(client, "POST", "/indexes/corpus/search", queries[i])
        yield i, (answer["hits"], answer.get("facetDistribution"), answer["estimatedTotalHits"])


async def test_answers_do_not_depend_on_the_order_of_queries(tmp_path: Path) -> None:
    rng = random.Random(12)
    docs, queries = _corpus(rng), _queries(rng)
    async with AsyncExitStack() as stack:
        forward = await _loaded_node(stack, tmp_path / "forward", docs)
        backward = await _loaded_node(stack, tmp_path / "backward", docs)
        ahead = {i: a async for i, a in _answers(forward, queries, range(len(queries)))}
        behind = {i: a async for i, a in _answers(backward, queries, range(len(queries))[::-1])}
    assert sum(bool(hits) for hits, _, _ in ahead.values()) > 100  # the queries match
    differing = [queries[i]["q"] for i in ahead if ahead[i] != behind[i]]
    assert differing == [], f"{len(differing)} of {len(queries)} answers differ"
