"""`POST /_miroir/dumps/import`: a Meilisearch `.dump` in, one `dump-import` operation out.

The body is streamed into this pod's spool directory and scanned on the way
(`operations.dumpimport` says where the bytes live and which pods can resume the import),
then the operation starts: `202 {"operation", "indexes", "documents"}`. A dump that cannot
be read (corrupt, truncated, an unknown `dumpVersion`) still becomes an operation, which
fails at its first step with `miroir_invalid_dump`, so every bad dump is reported the same
way, where the import is followed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from miroir_proxy.core.dumpreading import DumpSummary
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.operations.dumpimport import (
    KIND,
    RECEIVE_PIECE,
    RECORD_TTL_S,
    import_params,
    summary_document,
    summary_key,
)

from ..appkeys import DUMP_SPOOL, OPERATIONS, STORE
from ..responses import json_response
from .admin import require_admin

routes = web.RouteTableDef()

CONTENT_TYPES = ("application/octet-stream", "application/gzip", "application/x-gzip")


def _check_content_type(request: web.Request) -> None:
    accepted = ", ".join(f"`{t}`" for t in CONTENT_TYPES[:2])
    if "Content-Type" not in request.headers:
        raise MiroirError(
            "missing_content_type",
            f"A Content-Type header is missing. Accepted values for the Content-Type header "
            f"are: {accepted}",
        )
    if request.content_type not in CONTENT_TYPES:
        raise MiroirError(
            "invalid_content_type",
            f"The Content-Type `{request.headers['Content-Type']}` is invalid. Accepted values "
            f"for the Content-Type header are: {accepted}",
        )


@routes.post("/_miroir/dumps/import")
async def import_dump(request: web.Request) -> web.Response:
    require_admin(request)
    _check_content_type(request)
    operations, spool = request.app[OPERATIONS], request.app[DUMP_SPOOL]
    await operations.ensure_idle()
    await spool.sweep(request.app[STORE])
    file, summary = await spool.receive(request.content.iter_chunked(RECEIVE_PIECE))
    try:
        await request.app[STORE].kv_set(summary_key(file), summary_document(summary), RECORD_TTL_S)
        record = await operations.start(KIND, import_params(spool, file, summary))
    except BaseException:
        spool.remove(file)
        raise
    answer: dict[str, Any] = {"operation": record.id, "kind": KIND}
    if isinstance(summary, DumpSummary):
        answer["indexes"] = [index.uid for index in summary.indexes]
        answer["documents"] = summary.documents
    return json_response(answer, status=202)
