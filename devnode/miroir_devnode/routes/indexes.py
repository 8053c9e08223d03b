"""Index routes: list, create, get, update (primary key, rename), delete, swap and stats.

Only the request shape is checked here (400s are synchronous); whether the index exists
is decided when the task runs, so those errors land in the failed task, as in Meilisearch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from ..auth import AUTH
from ..engine.fields import list_fields, parse_fields_request
from ..engine.validation import (
    check_bool,
    check_object,
    check_str,
    missing_field,
    type_error,
    unknown_field,
    value_error,
)
from ..errors import MeiliError
from ..http import json_response, read_json
from ..node import NODE_KEY, IndexEntry, Node, check_index_uid
from ..params import check_query, query_bool, query_uint
from ..sizes import render_bytes

routes = web.RouteTableDef()


def size_format(raw: str) -> bool:
    """True for `sizeFormat=human`."""
    if raw not in ("raw", "human"):
        raise MeiliError(
            "invalid_stats_size_format",
            f"Invalid value in parameter `sizeFormat`: Unknown value `{raw}`, expected one of "
            "`raw`, `human`",
        )
    return raw == "human"


def stats_options(query: Mapping[str, str]) -> tuple[bool, bool]:
    """(human sizes, internal database sizes) of a stats request's query string."""
    check_query(query, ("showInternalDatabaseSizes", "sizeFormat"))
    internal = query_bool(
        query, "showInternalDatabaseSizes", "invalid_stats_show_internal_database_sizes", False
    )
    return size_format(query.get("sizeFormat", "raw")), internal


def index_stats(
    node: Node, entry: IndexEntry, *, human: bool = False, internal: bool = False
) -> dict[str, Any]:
    index = entry.index
    count = len(index)
    raw = node.storage.raw_documents_size(index.uid)
    embedded: set[int] = set()
    embeddings = 0
    for by_doc in index.vectors.values():
        for doc, found in by_doc.items():
            if found:
                embedded.add(doc)
                embeddings += len(found)
    stats: dict[str, Any] = {
        "numberOfDocuments": count,
        "rawDocumentDbSize": render_bytes(raw, human),
        "avgDocumentSize": render_bytes(raw // count if count else 0, human),
        "isIndexing": node.queue.is_indexing(index.uid),
        "numberOfEmbeddings": embeddings,
        "numberOfEmbeddedDocuments": len(embedded),
        "fieldDistribution": index.field_distribution(),
    }
    if internal:
        # The devnode's one store: its documents (Meilisearch lists its LMDB databases).
        stats["internalDatabaseSizes"] = {"documents": render_bytes(raw, human)}
    return stats


def _object_body(raw: Any, accepted: tuple[str, ...], path: str = "") -> dict[str, Any]:
    body = check_object("bad_request", path, raw)
    for field in body:
        if field not in accepted:
            raise unknown_field(path, field, accepted)
    return body


def _uid_param(request: web.Request) -> str:
    return check_index_uid(request.match_info["index_uid"])


def _primary_key(body: dict[str, Any]) -> str | None:
    pk = body.get("primaryKey")
    return None if pk is None else check_str("invalid_index_primary_key", ".primaryKey", pk)


def _body_uid(body: dict[str, Any], code: str = "invalid_index_uid") -> str:
    return check_index_uid(check_str(code, ".uid", body["uid"]), ".uid")


@routes.get("/indexes")
async def list_indexes(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    check_query(request.query, ("offset", "limit"))
    offset = query_uint(request.query, "offset", "invalid_index_offset", 0)
    limit = query_uint(request.query, "limit", "invalid_index_limit", 20)
    allowed = request[AUTH].allows_index
    visible = [e for uid, e in sorted(node.entries.items()) if allowed(uid)]
    return json_response(
        {
            "results": [e.to_json() for e in visible[offset : offset + limit]],
            "offset": offset,
            "limit": limit,
            "total": len(visible),
        }
    )


@routes.post("/indexes")
async def create_index(request: web.Request) -> web.Response:
    body = _object_body(await read_json(request), ("uid", "primaryKey"))
    if "uid" not in body:
        raise missing_field("missing_index_uid", "", "uid")
    uid = _body_uid(body)
    pk = _primary_key(body)
    task = request.app[NODE_KEY].queue.enqueue(
        "indexCreation", uid, {"primaryKey": pk}, {"primaryKey": pk}
    )
    return json_response(task.summary(), 202)


@routes.get("/indexes/{index_uid}")
async def get_index(request: web.Request) -> web.Response:
    return json_response(request.app[NODE_KEY].get_entry(_uid_param(request)).to_json())


@routes.patch("/indexes/{index_uid}")
async def update_index(request: web.Request) -> web.Response:
    uid = _uid_param(request)
    body = check_object("bad_request", "", await read_json(request))
    for field, code in (
        ("createdAt", "immutable_index_created_at"),
        ("updatedAt", "immutable_index_updated_at"),
    ):
        if field in body:
            raise MeiliError(
                code, f"Immutable field `{field}`: expected one of `primaryKey`, `uid`"
            )
    _object_body(body, ("primaryKey", "uid"))
    pk = _primary_key(body)
    details: dict[str, Any] = {"primaryKey": pk}
    payload: dict[str, Any] = {"primaryKey": pk, "setPrimaryKey": "primaryKey" in body}
    if body.get("uid") is not None:
        new_uid = _body_uid(body)
        details.update(oldIndexUid=uid, newIndexUid=new_uid)
        payload["newUid"] = new_uid
    task = request.app[NODE_KEY].queue.enqueue("indexUpdate", uid, details, payload)
    return json_response(task.summary(), 202)


@routes.delete("/indexes/{index_uid}")
async def delete_index(request: web.Request) -> web.Response:
    uid = _uid_param(request)
    task = request.app[NODE_KEY].queue.enqueue("indexDeletion", uid, {"deletedDocuments": None}, {})
    return json_response(task.summary(), 202)


@routes.post("/indexes/{index_uid}/fields")
async def list_index_fields(request: web.Request) -> web.Response:
    parsed = parse_fields_request(await read_json(request))
    index = request.app[NODE_KEY].get_index(_uid_param(request))
    return json_response(list_fields(index.field_names(), index.settings, parsed))


@routes.post("/indexes/{index_uid}/compact")
async def compact_index(request: web.Request) -> web.Response:
    uid = _uid_param(request)
    task = request.app[NODE_KEY].queue.enqueue("indexCompaction", uid, {}, {})
    return json_response(task.summary(), 202)


@routes.get("/indexes/{index_uid}/stats")
async def get_index_stats(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    human, internal = stats_options(request.query)
    entry = node.get_entry(_uid_param(request))
    return json_response(index_stats(node, entry, human=human, internal=internal))


def _parse_swap(position: int, item: Any, seen: set[str]) -> dict[str, Any]:
    where = f"[{position}]"
    item = _object_body(item, ("indexes", "rename"), where)
    if "indexes" not in item:
        raise missing_field("missing_swap_indexes", where, "indexes")
    pair = item["indexes"]
    if not isinstance(pair, list):
        raise type_error("invalid_swap_indexes", f"{where}.indexes", ["array"], pair)
    for n, uid in enumerate(pair):
        check_index_uid(
            check_str("invalid_swap_indexes", f"{where}.indexes[{n}]", uid), f"{where}.indexes[{n}]"
        )
    if len(pair) != 2:
        raise value_error(
            "invalid_swap_indexes",
            f"{where}.indexes",
            "Two indexes must be given for each swap. "
            f"The list `{orjson.dumps(pair).decode()}` contains {len(pair)} indexes.",
        )
    rename = check_bool("invalid_swap_rename", f"{where}.rename", item.get("rename", False))
    for uid in pair:
        if uid in seen:
            raise MeiliError(
                "invalid_swap_duplicate_index_found",
                f"Indexes must be declared only once during a swap. `{uid}` was specified "
                "several times.",
            )
        seen.add(uid)
    return {"indexes": pair, "rename": rename}


@routes.post("/swap-indexes")
async def swap_indexes(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, list):
        raise type_error("bad_request", "", ["array"], body)
    seen: set[str] = set()
    swaps = [_parse_swap(n, item, seen) for n, item in enumerate(body)]
    # The route is not index-scoped, so the key's index patterns are checked here.
    if not all(request[AUTH].allows_index(uid) for uid in seen):
        raise MeiliError("invalid_api_key", "The provided API key is invalid.")
    task = request.app[NODE_KEY].queue.enqueue(
        "indexSwap", None, {"swaps": swaps}, {"swaps": swaps}
    )
    return json_response(task.summary(), 202)
