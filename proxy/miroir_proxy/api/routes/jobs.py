"""Admin view of this pod's coordination and of the background job queue.

`POST /_miroir/jobs` queues only the `sleep-chunks` demo kind: real jobs are enqueued by
the operations that need them. It exists so multi-process tests (and curious operators)
can watch chunks move between pods, kill one mid-chunk and check nothing ran twice.
`/_miroir/demo/leases/{name}` does the same for leases: the pods asked to join contend for
lease `demo:<name>` and the holder runs a demo phase machine (`coordination/demoleases.py`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from miroir_proxy.coordination import demojobs
from miroir_proxy.core.errors import MiroirError

from ..appkeys import COORDINATION, LEASE_DEMOS, STORE
from ..responses import json_response, read_json
from .admin import require_admin

routes = web.RouteTableDef()

_LIMITS = {
    "chunks": (1, 10_000),
    "steps": (1, 1_000),
    "stepMs": (0, 60_000),
    "phases": (1, 100),
}


def _bounded(body: dict[str, Any], name: str) -> int:
    low, high = _LIMITS[name]
    value = body.get(name)
    if type(value) is not int or not low <= value <= high:
        raise MiroirError("bad_request", f"`{name}` must be an integer from {low} to {high}.")
    return value


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


@routes.post("/_miroir/jobs")
async def enqueue_demo_job(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("kind") != demojobs.KIND:
        raise MiroirError("bad_request", f"Only `kind: {demojobs.KIND}` jobs can be queued here.")
    job_id = body.get("jobId")
    if not isinstance(job_id, str) or not job_id:
        raise MiroirError("bad_request", "`jobId` must be a non-empty string.")
    chunks = demojobs.chunks(
        _bounded(body, "chunks"), steps=_bounded(body, "steps"), step_ms=_bounded(body, "stepMs")
    )
    created = await request.app[COORDINATION].queue.enqueue(job_id, demojobs.KIND, chunks)
    return json_response({"jobId": job_id, "created": created}, status=202)


@routes.get("/_miroir/jobs/{job_id}")
async def job_progress(request: web.Request) -> web.Response:
    """Progress of a job; for `sleep-chunks` jobs also what each chunk recorded."""
    require_admin(request)
    job_id = request.match_info["job_id"]
    store = request.app[STORE]
    progress = await store.job_progress(job_id)
    if progress is None:
        raise MiroirError("miroir_job_not_found", f"Job `{job_id}` not found.")
    answer: dict[str, Any] = {
        "jobId": job_id,
        "total": progress.total,
        "done": progress.done,
        "claimed": progress.claimed,
        "finished": progress.finished,
    }
    if request.query.get("records") == "true":
        answer["chunks"] = await demojobs.chunk_records(store, job_id, progress.total)
        answer["duplicated"] = await demojobs.duplicated(store, job_id)
    return json_response(answer)


@routes.post("/_miroir/demo/leases/{name}")
async def join_lease_demo(request: web.Request) -> web.Response:
    """This pod starts contending for lease `demo:<name>` (and runs its phase machine when
    it holds it); `joined` is false if it already does."""
    require_admin(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise MiroirError("bad_request", "The body must be a JSON object.")
    operation = body.get("operation")
    if not isinstance(operation, str) or not operation:
        raise MiroirError("bad_request", "`operation` must be a non-empty string.")
    name = request.match_info["name"]
    joined = await request.app[LEASE_DEMOS].join(
        name, operation, _bounded(body, "phases"), _bounded(body, "stepMs")
    )
    return json_response({"name": name, "joined": joined}, status=202)


@routes.get("/_miroir/demo/leases/{name}")
async def lease_demo(request: web.Request) -> web.Response:
    """This pod's view of the demo: whether and when it held the lease, where its runs of
    the phase machine started, and the committed phase state."""
    require_admin(request)
    name = request.match_info["name"]
    demo = request.app[LEASE_DEMOS].get(name)
    if demo is None:
        raise MiroirError("miroir_job_not_found", f"This pod has not joined lease demo `{name}`.")
    state = await demo.machine.state()
    return json_response({**demo.view(), "state": None if state is None else state.to_stored()})


@routes.delete("/_miroir/demo/leases/{name}")
async def leave_lease_demo(request: web.Request) -> web.Response:
    """This pod stops contending and releases the lease if it held it."""
    require_admin(request)
    left = await request.app[LEASE_DEMOS].leave(request.match_info["name"])
    return json_response({"left": left})
