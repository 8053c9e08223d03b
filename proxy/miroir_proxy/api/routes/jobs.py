"""Admin view of this pod's coordination and of the background job queue.

Jobs are enqueued by the operations that need them (and, in the tests, by a plugin:
`api/plugins.py`); these routes only show them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from miroir_proxy.core.errors import MiroirError

from ..appkeys import COORDINATION, STORE
from ..responses import json_response
from .admin import require_admin

routes = web.RouteTableDef()


@routes.get("/_miroir/coordination")
async def coordination(request: web.Request) -> web.Response:
    require_admin(request)
    pod = request.app[COORDINATION]
    return json_response(
        {
            "podId": pod.pod_id,
            "token": pod.token,
            "livePeers": sorted(pod.peers.live),
            "queueDepth": await pod.refresh_queue_depth(),
            "jobsInProgress": pod.in_progress,
        }
    )


@routes.get("/_miroir/jobs/{job_id}")
async def job_progress(request: web.Request) -> web.Response:
    """How many of a job's chunks are done and claimed now."""
    require_admin(request)
    job_id = request.match_info["job_id"]
    progress = await request.app[STORE].job_progress(job_id)
    if progress is None:
        raise MiroirError("miroir_job_not_found", f"Job `{job_id}` not found.")
    answer: dict[str, Any] = {
        "jobId": job_id,
        "total": progress.total,
        "done": progress.done,
        "claimed": progress.claimed,
        "finished": progress.finished,
    }
    return json_response(answer)
