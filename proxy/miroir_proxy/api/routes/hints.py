"""`GET /_miroir/hints` (admin key): hinted handoff's backlog per node, read from the store.

`needsAntiEntropy` is true once a node overflowed its hint bound: its hints were dropped,
and anti-entropy (which clears the flag once it repaired the node) must bring it in line.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import HANDOFF, STORE
from ..responses import json_response
from .admin import require_admin

routes = web.RouteTableDef()


@routes.get("/_miroir/hints")
async def list_hints(request: web.Request) -> web.Response:
    require_admin(request)
    backlogs = await request.app[STORE].hint_backlogs()
    config = request.app[HANDOFF].config
    return json_response(
        {
            "enabled": config.enabled,
            "maxHintsPerNode": config.max_hints_per_node,
            "nodes": [
                {
                    "node": node,
                    "pending": backlog.pending,
                    "dropped": backlog.dropped,
                    "needsAntiEntropy": backlog.overflowed,
                }
                for node, backlog in sorted(backlogs.items())
            ],
        }
    )
