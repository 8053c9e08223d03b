"""Search and facet search over a sharded index: plan the node bodies, scatter, merge.

The proxy only interprets what it needs to plan and merge (pagination, `filter`, `sort`,
`distinct`, score flags); a body whose shape it cannot plan raises `NotUnderstood` and the
caller lets one node judge it, so the client gets exactly the error a single node gives.

Filters sent to nodes keep the array form whenever something is ANDed to the client's
filter (tenant rules, the shard restriction): each array item is parsed on its own, so a
node's error about the client's filter quotes it with the same text and positions as a
single node would.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import orjson

from miroir_proxy.core.covering import NodeAssignment
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.facets_merge import facet_order, merge_facet_hits
from miroir_proxy.core.merging import (
    SHARD_FIELD,
    MergeRequest,
    merge_checked,
    merge_search,
    node_window,
)
from miroir_proxy.core.pk import EXPIRES_FIELD, RESERVED_PREFIX
from miroir_proxy.core.planner import and_filters, pinned_shards, shard_restriction
from miroir_proxy.nodes.client import NodeResponse

from . import hybrid
from .broadcast import NodeRefused
from .cluster import Cluster
from .scatter import call_all, gather

_RESERVED_NAME = "_miroir_[a-z_]+"
_ONLY_RESERVED = re.compile(
    r"Available (filterable|facet-searchable) attributes? patterns are: "
    rf"`{_RESERVED_NAME}`(?:, `{_RESERVED_NAME}`)*\."
)
_RESERVED_IN_LISTS = re.compile(
    rf"`{_RESERVED_NAME}`, |, `{_RESERVED_NAME}`|{_RESERVED_NAME}, |, {_RESERVED_NAME}"
)
PAGINATION = frozenset(("offset", "limit", "page", "hitsPerPage"))
_FLAGS = ("showRankingScore", "showRankingScoreDetails")


class NotUnderstood(Exception):
    """The body has a shape the proxy cannot plan; one node must judge it."""


@dataclasses.dataclass(frozen=True, slots=True)
class IndexView:
    """What a read needs to know about one index."""

    uid: str
    shards: int
    primary_key: str | None
    settings: Mapping[str, Any]
    tenant_filter: Any = None
    # False only for the TTL sweep, which looks for the expired documents.
    hide_expired: bool = True
    # The fields the nodes may match while their searchable list is `["*"]` (never
    # `_miroir_*`, see `dispatch.catalog`); None: leave the nodes' choice alone.
    search_on: tuple[str, ...] | None = None

    @property
    def expires(self) -> bool:
        """Whether searches must hide expired documents: the nodes have `_miroir_expires_at`
        filterable (indexes created before TTL existed get it with their next
        `filterableAttributes` update)."""
        names = self.settings.get("filterableAttributes")
        return self.hide_expired and isinstance(names, list) and EXPIRES_FIELD in names


SEARCH_ON = "attributesToSearchOn"


def search_on(asked: Any, known: Sequence[str]) -> Any:
    """The `attributesToSearchOn` a node gets when it searches `["*"]`: the known fields
    for none or `*`, the client's names otherwise, never a `_miroir_*` field. Anything but a
    list of names is left for the node to judge."""
    if asked is None:
        return list(known)
    if not isinstance(asked, list) or not all(isinstance(n, str) for n in asked):
        return asked
    names: dict[str, None] = {}
    for name in asked:
        for one in known if name == "*" else (name,):
            if not one.startswith(RESERVED_PREFIX):
                names.setdefault(one)
    return list(names)


def unexpired(now_ms: int) -> str:
    """The filter clause that hides documents expired at `now_ms` (the pod's clock, so a
    node's answer stays a function of the index and the query)."""
    return f"{EXPIRES_FIELD} NOT EXISTS OR {EXPIRES_FIELD} > {now_ms}"


@dataclasses.dataclass(frozen=True, slots=True)
class ReadResult:
    body: dict[str, Any]
    degraded: tuple[int, ...]
    fanout: int


def degraded_header(shards: Collection[int]) -> dict[str, str]:
    return {"X-Miroir-Degraded": "shards=" + ",".join(str(s) for s in sorted(shards))}


def enforce_policy(cluster: Cluster, degraded: Collection[int]) -> dict[str, str]:
    """Headers for a read that missed `degraded` shards, or the 503 the policy asks for."""
    if not degraded:
        return {}
    if cluster.config.unavailable_shards == "error":
        listed = ", ".join(str(s) for s in sorted(degraded))
        raise MiroirError(
            "miroir_shard_unavailable",
            f"No active replica group can serve shards {listed} of this index.",
        )
    return degraded_header(degraded)


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise NotUnderstood
    return value


def _optional(body: Mapping[str, Any], key: str, kinds: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if value is None:
        return None
    # bool is an int to Python but not to Meilisearch.
    if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
        raise NotUnderstood
    return value


def hide_reserved(message: str) -> str:
    """A node's error message without the `_miroir_*` fields every node has as filterable."""
    if RESERVED_PREFIX not in message:
        return message
    message = _ONLY_RESERVED.sub(r"This index does not have configured \1 attributes.", message)
    return _RESERVED_IN_LISTS.sub("", message)


def refusal(response: NodeResponse) -> tuple[int, bytes]:
    """(status, body) to answer for a node's 4xx, with `_miroir_shard` kept out of sight."""
    if RESERVED_PREFIX.encode() not in response.body:
        return response.status, response.body
    payload = response.json()
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        payload["message"] = hide_reserved(payload["message"])
    return response.status, orjson.dumps(payload)


def merge_request(body: Any, settings: Mapping[str, Any]) -> MergeRequest:
    """The merge the client's search body asks for; raises `NotUnderstood`."""
    if not isinstance(body, dict):
        raise NotUnderstood
    offset, limit = _count(body.get("offset")), _count(body.get("limit"))
    page, per_page = _count(body.get("page")), _count(body.get("hitsPerPage"))
    _optional(body, "filter", (str, list))
    sort = _optional(body, "sort", list)
    retrieve = _optional(body, "attributesToRetrieve", list)
    threshold = _optional(body, "rankingScoreThreshold", (int, float))
    shows = [_optional(body, flag, bool) for flag in _FLAGS]
    distinct = _optional(body, "distinct", str) or settings.get("distinctAttribute")
    faceting = settings.get("faceting") or {}
    pagination = settings.get("pagination") or {}
    strip: frozenset[str] = frozenset()
    if distinct and retrieve is not None and "*" not in retrieve and distinct not in retrieve:
        strip = frozenset((distinct,))
    return MergeRequest(
        offset=0 if offset is None else offset,
        limit=20 if limit is None else limit,
        page=page,
        hits_per_page=per_page,
        max_total_hits=pagination.get("maxTotalHits", 1000),
        sorted_by_rules=bool(sort),
        distinct=distinct,
        ranking_score_threshold=threshold,
        show_ranking_score=bool(shows[0]),
        show_ranking_score_details=bool(shows[1]),
        max_values_per_facet=faceting.get("maxValuesPerFacet", 100),
        sort_facet_values_by=faceting.get("sortFacetValuesBy") or {"*": "alpha"},
        strip_fields=strip,
    )


class NodeBodies:
    """Serialized node bodies of one read: the client's body, each node's filter in it."""

    def __init__(self, base: dict[str, Any], view: IndexView) -> None:
        tenant = view.tenant_filter
        self.filter = and_filters(
            base.get("filter"), [tenant] if isinstance(tenant, str) else tenant
        )
        self.pinned = pinned_shards(self.filter, view.primary_key, view.shards)
        if view.expires:
            self.filter = and_filters(self.filter, [unexpired(int(time.time() * 1000))])
        if self.filter is not None:
            base["filter"] = self.filter
        if view.search_on is not None:
            base[SEARCH_ON] = search_on(base.get(SEARCH_ON), view.search_on)
        self._base = base
        self._shared = orjson.dumps(base)

    def filter_for(self, assignment: NodeAssignment) -> Any:
        if not assignment.restrict:
            return self.filter
        return and_filters(self.filter, [shard_restriction(assignment.shards)])

    def __call__(self, assignment: NodeAssignment) -> bytes:
        if not assignment.restrict:
            return self._shared
        return orjson.dumps({**self._base, "filter": self.filter_for(assignment)})


def _search_base(body: Mapping[str, Any], request: MergeRequest) -> dict[str, Any]:
    base = {k: v for k, v in body.items() if k not in PAGINATION}
    base.update(node_window(request))
    base["showRankingScore"] = True
    if request.sorted_by_rules:
        base["showRankingScoreDetails"] = True
    retrieve = body.get("attributesToRetrieve")
    if retrieve is not None and "*" not in retrieve:
        # The merge breaks ties by shard (see `core.merging`).
        base["attributesToRetrieve"] = [*retrieve, *request.strip_fields, SHARD_FIELD]
    return base


def without_reserved_facets(answer: dict[str, Any]) -> dict[str, Any]:
    # `facets: ["*"]` reaches `_miroir_shard`, which every node has as filterable.
    for key in ("facetDistribution", "facetStats", "distribution", "stats"):
        facets = answer.get(key)
        if facets and any(name.startswith(RESERVED_PREFIX) for name in facets):
            answer[key] = {k: v for k, v in facets.items() if not k.startswith(RESERVED_PREFIX)}
    return answer


def _completed(
    merged: dict[str, Any], answers: list[dict[str, Any]], body: Mapping[str, Any]
) -> dict[str, Any]:
    if not answers:
        merged["query"] = body.get("q") or ""
    vector = next((a["queryVector"] for a in answers if "queryVector" in a), None)
    if vector is not None:
        merged["queryVector"] = vector
    return merged


async def search(
    cluster: Cluster,
    view: IndexView,
    body: Any,
    request: MergeRequest | None = None,
    *,
    first_group: str | None = None,
) -> ReadResult:
    """The merged answer of `POST /indexes/{uid}/search` with `body` (merged as `request`
    when given, e.g. for one query of a federated search), read from `first_group` first
    when given."""
    if request is None:
        request = merge_request(body, view.settings)
    ratio = hybrid.mixing_ratio(body)
    if ratio is not None:

        async def half(half_body: dict[str, Any], half_request: MergeRequest) -> ReadResult:
            return await search(cluster, view, half_body, half_request, first_group=first_group)

        mixed = await hybrid.search(body, request, view.primary_key, ratio, half)
        return ReadResult(*mixed)
    bodies = NodeBodies(_search_base(body, request), view)
    gathered = await gather(
        cluster,
        shards=view.shards,
        method="POST",
        path=f"/indexes/{view.uid}/search",
        body_for=bodies,
        only=bodies.pinned,
        first_group=first_group,
    )
    answers = [without_reserved_facets(a) for a in gathered.answers]
    fanout = gathered.fanout
    merged, unsettled = merge_checked(answers, request, [a.shards for a in gathered.assignments])
    if unsettled:
        fanout += await _reread_by_shard(
            cluster, view.uid, (body, request, bodies), answers, gathered.assignments, unsettled
        )
        merged = merge_search(answers, request)
    return ReadResult(_completed(merged, answers, body), gathered.degraded, fanout)


async def _reread_by_shard(
    cluster: Cluster,
    uid: str,
    plan: tuple[Mapping[str, Any], MergeRequest, NodeBodies],
    answers: list[dict[str, Any]],
    assignments: Sequence[NodeAssignment],
    unsettled: list[int],
) -> int:
    """Replace the hits of the `unsettled` answers by per-shard reads; returns the calls.

    A one-shard answer is that shard's own prefix, so the merge is then exact. Totals and
    facets stay with the first answers (the reads here skip facets); a node that fails
    now keeps its first hits, whose order may differ from another replica's only in ties.
    """
    body, request, bodies = plan
    base = {k: v for k, v in _search_base(body, request).items() if k != "facets"}

    def shard_body(assignment: NodeAssignment) -> bytes:
        return orjson.dumps({**base, "filter": bodies.filter_for(assignment)})

    split = [
        NodeAssignment(a.node_id, a.group_id, (shard,), True)
        for a in (assignments[i] for i in unsettled)
        for shard in a.shards
    ]
    outcome = await call_all(
        cluster,
        split,
        "POST",
        f"/indexes/{uid}/search",
        shard_body,
        None,
        cluster.config.timeouts.node_read_ms,
    )
    if outcome.rejection is not None:
        raise NodeRefused(outcome.rejection)
    failed = {a.node_id for a in outcome.failed}
    for index in unsettled:
        if assignments[index].node_id not in failed:
            answers[index] = {**answers[index], "hits": []}
    answers.extend(
        {"hits": answer.get("hits") or []}
        for assignment, answer in outcome.answers
        if assignment.node_id not in failed
    )
    return len(split)


async def facet_search(cluster: Cluster, view: IndexView, body: Any) -> ReadResult:
    """The merged answer of `POST /indexes/{uid}/facet-search`: counts summed per value."""
    if not isinstance(body, dict) or not isinstance(body.get("facetName"), str):
        raise NotUnderstood
    _optional(body, "filter", (str, list))
    bodies = NodeBodies(dict(body), view)
    gathered = await gather(
        cluster,
        shards=view.shards,
        method="POST",
        path=f"/indexes/{view.uid}/facet-search",
        body_for=bodies,
        only=bodies.pinned,
    )
    faceting = view.settings.get("faceting") or {}
    order = facet_order(faceting.get("sortFacetValuesBy") or {"*": "alpha"}, body["facetName"])
    hits = merge_facet_hits(
        [a.get("facetHits") or () for a in gathered.answers],
        order,
        faceting.get("maxValuesPerFacet", 100),
    )
    first = gathered.answers[0] if gathered.answers else {}
    merged = {
        "facetHits": hits,
        "facetQuery": first.get("facetQuery", body.get("facetQuery")),
        "processingTimeMs": max(
            (int(a.get("processingTimeMs") or 0) for a in gathered.answers), default=0
        ),
    }
    return ReadResult(merged, gathered.degraded, gathered.fanout)
