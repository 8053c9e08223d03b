"""Dumps out: `POST /dumps` (Meilisearch's route) and `GET /_miroir/dumps/{dumpUid}`.

`POST /dumps` answers Meilisearch's summarized `dumpCreation` task at once; the dump is
written by an operation (`operations.dumpexport`) whose holder finishes the task. The
download streams the file from the disk of the pod that wrote it; another pod answers
421 `miroir_dump_on_other_pod` naming that pod (dump files are not copied between pods).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch import taskstatus
from miroir_proxy.operations import dumpexport
from miroir_proxy.operations.dumpwriting import SUFFIX

from ..appkeys import COORDINATION, OPERATIONS, STORE, TASKS
from ..responses import json_response
from .admin import require_admin

routes = web.RouteTableDef()

_UID = re.compile(r"^[0-9]{8}-[0-9]{9}$")


@routes.post("/dumps")
async def create_dump(request: web.Request) -> web.Response:
    store, tasks = request.app[STORE], request.app[TASKS]
    uid = await dumpexport.reserve_uid(store)
    record = await tasks.enqueue_for_operation(
        None, dumpexport.TASK_TYPE, details={"dumpUid": None}
    )
    params = {"dumpUid": uid, "taskUid": record.uid}
    try:
        await request.app[OPERATIONS].start(dumpexport.KIND, params, scope=dumpexport.scope(uid))
    except Exception as e:
        # No operation will ever finish the task: fail it now, so no client waits forever.
        error = MiroirError("dump_process_failed", f"The dump `{uid}` could not start: {e}")
        if taskstatus.finish_operation_task(record, datetime.now(UTC), error=error.to_dict()):
            await store.save_task(record)
        raise
    return json_response(tasks.summary(record), status=202)


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _not_found(uid: str) -> MiroirError:
    return MiroirError("dump_not_found", f"Dump `{uid}` not found.")


@routes.get("/_miroir/dumps/{dump_uid}")
async def download_dump(request: web.Request) -> web.StreamResponse:
    """The `.dump` file (gzip), streamed from this pod's disk (admin key)."""
    require_admin(request)
    uid = request.match_info["dump_uid"]
    if not _UID.match(uid):
        raise _not_found(uid)
    found = await dumpexport.find(request.app[STORE], uid)
    if found is None:
        raise _not_found(uid)
    path = Path(found.path)
    if await asyncio.to_thread(_size, path) != found.size:
        pod = request.app[COORDINATION].pod_id
        if found.pod != pod:
            raise MiroirError(
                "miroir_dump_on_other_pod",
                f"Dump `{uid}` is stored on proxy pod `{found.pod}`, not on `{pod}`: "
                "download it from that pod.",
            )
        raise MiroirError("dump_not_found", f"Dump `{uid}` was deleted from `{found.path}`.")
    headers = {
        "Content-Type": "application/gzip",
        "Content-Disposition": f'attachment; filename="{uid}{SUFFIX}"',
    }
    return web.FileResponse(path, headers=headers)
