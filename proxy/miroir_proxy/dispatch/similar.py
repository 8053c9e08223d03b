"""`/indexes/{uid}/similar` over a sharded index.

The target document lives on one shard, so only a replica of that shard can answer the
request itself. It is asked first (with `limit: 0`): its error, if any, is the client's
answer (unknown embedder, unknown id, bad filter, bad body), exactly as one node words it.
Then the target's embeddings are read from it and each one is searched for semantically
(`semanticRatio: 1.0`) across every shard, like any search; Meilisearch's `Similar` is
then replayed on the merged lists: documents without an embedding and the target left
out, each document at its best similarity over the target's embeddings, `offset` and
`limit` applied, and `rankingScoreThreshold` checked inside the page only, cutting the
candidate count at the first document under it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.merging import MergeRequest

from .broadcast import NodeRefused, read_any
from .cluster import Cluster
from .lookup import ask_owner
from .reads import IndexView, ReadResult, search

_BOOLS = ("retrieveVectors", "showRankingScore", "showRankingScoreDetails")
_COUNTS = ("offset", "limit")


def query_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The body a GET query string stands for (only read after a node accepted it)."""
    body: dict[str, Any] = dict(params)
    for name in _COUNTS:
        if name in params:
            body[name] = int(params[name])
    for name in _BOOLS:
        if name in params:
            body[name] = params[name] == "true"
    if "attributesToRetrieve" in params:
        raw = params["attributesToRetrieve"]
        body["attributesToRetrieve"] = raw.split(",") if raw else []
    if "rankingScoreThreshold" in params:
        body["rankingScoreThreshold"] = float(params["rankingScoreThreshold"])
    return body


def _with_tenant(body: Mapping[str, Any], tenant: Any) -> dict[str, Any]:
    if tenant is None:
        return dict(body)
    own = body.get("filter")
    parts = [*([] if own is None else [own]), *(tenant if isinstance(tenant, list) else [tenant])]
    return {**body, "filter": parts}


async def check_with_owner(
    cluster: Cluster,
    view: IndexView,
    method: str,
    *,
    body: Any = None,
    params: Mapping[str, str] | None = None,
) -> str:
    """The target's id once a replica of its shard accepted the request; raises
    `NodeRefused` with that replica's error (or any node's when there is no valid id)."""
    path = f"/indexes/{view.uid}/similar"
    target = body.get("id") if isinstance(body, dict) else (params or {}).get("id")
    if isinstance(target, bool) or not isinstance(target, str | int):
        response = await read_any(cluster, method, path, json_body=body, params=params)
        if response.ok:
            raise MiroirError("bad_request", "Miroir cannot distribute this request.")
        raise NodeRefused(response)
    document_id = str(target)
    owner = (cluster, view.uid, view.shards, document_id)
    if method == "GET":
        small = {**(params or {}), "limit": "0", "offset": "0"}
        response = await ask_owner(*owner, "GET", path, params=small)
    else:
        small_body = _with_tenant({**body, "limit": 0, "offset": 0}, view.tenant_filter)
        response = await ask_owner(*owner, "POST", path, json_body=small_body)
    if not response.ok:
        raise NodeRefused(response)
    return document_id


async def _target_embeddings(
    cluster: Cluster, view: IndexView, document_id: str, embedder: str
) -> list[list[float]]:
    path = f"/indexes/{view.uid}/documents/{quote(document_id, safe='')}"
    response = await ask_owner(
        cluster, view.uid, view.shards, document_id, "GET", path, params={"retrieveVectors": "true"}
    )
    if not response.ok:
        raise NodeRefused(response)
    vectors = (response.json().get("_vectors") or {}).get(embedder) or {}
    embeddings = vectors.get("embeddings") if isinstance(vectors, dict) else vectors
    if not embeddings:
        return []
    return embeddings if isinstance(embeddings[0], list) else [embeddings]


def _similarity(hit: Mapping[str, Any]) -> float | None:
    detail = (hit.get("_rankingScoreDetails") or {}).get("vectorSort") or {}
    value = detail.get("similarity")
    return float(value) if isinstance(value, int | float) else None


def _total(answer: Mapping[str, Any]) -> int:
    return int(answer.get("estimatedTotalHits") or 0)


async def similar(
    cluster: Cluster, view: IndexView, query: Mapping[str, Any], document_id: str
) -> ReadResult:
    """The merged answer of a similar-documents `query` a replica of the target accepted."""
    started = time.perf_counter()
    embedder = str(query["embedder"])
    offset = int(query.get("offset") or 0)
    limit = 20 if query.get("limit") is None else int(query["limit"])
    pk = view.primary_key
    retrieve = query.get("attributesToRetrieve")
    drop = set()
    if pk is not None and isinstance(retrieve, list) and "*" not in retrieve and pk not in retrieve:
        retrieve, drop = [*retrieve, pk], {pk}
    max_total = int((view.settings.get("pagination") or {}).get("maxTotalHits", 1000))
    wanted = offset + limit + 1
    body: dict[str, Any] = {
        "hybrid": {"embedder": embedder, "semanticRatio": 1.0},
        "limit": wanted,
        "showRankingScore": True,
        "showRankingScoreDetails": True,
        "retrieveVectors": bool(query.get("retrieveVectors")),
    }
    if query.get("filter") is not None:
        body["filter"] = query["filter"]
    if retrieve is not None:
        body["attributesToRetrieve"] = retrieve
    request = MergeRequest(
        limit=wanted,
        max_total_hits=max_total,
        show_ranking_score=True,
        show_ranking_score_details=True,
    )
    answers: list[ReadResult] = []
    for embedding in await _target_embeddings(cluster, view, document_id, embedder):
        answers.append(await search(cluster, view, {**body, "vector": embedding}, request))
    hits, seen_target = _best(answers, pk, document_id)
    total = min(_total(answers[0].body), max_total) if answers else 0
    if answers and total < max_total:
        total -= seen_target
    page, total = _window(hits, offset, limit, query.get("rankingScoreThreshold"), total)
    shown = [_shown(hit, query, drop) for hit in page]
    degraded = tuple(sorted({shard for answer in answers for shard in answer.degraded}))
    took = time.perf_counter() - started
    result = {"hits": shown, "id": document_id, "processingTimeMs": int(took * 1000)}
    result |= {"limit": limit, "offset": offset, "estimatedTotalHits": total}
    if query.get("showPerformanceDetails"):
        result["performanceDetails"] = {"similar": f"{took * 1000:.2f}ms"}
    return ReadResult(result, degraded, sum(a.fanout for a in answers) + 2)


def _best(
    answers: Sequence[ReadResult], pk: str | None, target: str
) -> tuple[list[tuple[float, dict[str, Any]]], int]:
    """Every document with an embedding but the target, at its best similarity, best first;
    and 1 when the target was among the hits (it passes the filter), else 0."""
    best: dict[str, tuple[float, int, dict[str, Any]]] = {}
    seen_target = 0
    order = 0
    for answer in answers:
        for hit in answer.body.get("hits") or ():
            key = orjson.dumps(hit.get(pk)).decode() if pk is not None else str(order)
            identity = str(hit.get(pk)) if pk is not None else None
            if identity == target:
                seen_target = 1
                continue
            similarity = _similarity(hit)
            if similarity is None:
                continue
            order += 1
            if key not in best or best[key][0] < similarity:
                best[key] = (similarity, order, hit)
    ranked = sorted(best.values(), key=lambda item: (-item[0], item[1]))
    return [(similarity, hit) for similarity, _, hit in ranked], seen_target


def _window(
    hits: list[tuple[float, dict[str, Any]]],
    offset: int,
    limit: int,
    threshold: Any,
    total: int,
) -> tuple[list[dict[str, Any]], int]:
    page: list[dict[str, Any]] = []
    for position, (similarity, hit) in enumerate(hits[offset : offset + limit]):
        if isinstance(threshold, int | float) and similarity < threshold:
            return page, offset + position
        page.append(hit)
    return page, total


def _shown(hit: Mapping[str, Any], query: Mapping[str, Any], drop: set[str]) -> dict[str, Any]:
    out = {k: v for k, v in hit.items() if k not in drop}
    if not query.get("showRankingScore"):
        out.pop("_rankingScore", None)
    if not query.get("showRankingScoreDetails"):
        out.pop("_rankingScoreDetails", None)
    return out
