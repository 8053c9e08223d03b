"""Cross-cutting request handling: request ids, one JSON log line per request, metrics, and
errors rendered in Meilisearch's shape (never a traceback, whatever went wrong)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch.broadcast import NodeRefused
from miroir_proxy.state.store import StoreUnavailable

from .appkeys import BODY_LIMIT, METRICS, TOPOLOGY
from .responses import error_response, raw_json_response

log = logging.getLogger(__name__)
access_log = logging.getLogger("miroir_proxy.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID = "X-Request-Id"
REQUEST_ID_KEY = web.RequestKey("request_id", str)


def _route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _http_error(request: web.Request, exc: web.HTTPException, body_limit: int) -> MiroirError:
    """aiohttp's own refusals, in Meilisearch's shape. Meilisearch has no code for an unknown
    route or method, so those get Miroir codes."""
    if exc.status == 413:
        return MiroirError(
            "payload_too_large",
            "The provided payload reached the size limit. The maximum accepted payload size is "
            f"{_human_bytes(body_limit)}.",
        )
    if exc.status == 404:
        return MiroirError(
            "miroir_route_not_found", f"Route `{request.method} {request.path}` not found."
        )
    if exc.status == 405:
        return MiroirError(
            "miroir_method_not_allowed",
            f"Method `{request.method}` is not allowed on `{request.path}`.",
        )
    return MiroirError("bad_request", exc.reason)


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:g} {unit}"
        value /= 1024
    return f"{value:g} GiB"


def _store_unavailable(request: web.Request, exc: StoreUnavailable) -> web.Response:
    log.warning("state store unavailable: %s", exc, extra={"request_id": request[REQUEST_ID_KEY]})
    watcher = request.app.get(TOPOLOGY)
    if watcher is not None:
        watcher.report_store_unavailable()
    error = MiroirError(
        "miroir_store_unavailable",
        "Miroir's state store is unreachable; this request needs it. Retry later.",
    )
    return error_response(error, headers={"Retry-After": "1"})


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, access log, metrics and error rendering, outermost."""
    request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
    request[REQUEST_ID_KEY] = request_id
    started = time.perf_counter()
    metrics = request.app[METRICS]
    metrics.in_flight.inc()
    try:
        try:
            response = await handler(request)
        except MiroirError as e:
            response = error_response(e)
        except NodeRefused as e:
            response = raw_json_response(e.response.body, e.response.status)
        except StoreUnavailable as e:
            response = _store_unavailable(request, e)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            response = error_response(_http_error(request, e, request.app[BODY_LIMIT]))
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            response = error_response(MiroirError("internal", "An internal error has occurred."))
    finally:
        metrics.in_flight.dec()
    elapsed = time.perf_counter() - started
    template = _route_template(request)
    metrics.observe_request(request.method, template, response.status, elapsed)
    response.headers[REQUEST_ID] = request_id
    access_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status,
        extra={
            "request_id": request_id,
            "route": template,
            "status": response.status,
            "duration_ms": round(elapsed * 1000, 3),
        },
    )
    return response
