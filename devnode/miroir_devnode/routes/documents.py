"""Document routes: add/replace (POST), add/update (PUT), fetch (GET list, POST /fetch,
GET one), and the three deletions (by id, by batch of ids, by filter) plus clear-all.

Payload format, query and body types are checked here (synchronous 400/415); primary-key
resolution, id validity and filterability are checked by the task.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..auth import AUTH
from ..documents import csv_delimiter, invalid_id, normalize_id, parse_documents, payload_format
from ..engine.documents_fetch import fetch_documents
from ..engine.filtering import FilterError, parse_filter
from ..engine.validation import (
    check_bool,
    check_object,
    check_str_list,
    check_usize,
    missing_field,
    type_error,
    unknown_field,
)
from ..errors import MeiliError
from ..http import json_response, read_json
from ..node import NODE_KEY, check_index_uid
from ..params import check_query, query_bool, query_list, query_uint
from ..tasks import Task

routes = web.RouteTableDef()

_ADD_PARAMS = ("primaryKey", "csvDelimiter", "customMetadata", "skipCreation")
_FETCH_FIELDS = ("offset", "limit", "fields", "filter", "sort", "ids", "retrieveVectors")
CONTAINS_DISABLED = (
    "Using `CONTAINS` or `STARTS WITH` in a filter requires enabling the `contains filter` "
    "experimental feature. See https://github.com/orgs/meilisearch/discussions/763"
)
EDIT_DISABLED = (
    "Using the documents edit route requires enabling the `edit documents by function` "
    "experimental feature. See https://github.com/orgs/meilisearch/discussions/762"
)


def _uid(request: web.Request) -> str:
    return check_index_uid(request.match_info["index_uid"])


def _enqueue(
    request: web.Request, uid: str, details: dict[str, Any], payload: dict[str, Any]
) -> web.Response:
    task: Task = request.app[NODE_KEY].queue.enqueue(
        "documentAdditionOrUpdate" if "documents" in payload else "documentDeletion",
        uid,
        details,
        payload,
        custom_metadata=request.query.get("customMetadata"),
    )
    return json_response(task.summary(), 202)


async def _add(request: web.Request, *, merge: bool) -> web.Response:
    uid = _uid(request)
    query = request.query
    check_query(query, _ADD_PARAMS)
    fmt = payload_format(
        request.headers.get("Content-Type"), request.content_type, "csvDelimiter" in query
    )
    delimiter = csv_delimiter(query.get("csvDelimiter"))
    skip_creation = query_bool(query, "skipCreation", "invalid_skip_creation", False)
    docs = parse_documents(await request.read(), fmt, delimiter)
    payload = {
        "documents": docs,
        "primaryKey": query.get("primaryKey"),
        "merge": merge,
        "skipCreation": skip_creation,
        "canCreateIndex": request[AUTH].allows_index_creation(uid),
    }
    return _enqueue(
        request, uid, {"receivedDocuments": len(docs), "indexedDocuments": None}, payload
    )


@routes.post("/indexes/{index_uid}/documents")
async def replace_documents(request: web.Request) -> web.Response:
    return await _add(request, merge=False)


@routes.put("/indexes/{index_uid}/documents")
async def update_documents(request: web.Request) -> web.Response:
    return await _add(request, merge=True)


def _filter_from_query(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _fetch(request: web.Request, uid: str, params: dict[str, Any]) -> web.Response:
    node = request.app[NODE_KEY]
    return json_response(fetch_documents(node.get_index(uid), features=node.features, **params))


@routes.get("/indexes/{index_uid}/documents")
async def list_documents(request: web.Request) -> web.Response:
    uid = _uid(request)
    query = request.query
    check_query(query, _FETCH_FIELDS)
    params = {
        "retrieve_vectors": query_bool(
            query, "retrieveVectors", "invalid_document_retrieve_vectors", False
        ),
        "offset": query_uint(query, "offset", "invalid_document_offset", 0),
        "limit": query_uint(query, "limit", "invalid_document_limit", 20),
        "fields": query_list(query, "fields"),
        "filter": _filter_from_query(query.get("filter")),
        "ids": query_list(query, "ids"),
        "sort": query_list(query, "sort"),
    }
    return _fetch(request, uid, params)


def _ids(code: str, path: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise type_error(code, path, ["array"], value)
    ids = []
    for item in value:
        doc_id = normalize_id(item)
        if doc_id is None:
            raise invalid_id(item)
        ids.append(doc_id)
    return ids


@routes.post("/indexes/{index_uid}/documents/fetch")
async def fetch_documents_route(request: web.Request) -> web.Response:
    uid = _uid(request)
    body = check_object("bad_request", "", await read_json(request))
    params: dict[str, Any] = {
        "offset": 0, "limit": 20, "fields": None, "filter": None, "ids": None, "sort": None
    }  # fmt: skip
    for field, value in body.items():
        path = f".{field}"
        if field not in _FETCH_FIELDS:
            raise unknown_field("", field, list(_FETCH_FIELDS))
        if value is None and field != "retrieveVectors":
            continue
        if field in ("offset", "limit"):
            params[field] = check_usize(f"invalid_document_{field}", path, value)
        elif field in ("fields", "sort"):
            params[field] = check_str_list(f"invalid_document_{field}", path, value)
        elif field == "ids":
            params["ids"] = _ids("invalid_document_ids", path, value)
        elif field == "filter":
            if not isinstance(value, str | list):
                raise type_error("invalid_document_filter", path, ["string", "array"], value)
            params["filter"] = value
        else:
            code = "invalid_document_retrieve_vectors"
            params["retrieve_vectors"] = check_bool(code, path, value)
    return _fetch(request, uid, params)


@routes.get("/indexes/{index_uid}/documents/{document_id}")
async def get_document(request: web.Request) -> web.Response:
    uid = _uid(request)
    check_query(request.query, ("fields", "retrieveVectors"))
    code = "invalid_document_retrieve_vectors"
    retrieve = query_bool(request.query, "retrieveVectors", code, False)
    doc_id = request.match_info["document_id"]
    node = request.app[NODE_KEY]
    found = fetch_documents(
        node.get_index(uid),
        features=node.features,
        offset=0,
        limit=1,
        fields=query_list(request.query, "fields"),
        filter=None,
        ids=[doc_id],
        sort=None,
        retrieve_vectors=retrieve,
    )
    if not found["results"]:
        raise MeiliError("document_not_found", f"Document `{doc_id}` not found.")
    return json_response(found["results"][0])


def _deletion_details(provided: int, original_filter: Any = None) -> dict[str, Any]:
    return {"providedIds": provided, "deletedDocuments": None, "originalFilter": original_filter}


@routes.delete("/indexes/{index_uid}/documents/{document_id}")
async def delete_document(request: web.Request) -> web.Response:
    uid = _uid(request)
    check_query(request.query, ("customMetadata",))
    ids = [request.match_info["document_id"]]
    return _enqueue(request, uid, _deletion_details(1), {"ids": ids})


@routes.post("/indexes/{index_uid}/documents/delete-batch")
async def delete_batch(request: web.Request) -> web.Response:
    uid = _uid(request)
    check_query(request.query, ("customMetadata",))
    ids = _ids("bad_request", "", await read_json(request))
    return _enqueue(request, uid, _deletion_details(len(ids)), {"ids": ids})


@routes.post("/indexes/{index_uid}/documents/delete")
async def delete_by_filter(request: web.Request) -> web.Response:
    uid = _uid(request)
    check_query(request.query, ("customMetadata",))
    body = check_object("bad_request", "", await read_json(request))
    for field in body:
        if field != "filter":
            raise unknown_field("", field, ["filter"])
    value = body.get("filter")
    if value is None:
        raise missing_field("missing_document_filter", "", "filter")
    try:
        parsed = parse_filter(value)
    except FilterError as e:
        raise MeiliError("invalid_document_filter", e.message) from e
    if parsed is None:
        raise MeiliError("invalid_document_filter", "Sending an empty filter is forbidden.")
    if parsed.uses_contains() and not request.app[NODE_KEY].features["containsFilter"]:
        raise MeiliError("feature_not_enabled", CONTAINS_DISABLED)
    details = _deletion_details(0, orjson.dumps(value).decode())
    return _enqueue(request, uid, details, {"filter": value})


@routes.delete("/indexes/{index_uid}/documents")
async def clear_documents(request: web.Request) -> web.Response:
    uid = _uid(request)
    check_query(request.query, ("customMetadata",))
    return _enqueue(request, uid, {"deletedDocuments": None}, {"clear": True})


@routes.post("/indexes/{index_uid}/documents/edit")
async def edit_documents(request: web.Request) -> web.Response:
    raise MeiliError("feature_not_enabled", EDIT_DISABLED)
