"""Instance-wide maintenance routes: snapshots and experimental features.

Snapshots are taken on every node (each holds different shards, so one node's snapshot is
not the cluster's) and tracked as one Miroir task. Dumps are one logical dump of the
cluster (`dumpexport`). Experimental features are a node setting: changes go to every
node, reads come from one.
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
from miroir_proxy.operations.antientropy import KIND as ANTI_ENTROPY_KIND
from miroir_proxy.operations.antientropy import SCOPE as ANTI_ENTROPY_SCOPE

from ..appkeys import ANTI_ENTROPY, CLUSTER, OPERATIONS, SETTINGS_SYNC, TASKS, TTL_SWEEPER
from ..responses import json_response, raw_json_response, read_json
from .admin import require_admin

routes = web.RouteTableDef()


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


@routes.post("/_miroir/maintenance/anti-entropy")
async def anti_entropy(request: web.Request) -> web.Response:
    """One anti-entropy pass over every shard now, as an operation (admin key): follow it
    with `GET /_miroir/operations/{id}` until `state` is `succeeded` (or `failed`); its
    `progress` holds the pass's figures. 409 `miroir_operation_in_progress` while a
    previous one runs."""
    require_admin(request)
    record = await request.app[OPERATIONS].start(ANTI_ENTROPY_KIND, {}, scope=ANTI_ENTROPY_SCOPE)
    return json_response(
        {"operation": record.id, "kind": record.kind, "state": record.state}, status=202
    )


@routes.get("/_miroir/maintenance/anti-entropy")
async def anti_entropy_status(request: web.Request) -> web.Response:
    """This pod's last pass (scheduled or requested) and its settings (admin key)."""
    require_admin(request)
    engine = request.app[ANTI_ENTROPY]
    last = engine.last
    return json_response(
        {
            "lastPass": None if last is None else last.to_dict(),
            "autoRepair": engine.config.auto_repair,
            "intervalMs": engine.config.interval_ms,
            "shardsPerPass": engine.config.shards_per_pass,
        }
    )


@routes.post("/_miroir/maintenance/settings-drift")
async def settings_drift(request: web.Request) -> web.Response:
    """One settings-drift pass over every index now, whichever pod owns it (admin key):
    nodes whose settings differ from Miroir's are repaired; an index is unfrozen once every
    node agrees again."""
    require_admin(request)
    checked = await request.app[SETTINGS_SYNC].drift_pass(owned_only=False)
    return json_response({"indexes": [c.to_dict() for c in checked]})
