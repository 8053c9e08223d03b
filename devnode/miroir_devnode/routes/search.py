"""Search routes: search (GET/POST), multi-search, facet search and similar documents.

Handlers only read the request and hand it to the engine; the engine raises `MeiliError`
for every client mistake. The order of checks is Meilisearch's: the body (or query string)
is validated first, then the index uid, then the index must exist.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ..auth import AUTH
from ..engine.facet_search import facet_search, parse_facet_search
from ..engine.federation import multi_search
from ..engine.search import search_with_params
from ..engine.search_params import SearchParams, parse_search_body
from ..engine.search_query_string import query_string_to_body
from ..engine.similar import parse_similar, similar, similar_query_to_body
from ..http import json_response, read_json
from ..node import NODE_KEY, check_index_uid

routes = web.RouteTableDef()


def _uid(request: web.Request) -> str:
    return check_index_uid(request.match_info["index_uid"])


def _search(request: web.Request, params: SearchParams, started: float) -> web.Response:
    uid = _uid(request)
    node = request.app[NODE_KEY]
    index = node.get_index(uid)
    result = search_with_params(
        index,
        params,
        tenant_filter=request[AUTH].tenant_filter(uid),
        features=node.features,
        started=started,
    )
    return json_response(result)


@routes.post("/indexes/{index_uid}/search")
async def search_post(request: web.Request) -> web.Response:
    started = time.perf_counter()
    params = parse_search_body(await read_json(request))
    return _search(request, params, started)


@routes.get("/indexes/{index_uid}/search")
async def search_get(request: web.Request) -> web.Response:
    started = time.perf_counter()
    params = parse_search_body(query_string_to_body(request.query))
    return _search(request, params, started)


@routes.post("/multi-search")
async def multi_search_post(request: web.Request) -> web.Response:
    body = await read_json(request)
    node = request.app[NODE_KEY]
    result = multi_search(
        body, get_index=node.get_index, auth=request[AUTH], features=node.features
    )
    return json_response(result)


@routes.post("/indexes/{index_uid}/facet-search")
async def facet_search_post(request: web.Request) -> web.Response:
    parsed = parse_facet_search(await read_json(request))
    uid = _uid(request)
    node = request.app[NODE_KEY]
    index = node.get_index(uid)
    tenant = request[AUTH].tenant_filter(uid)
    return json_response(facet_search(index, parsed, tenant_filter=tenant, features=node.features))


def _similar(request: web.Request, query: dict[str, Any], started: float) -> web.Response:
    uid = _uid(request)
    node = request.app[NODE_KEY]
    result = similar(
        node.get_index(uid),
        query,
        tenant_filter=request[AUTH].tenant_filter(uid),
        features=node.features,
        started=started,
    )
    return json_response(result)


@routes.post("/indexes/{index_uid}/similar")
async def similar_post(request: web.Request) -> web.Response:
    started = time.perf_counter()
    return _similar(request, parse_similar(await read_json(request)), started)


@routes.get("/indexes/{index_uid}/similar")
async def similar_get(request: web.Request) -> web.Response:
    started = time.perf_counter()
    return _similar(request, parse_similar(similar_query_to_body(request.query)), started)
