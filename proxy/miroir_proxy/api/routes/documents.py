"""Document writes and single-document reads (`/indexes/{uid}/documents...`).

Listing and fetching documents live with the other read routes; everything here either
enqueues a Miroir task (202) or reads one document from one replica of its shard.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch.lookup import fetch_document, strip_reserved
from miroir_proxy.dispatch.payloads import (
    bool_parameter,
    check_parameters,
    csv_delimiter,
    parse_documents,
    payload_format,
)
from miroir_proxy.dispatch.writes import DocumentWriter, WriteResult, ids_of

from ..appkeys import CATALOG, CLUSTER, DELETE_LOG, HANDOFF, TASKS
from ..auth import AUTH
from ..responses import json_response, raw_json_response, read_json

routes = web.RouteTableDef()

_DELETE_PARAMS = ("customMetadata",)
# In Meilisearch's order, which its "expected one of" message follows.
_ADD_PARAMS = ("primaryKey", "csvDelimiter", *_DELETE_PARAMS, "skipCreation")


def _writer(request: web.Request) -> DocumentWriter:
    app = request.app
    return DocumentWriter(
        app[CLUSTER], app[CATALOG], app[TASKS], handoff=app[HANDOFF], deletions=app[DELETE_LOG]
    )


def _extra(request: web.Request) -> dict[str, Any] | None:
    metadata = request.query.get("customMetadata")
    return None if metadata is None else {"customMetadata": metadata}


def _answer(request: web.Request, result: WriteResult) -> web.Response:
    headers = {"X-Miroir-Degraded": result.degraded} if result.degraded else None
    return json_response(request.app[TASKS].summary(result.task), status=202, headers=headers)


async def _add(request: web.Request, *, merge: bool) -> web.Response:
    uid = request.match_info["index_uid"]
    query = request.query
    check_parameters(query, _ADD_PARAMS)
    fmt = payload_format(
        request.headers.get("Content-Type"), request.content_type, "csvDelimiter" in query
    )
    delimiter = csv_delimiter(query.get("csvDelimiter"))
    skip_creation = bool_parameter(query, "skipCreation", "invalid_skip_creation")
    body = await request.read()
    documents = parse_documents(body, fmt, delimiter)
    auth = request.get(AUTH)
    result = await _writer(request).add(
        uid,
        documents,
        merge=merge,
        requested_pk=query.get("primaryKey"),
        skip_creation=skip_creation,
        can_create_index=auth is None or auth.allows_index_creation(uid),
        extra=_extra(request),
    )
    return _answer(request, result)


async def add_documents(request: web.Request) -> web.Response:
    """POST replaces whole documents; PUT merges the given fields into them."""
    return await _add(request, merge=request.method == "PUT")


for _verb in ("POST", "PUT"):
    routes.route(_verb, "/indexes/{index_uid}/documents")(add_documents)


@routes.get("/indexes/{index_uid}/documents/{document_id}")
async def get_document(request: web.Request) -> web.Response:
    uid = request.match_info["index_uid"]
    check_parameters(request.query, ("fields", "retrieveVectors"))
    meta = await request.app[CATALOG].require(uid)
    response = await fetch_document(
        request.app[CLUSTER], uid, meta.shards, request.match_info["document_id"], request.query
    )
    body = strip_reserved(response.body) if response.ok else response.body
    return raw_json_response(body, response.status)


@routes.delete("/indexes/{index_uid}/documents/{document_id}")
async def delete_document(request: web.Request) -> web.Response:
    check_parameters(request.query, _DELETE_PARAMS)
    result = await _writer(request).delete_ids(
        request.match_info["index_uid"], [request.match_info["document_id"]], _extra(request)
    )
    return _answer(request, result)


@routes.post("/indexes/{index_uid}/documents/delete-batch")
async def delete_documents_batch(request: web.Request) -> web.Response:
    check_parameters(request.query, _DELETE_PARAMS)
    body = await read_json(request)
    if not isinstance(body, list):
        raise MiroirError(
            "bad_request", f"Invalid value type: expected an array, but found {_kind(body)}"
        )
    result = await _writer(request).delete_ids(
        request.match_info["index_uid"], ids_of(body), _extra(request)
    )
    return _answer(request, result)


@routes.post("/indexes/{index_uid}/documents/delete")
async def delete_documents_by_filter(request: web.Request) -> web.Response:
    check_parameters(request.query, _DELETE_PARAMS)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise MiroirError(
            "bad_request", f"Invalid value type: expected an object, but found {_kind(body)}"
        )
    for field in body:
        if field != "filter":
            raise MiroirError("bad_request", f"Unknown field `{field}`: expected one of `filter`")
    filter_ = body.get("filter")
    if filter_ is None:
        raise MiroirError("missing_document_filter", "Missing field `filter`")
    if not isinstance(filter_, str | list):
        raise MiroirError(
            "invalid_document_filter",
            "Invalid value type at `.filter`: expected a string or an array, but found "
            + _kind(filter_),
        )
    if _is_empty(filter_):
        raise MiroirError("invalid_document_filter", "Sending an empty filter is forbidden.")
    result = await _writer(request).delete_by_filter(
        request.match_info["index_uid"], filter_, _extra(request)
    )
    return _answer(request, result)


@routes.delete("/indexes/{index_uid}/documents")
async def delete_all_documents(request: web.Request) -> web.Response:
    check_parameters(request.query, _DELETE_PARAMS)
    result = await _writer(request).delete_all(request.match_info["index_uid"], _extra(request))
    return _answer(request, result)


def _is_empty(filter_: Any) -> bool:
    if isinstance(filter_, str):
        return not filter_.strip()
    if isinstance(filter_, list):
        return all(_is_empty(item) for item in filter_)
    return False


def _kind(value: Any) -> str:
    """How deserr names a JSON value in its messages, followed by the value itself."""
    if value is None:
        return "null"
    shown = orjson.dumps(value).decode()
    if type(value) is int:
        sign = "negative" if value < 0 else "positive"
        return f"a {sign} integer: `{shown}`"
    nouns = {bool: "a boolean", float: "a number", str: "a string", list: "an array"}
    noun = nouns.get(type(value), "an object" if isinstance(value, dict) else "a value")
    return f"{noun}: `{shown}`"
