"""The aiohttp application: middlewares (faults, errors, auth — outermost first), every
route table, and the node's lifetime (state opened when the app is built, the task worker
started and stopped in `cleanup_ctx`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from . import processing
from .auth import KEY_STORE, make_auth_middleware
from .config import NodeConfig
from .errors import ERROR_LINK, MeiliError
from .faults import FAULTS_KEY, Faults, make_faults_middleware
from .http import json_response
from .node import NODE_KEY, Node
from .routes import documents, indexes, instance, keys, search, settings, tasks, webhooks

log = logging.getLogger(__name__)

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def render_size(size: int) -> str:
    """Meilisearch's rendering of the payload limit: the largest binary unit, exact value."""
    value = float(size)
    unit = 0
    while value >= 1024 and unit < len(_BINARY_UNITS) - 1:
        value /= 1024
        unit += 1
    text = repr(value).removesuffix(".0")
    return f"{text} {_BINARY_UNITS[unit]}"


def _http_error(status: int, code: str, message: str) -> web.Response:
    # aiohttp's own routing errors have no Meilisearch code; render them in the same shape.
    body = {"message": message, "code": code, "type": "invalid_request", "link": ERROR_LINK + code}
    return json_response(body, status)


def make_error_middleware(payload_limit: int) -> Middleware:
    too_large = MeiliError(
        "payload_too_large",
        "The provided payload reached the size limit. The maximum accepted payload size is "
        f"{render_size(payload_limit)}.",
    )

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except MeiliError as e:
            headers = {"Retry-After": "10"} if e.status == 503 else None
            return json_response(e.to_dict(), e.status, headers)
        except web.HTTPRequestEntityTooLarge:
            return json_response(too_large.to_dict(), too_large.status)
        except web.HTTPNotFound:
            return _http_error(
                404, "not_found", f"Route `{request.method} {request.path}` not found."
            )
        except web.HTTPMethodNotAllowed:
            return _http_error(
                405,
                "method_not_allowed",
                f"Method `{request.method}` is not allowed on `{request.path}`.",
            )
        except web.HTTPException:
            raise
        except Exception as e:
            log.exception("unexpected error on %s %s", request.method, request.path)
            err = MeiliError(
                "internal", f"An internal error has occurred. `{type(e).__name__}: {e}`."
            )
            return json_response(err.to_dict(), err.status)

    return error_middleware


def make_app(config: NodeConfig) -> web.Application:
    node = Node(config)
    middlewares = [
        make_error_middleware(config.payload_limit_bytes),
        make_auth_middleware(node.keys),
    ]
    if config.enable_fault_injection:
        middlewares.insert(0, make_faults_middleware(config.master_key))
    app = web.Application(middlewares=middlewares, client_max_size=config.payload_limit_bytes)
    app[NODE_KEY] = node
    app[KEY_STORE] = node.keys
    app[FAULTS_KEY] = Faults()
    for table in (instance, indexes, documents, settings, tasks, webhooks, keys, search):
        app.router.add_routes(table.routes)
    app.cleanup_ctx.append(_run_worker)
    return app


async def _run_worker(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE_KEY]
    worker = asyncio.create_task(node.queue.run(lambda task: processing.apply(node, task)))
    worker.add_done_callback(_report_worker_death)
    yield
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    node.close()


def _report_worker_death(worker: asyncio.Task[None]) -> None:
    if not worker.cancelled() and worker.exception() is not None:
        log.error("the task worker died", exc_info=worker.exception())
