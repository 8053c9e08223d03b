"""Hybrid search (`hybrid.semanticRatio` below 1 with a `vector`) over a sharded index.

The search is read as its two halves, each scattered and merged across shards like any
search: the keyword half (the body without `hybrid` and `vector`) and the semantic half
(the body with `semanticRatio: 1.0`), both for the first `offset + limit` hits with their
`_rankingScore`. `core.hybrid` then mixes them the way one node does. Without a `vector`
the node embeds `q` itself (or, for a userProvided embedder, falls back to keyword hits),
so such a body is sent to the nodes as it is and merged by score like a keyword search.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping
from typing import Any, Protocol

from miroir_proxy.core.hybrid import keyword_suffices, mix
from miroir_proxy.core.merging import MergeRequest

_PAGINATION = frozenset(("offset", "limit", "page", "hitsPerPage"))
_SEMANTIC_ONLY = ("hybrid", "vector")


class Half(Protocol):
    """One half's merged answer (a `reads.ReadResult`)."""

    @property
    def body(self) -> dict[str, Any]: ...

    @property
    def degraded(self) -> tuple[int, ...]: ...

    @property
    def fanout(self) -> int: ...


Run = Callable[[dict[str, Any], MergeRequest], Awaitable[Half]]


def mixing_ratio(body: Any) -> float | None:
    """The semantic ratio of a body whose halves the proxy mixes; None for any other body
    (a keyword or semantic-only search, or one a node must judge as it is)."""
    if not isinstance(body, dict) or not isinstance(body.get("vector"), list):
        return None
    hybrid = body.get("hybrid")
    if not isinstance(hybrid, dict) or not isinstance(hybrid.get("embedder"), str):
        return None
    ratio = hybrid.get("semanticRatio", 0.5)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio < 1:
        return None
    return float(ratio)


def _identity(primary_key: str | None) -> Callable[[dict[str, Any]], Hashable]:
    def key(hit: dict[str, Any]) -> Hashable:
        value = hit.get(primary_key) if primary_key is not None else None
        return value if isinstance(value, Hashable) else repr(value)

    return key


def _without(hit: dict[str, Any], drop: Collection[str]) -> dict[str, Any]:
    out = {k: v for k, v in hit.items() if k not in drop}
    formatted = out.get("_formatted")
    if isinstance(formatted, dict):
        out["_formatted"] = {k: v for k, v in formatted.items() if k not in drop}
    return out


def _totals(request: MergeRequest, total: int) -> dict[str, int]:
    total = min(total, request.max_total_hits)
    if request.page_mode:
        per_page = 20 if request.hits_per_page is None else request.hits_per_page
        pages = -(-total // per_page) if per_page else 0
        page = 1 if request.page is None else request.page
        return {"hitsPerPage": per_page, "page": page, "totalPages": pages, "totalHits": total}
    return {"limit": request.limit, "offset": request.offset, "estimatedTotalHits": total}


def _count(answer: Mapping[str, Any]) -> int:
    return int(answer.get("totalHits", answer.get("estimatedTotalHits")) or 0)


async def search(
    body: dict[str, Any],
    request: MergeRequest,
    primary_key: str | None,
    ratio: float,
    run: Run,
) -> tuple[dict[str, Any], tuple[int, ...], int]:
    """(merged answer, degraded shards, node calls) of a hybrid search `body`."""
    offset, limit = request.window()
    wanted = offset + limit
    base = {k: v for k, v in body.items() if k not in _PAGINATION}
    retrieve = body.get("attributesToRetrieve")
    drop: set[str] = set()
    if (
        primary_key is not None
        and isinstance(retrieve, list)
        and "*" not in retrieve
        and primary_key not in retrieve
    ):
        base["attributesToRetrieve"] = [*retrieve, primary_key]  # to know a document twice
        drop.add(primary_key)
    if not request.show_ranking_score:
        drop.add("_rankingScore")
    halves = dataclasses.replace(
        request, offset=0, limit=wanted, page=None, hits_per_page=None, show_ranking_score=True
    )
    keyword_body = {k: v for k, v in base.items() if k not in _SEMANTIC_ONLY}
    semantic_body = {**base, "hybrid": {**base["hybrid"], "semanticRatio": 1.0}}
    outcomes = await asyncio.gather(
        run(semantic_body, halves), run(keyword_body, halves), return_exceptions=True
    )
    for outcome in outcomes:  # the semantic half's error first: its body is the client's
        if isinstance(outcome, BaseException):
            raise outcome
    semantic, keyword = outcomes
    assert not isinstance(semantic, BaseException) and not isinstance(keyword, BaseException)
    keyword_hits = keyword.body["hits"]
    if keyword_suffices(keyword_hits, wanted, ratio):
        mixed = [(hit, False) for hit in keyword_hits]
        counted = keyword.body
        total = _count(keyword.body)
    else:
        mixed = mix(semantic.body["hits"], keyword_hits, ratio, _identity(primary_key))
        counted = semantic.body
        total = max(_count(semantic.body), _count(keyword.body))
    page = mixed[offset:wanted]
    result: dict[str, Any] = {
        "hits": [_without(hit, drop) for hit, _ in page],
        "query": body.get("q") or "",
        "processingTimeMs": max(
            int(semantic.body.get("processingTimeMs") or 0),
            int(keyword.body.get("processingTimeMs") or 0),
        ),
        **_totals(request, total),
    }
    for key in ("facetDistribution", "facetStats"):
        if key in counted:
            result[key] = counted[key]
    result["semanticHitCount"] = sum(1 for _, from_semantic in page if from_semantic)
    degraded = tuple(sorted({*semantic.degraded, *keyword.degraded}))
    return result, degraded, semantic.fanout + keyword.fanout
