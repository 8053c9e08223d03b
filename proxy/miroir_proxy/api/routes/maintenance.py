"""Instance-wide maintenance routes: dumps, snapshots and experimental features.

Dumps and snapshots are taken on every node (each holds different shards, so one node's
dump is not the cluster's) and tracked as one Miroir task; the node dumps are per node
files, and importing them back is an operation of its own. Experimental features are a
node setting: changes go to every node, reads come from one.
"""

from __future__ import annotations

from aiohttp import web

from miroir_proxy.dispatch.broadcast import (
    NodeRefused,
    accepted_answer,
    broadcast,
    read_any,
    task_refs,
)

from ..appkeys import CLUSTER, SETTINGS_SYNC, TASKS, TTL_SWEEPER
from ..responses import json_response, raw_json_response, read_json
from .admin import require_admin

routes = web.RouteTableDef()


@routes.post("/dumps")
async def create_dump(request: web.Request) -> web.Response:
    refs = task_refs(await broadcast(request.app[CLUSTER], "POST", "/dumps"))
    tasks = request.app[TASKS]
    record = await tasks.enqueue(
        None, "dumpCreation", refs, details={"dumpUid": None}, policy="all"
    )
    return json_response(tasks.summary(record), status=202)


@routes.post("/snapshots")
async def create_snapshot(request: web.Request) -> web.Response:
    refs = task_refs(await broadcast(request.app[CLUSTER], "POST", "/snapshots"))
    tasks = request.app[TASKS]
    record = await tasks.enqueue(None, "snapshotCreation", refs, details=None, policy="all")
    return json_response(tasks.summary(record), status=202)


@routes.get("/experimental-features")
async def get_features(request: web.Request) -> web.Response:
    response = await read_any(request.app[CLUSTER], "GET", "/experimental-features")
    if not response.ok:
        raise NodeRefused(response)
    return raw_json_response(response.body, response.status)


@routes.patch("/experimental-features")
async def update_features(request: web.Request) -> web.Response:
    body = await read_json(request)
    outcomes = await broadcast(
        request.app[CLUSTER], "PATCH", "/experimental-features", json_body=body
    )
    answer = accepted_answer(outcomes)
    return raw_json_response(answer.body, answer.status)


@routes.post("/_miroir/maintenance/ttl-sweep")
async def ttl_sweep(request: web.Request) -> web.Response:
    """One TTL pass over every index now, whichever pod owns it (admin key)."""
    require_admin(request)
    swept = await request.app[TTL_SWEEPER].sweep(owned_only=False)
    return json_response({"indexes": [s.to_dict() for s in swept]})


@routes.post("/_miroir/maintenance/settings-drift")
async def settings_drift(request: web.Request) -> web.Response:
    """One settings-drift pass over every index now, whichever pod owns it (admin key):
    nodes whose settings differ from Miroir's are repaired; an index is unfrozen once every
    node agrees again."""
    require_admin(request)
    checked = await request.app[SETTINGS_SYNC].drift_pass(owned_only=False)
    return json_response({"indexes": [c.to_dict() for c in checked]})
