"""`X-Miroir-Session` at the HTTP edge: remember a session's writes, steer its searches.

Writes are remembered by a middleware (every route answering a Miroir task, whatever its
resource); searches ask `session_group` before they scatter. Sessions are scoped by the
credentials that sent them, like idempotency keys. Recording is best effort: a write
whose session cannot be stored still answers its task, since the write has happened.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from miroir_proxy.dispatch.sessions import HEADER
from miroir_proxy.state.store import StoreUnavailable

from .appkeys import SESSIONS, TASKS

log = logging.getLogger(__name__)


def _credentials(request: web.Request) -> str:
    return request.headers.get("Authorization", "")


async def remember_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    session_id = request.headers.get(HEADER)
    if not session_id or response.status != 202 or not isinstance(response, web.Response):
        return response
    body = response.body
    if not isinstance(body, bytes):
        return response
    answer = orjson.loads(body)
    uid = answer.get("taskUid") if isinstance(answer, dict) else None
    task = await request.app[TASKS].get(uid) if isinstance(uid, int) else None
    if task is None:
        return response
    try:
        await request.app[SESSIONS].remember(session_id, _credentials(request), task)
    except StoreUnavailable:
        log.warning("session %s not recorded: the store is unreachable", session_id)
    return response


async def session_group(request: web.Request) -> str | None:
    """For a search: None without a session (or a session with no write yet); else the
    group to read from, once the session's last write has finished there (bounded wait)."""
    session_id = request.headers.get(HEADER)
    if not session_id:
        return None
    return await request.app[SESSIONS].before_read(session_id, _credentials(request))
