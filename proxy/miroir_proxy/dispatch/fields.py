"""`POST /indexes/{uid}/fields` over a sharded index: the union of the nodes' fields.

A field's description comes from the index settings, the same on every node; which fields
exist depends on the documents, spread over the nodes. So every live node of one group
(the group stats read, which holds every shard) lists all its fields matching the
client's filter, the lists are joined by name in node order (one node orders them as it
first saw them, which a fleet cannot know), Miroir's own `_miroir_*` fields are left out,
and the client's page is cut from the union. A node judges the request first, so a bad
body or a missing index gets one node's error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from miroir_proxy.core.pk import RESERVED_PREFIX
from miroir_proxy.nodes.errors import NodeError

from .broadcast import NodeRefused, read_any
from .cluster import Cluster
from .stats import stats_nodes

_EVERYTHING = 1_000_000_000


def _page(body: Any) -> tuple[int, int] | None:
    if not isinstance(body, dict):
        return None
    offset, limit = body.get("offset", 0), body.get("limit", 20)
    for value in (offset, limit):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
    return offset, limit


async def list_fields(cluster: Cluster, uid: str, body: Any) -> dict[str, Any]:
    """The merged answer; raises `NodeRefused` with a node's error."""
    path = f"/indexes/{uid}/fields"
    page = _page(body)
    judged = await read_any(cluster, "POST", path, json_body=body)
    if not judged.ok:
        raise NodeRefused(judged)
    assert page is not None and isinstance(body, dict)  # the node accepted it
    offset, limit = page
    every = {**body, "offset": 0, "limit": _EVERYTHING}
    nodes, _ = stats_nodes(cluster)
    timeout = cluster.config.timeouts.node_read_ms

    async def one(node_id: str) -> list[dict[str, Any]]:
        try:
            response = await cluster.call(
                node_id, "POST", path, json_body=every, timeout_ms=timeout
            )
        except NodeError:
            return []
        if not response.ok:
            raise NodeRefused(response)
        return list(response.json().get("results") or [])

    answers = await asyncio.gather(*(one(node_id) for node_id in nodes))
    merged: dict[str, dict[str, Any]] = {}
    for fields in answers:
        for field in fields:
            name = field.get("name")
            if isinstance(name, str) and not name.startswith(RESERVED_PREFIX):
                merged.setdefault(name, field)
    kept = list(merged.values())
    results = kept[offset : offset + limit]
    return {"results": results, "offset": offset, "limit": limit, "total": len(kept)}
