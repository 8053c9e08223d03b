"""Test-only fault injection: delays, random 500s, a pause switch and a concurrency cap.

Off unless the node starts with `--enable-fault-injection` (or `MIROIR_DEVNODE_FAULTS=1`);
then `GET/PUT /_devnode/faults` read and change the faults. The faults route is exempt from
faults and from API-key auth, but requires the master key when one is set, so a test can
always heal a node it broke.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from .errors import MeiliError
from .http import json_response, read_json

FAULTS_PATH = "/_devnode/faults"
_FIELDS = ("delayMs", "errorRate", "paused", "maxConcurrent")


@dataclass(slots=True)
class Faults:
    delay_ms: int = 0
    error_rate: float = 0.0
    max_concurrent: int | None = None
    _unpaused: asyncio.Event = field(default_factory=asyncio.Event)
    _slots: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        self._unpaused.set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def to_json(self) -> dict[str, Any]:
        return {
            "delayMs": self.delay_ms,
            "errorRate": self.error_rate,
            "paused": self.paused,
            "maxConcurrent": self.max_concurrent,
        }

    def update(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise MeiliError("bad_request", "The faults body must be a JSON object.")
        unknown = sorted(set(body) - set(_FIELDS))
        if unknown:
            expected = ", ".join(f"`{f}`" for f in _FIELDS)
            raise MeiliError(
                "bad_request", f"Unknown field `{unknown[0]}`: expected one of {expected}"
            )
        delay = body.get("delayMs", self.delay_ms)
        rate = body.get("errorRate", self.error_rate)
        paused = body.get("paused", self.paused)
        cap = body.get("maxConcurrent", self.max_concurrent)
        if not _is_int(delay) or delay < 0:
            raise MeiliError("bad_request", "`delayMs` must be a non-negative integer.")
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise MeiliError("bad_request", "`errorRate` must be a number between 0 and 1.")
        if not isinstance(paused, bool):
            raise MeiliError("bad_request", "`paused` must be a boolean.")
        if cap is not None and (not _is_int(cap) or cap < 1):
            raise MeiliError("bad_request", "`maxConcurrent` must be a positive integer or null.")
        self.delay_ms, self.error_rate = delay, float(rate)
        if cap != self.max_concurrent:
            self.max_concurrent = cap
            # Requests already holding the old semaphore finish on it; new ones use the new cap.
            self._slots = None if cap is None else asyncio.Semaphore(cap)
        if paused:
            self._unpaused.clear()
        else:
            self._unpaused.set()

    async def apply(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        await self._unpaused.wait()
        slots = self._slots
        if slots is None:
            return await self._serve(request, handler)
        async with slots:
            return await self._serve(request, handler)

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        if self.error_rate and random.random() < self.error_rate:
            # This middleware runs outside the error middleware: render the error here.
            err = MeiliError("internal", "Injected fault: the devnode answered with an error.")
            return json_response(err.to_dict(), err.status)
        return await handler(request)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


FAULTS_KEY = web.AppKey("faults", Faults)


def make_faults_middleware(master_key: str | None) -> Middleware:
    @web.middleware
    async def faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        faults = request.app[FAULTS_KEY]
        if request.path == FAULTS_PATH:
            return await _faults_route(request, faults, master_key)
        return await faults.apply(request, handler)

    return faults_middleware


async def _faults_route(
    request: web.Request, faults: Faults, master_key: str | None
) -> web.StreamResponse:
    try:
        if master_key is not None:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(token.encode(), master_key.encode()):
                raise MeiliError("invalid_api_key", "The provided API key is invalid.")
        if request.method == "PUT":
            faults.update(await read_json(request))
        elif request.method != "GET":
            return web.Response(status=405)
    except MeiliError as e:
        return json_response(e.to_dict(), e.status)
    return json_response(faults.to_json())
