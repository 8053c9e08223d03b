"""Search routes: `/indexes/{uid}/search` (POST and GET), `/multi-search`, `facet-search`.

Handlers gather what the read needs (index metadata, cached settings, the tenant token's
filter), hand it to `dispatch.reads` / `dispatch.multisearch`, and add what only the
outermost layer knows: `requestUid`, the total `processingTimeMs`, and the
`X-Miroir-Degraded` header (or the 503 of the `error` policy). A request the proxy cannot
plan is judged by one node as it was sent, so the error is a single node's, byte for byte.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.topology import Topology
from miroir_proxy.dispatch import multisearch, reads, similar
from miroir_proxy.dispatch.broadcast import NodeRefused, read_any
from miroir_proxy.dispatch.coalescing import search_key
from miroir_proxy.dispatch.reads import IndexView, NotUnderstood, ReadResult

from ..appkeys import CATALOG, CLUSTER, COALESCER, METRICS
from ..auth import AUTH, invalid_key
from ..responses import json_response, raw_json_response, read_json
from ..searchparams import search_body_from_params
from ..sessions import session_group
from .aliases import SENT_INDEX, concrete_index

routes = web.RouteTableDef()


async def index_view(request: web.Request, uid: str, sent: str | None = None) -> IndexView:
    """The view of concrete index `uid`; a tenant token's rules apply to the name the
    client `sent` (an alias, or a resharded index's name)."""
    catalog = request.app[CATALOG]
    meta = await catalog.require(uid)
    settings = await catalog.settings(uid)
    searchable = settings.get("searchableAttributes")
    fields = None
    if searchable is None or "*" in searchable:
        fields = await catalog.search_fields(uid)
    rules_for = sent if sent is not None else request.get(SENT_INDEX, uid)
    tenant = request[AUTH].tenant_filter(rules_for)
    return IndexView(uid, meta.shards, meta.primary_key, settings, tenant, search_on=fields)


async def judged_by_a_node(
    request: web.Request,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    params: Mapping[str, str] | None = None,
) -> web.Response:
    """One node's answer to a request the proxy cannot plan (in practice: its error)."""
    response = await read_any(
        request.app[CLUSTER], method, path, json_body=json_body, params=params
    )
    if response.ok:
        raise MiroirError("bad_request", "Miroir cannot distribute this request.")
    return refused(NodeRefused(response))


def refused(refusal: NodeRefused) -> web.Response:
    status, body = reads.refusal(refusal.response)
    return raw_json_response(body, status)


def request_uid() -> str:
    """A random (version 4) UUID from the `random` module: uuid4's os.urandom was a
    syscall per search, and this id is a label, not a secret."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def wants_performance(query: Any) -> bool:
    return isinstance(query, dict) and query.get("showPerformanceDetails") is True


def respond(
    request: web.Request,
    result: ReadResult,
    started: float,
    kind: str,
    performance: Sequence[bool] = (),
) -> web.Response:
    """The answer of a search-like read; `requestUid` on every search answer in it, and
    `performanceDetails` (the proxy's whole time, as a node reports its own) on the
    answers whose query asked for them (`performance`, one flag per answer)."""
    headers = reads.enforce_policy(request.app[CLUSTER], result.degraded)
    metrics = request.app[METRICS]
    metrics.observe_fanout(kind, result.fanout)
    if headers:
        metrics.partial_responses.labels(kind).inc()
    body = result.body
    elapsed_ms = (time.perf_counter() - started) * 1000
    answers = body["results"] if kind == "multi-search" else (body,)
    for position, answer in enumerate(answers):
        answer["processingTimeMs"] = int(elapsed_ms)
        answer["requestUid"] = request_uid()
        if position < len(performance) and performance[position]:
            answer["performanceDetails"] = {"search": f"{elapsed_ms:.2f}ms"}
    return json_response(body, headers=headers)


async def _search(request: web.Request, body: Any) -> web.Response:
    """Raises `NotUnderstood` / `NodeRefused` for the caller to answer in its own form."""
    started = time.perf_counter()
    uid = request.match_info["uid"]
    try:
        view = await index_view(request, uid)
    except MiroirError as e:
        # Meilisearch reads the body before it looks for the index.
        if e.code == "index_not_found":
            reads.merge_request(body, {})
        raise
    cluster = request.app[CLUSTER]
    group = await session_group(request)
    if group is not None:
        # A session read must not join a scatter that started before its write landed.
        result = await reads.search(cluster, view, body, first_group=group)
    else:
        version = request.app[CATALOG].settings_version(uid)
        key = search_key(uid, body, version, view.tenant_filter)
        shared = await request.app[COALESCER].run(key, lambda: reads.search(cluster, view, body))
        # `respond` writes into the body: every subscriber gets its own top level.
        result = ReadResult(dict(shared.body), shared.degraded, shared.fanout)
    return respond(request, result, started, "search", [wants_performance(body)])


@routes.post("/indexes/{uid}/search")
async def post_search(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        return await _search(request, body)
    except NotUnderstood:
        uid = request.match_info["uid"]
        return await judged_by_a_node(request, "POST", f"/indexes/{uid}/search", json_body=body)
    except NodeRefused as e:
        return refused(e)


@routes.get("/indexes/{uid}/search")
async def get_search(request: web.Request) -> web.Response:
    try:
        return await _search(request, search_body_from_params(request.query))
    except (NotUnderstood, NodeRefused):
        # A node words some errors differently for a query string than for a JSON body.
        uid = request.match_info["uid"]
        return await judged_by_a_node(
            request, "GET", f"/indexes/{uid}/search", params=dict(request.query)
        )


@routes.post("/indexes/{uid}/facet-search")
async def facet_search(request: web.Request) -> web.Response:
    started = time.perf_counter()
    uid = request.match_info["uid"]
    body = await read_json(request)
    try:
        view = await index_view(request, uid)
        result = await reads.facet_search(request.app[CLUSTER], view, body)
    except NotUnderstood:
        return await judged_by_a_node(
            request, "POST", f"/indexes/{uid}/facet-search", json_body=body
        )
    except NodeRefused as e:
        return refused(e)
    headers = reads.enforce_policy(request.app[CLUSTER], result.degraded)
    result.body["processingTimeMs"] = int((time.perf_counter() - started) * 1000)
    return json_response(result.body, headers=headers)


def _prefixed(failure: multisearch.QueryFailed) -> web.Response:
    error = failure.error
    if isinstance(error, NodeRefused):
        status, raw = reads.refusal(error.response)
        payload = orjson.loads(raw)
    else:
        status, payload = error.status, error.to_dict()
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        payload["message"] = f"Inside `.queries[{failure.position}]`: {payload['message']}"
    headers = {"Retry-After": "10"} if status == 503 else None
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers
    )


async def _views(request: web.Request, queries: Sequence[Mapping[str, Any]]) -> list[IndexView]:
    auth = request[AUTH]
    topology = request.app[CLUSTER].topology  # aliases resolved once for every query
    views = []
    for position, query in enumerate(queries):
        uid = query["indexUid"]
        try:
            if not auth.allows_index(uid):
                raise invalid_key()
            views.append(await index_view(request, concrete_index(topology, uid), uid))
        except (MiroirError, NodeRefused) as e:
            raise multisearch.QueryFailed(position, e) from e
    return views


@routes.post("/multi-search")
async def multi_search(request: web.Request) -> web.Response:
    started = time.perf_counter()
    body = await read_json(request)
    cluster = request.app[CLUSTER]
    try:
        queries, federation = multisearch.check_shape(body)
        views = await _views(request, queries)
        if federation is None:
            result = await multisearch.plain(cluster, views, queries)
        else:
            result = await multisearch.federated(cluster, views, queries, federation)
    except NotUnderstood:
        return await judged_by_a_node(request, "POST", "/multi-search", json_body=body)
    except multisearch.QueryFailed as failure:
        return _prefixed(failure)
    _client_names(cluster.topology, result.body)
    if federation is None:
        flags = [wants_performance(query) for query in queries]
        return respond(request, result, started, "multi-search", flags)
    return respond(request, result, started, "federated-search")


def _client_names(topology: Topology, body: dict[str, Any]) -> None:
    """A resharded index's answers name it as clients do, never by its hidden uid."""
    if not topology.names:
        return

    def named(uid: Any) -> Any:
        return topology.client_name(uid) or uid if isinstance(uid, str) else uid

    for answer in body.get("results") or ():
        if isinstance(answer, dict) and "indexUid" in answer:
            answer["indexUid"] = named(answer["indexUid"])
    for hit in body.get("hits") or ():
        federated = hit.get("_federation") if isinstance(hit, dict) else None
        if isinstance(federated, dict) and "indexUid" in federated:
            federated["indexUid"] = named(federated["indexUid"])
    if isinstance(body.get("facetsByIndex"), dict):
        body["facetsByIndex"] = {named(k): v for k, v in body["facetsByIndex"].items()}


async def _similar(request: web.Request, method: str) -> web.Response:
    uid = request.match_info["uid"]
    body = await read_json(request) if method == "POST" else None
    params = dict(request.query) if method == "GET" else None
    try:
        view = await index_view(request, uid)
        cluster = request.app[CLUSTER]
        target = await similar.check_with_owner(cluster, view, method, body=body, params=params)
        query = body if body is not None else similar.query_from_params(params or {})
        result = await similar.similar(cluster, view, query, target)
    except NodeRefused as e:
        return refused(e)
    headers = reads.enforce_policy(request.app[CLUSTER], result.degraded)
    return json_response(result.body, headers=headers)


@routes.post("/indexes/{uid}/similar")
async def post_similar(request: web.Request) -> web.Response:
    return await _similar(request, "POST")


@routes.get("/indexes/{uid}/similar")
async def get_similar(request: web.Request) -> web.Response:
    return await _similar(request, "GET")
