"""`Idempotency-Key` on every write route, kept in the shared store so any pod can answer a
retry; and the write gate that refuses writes while this pod knows the store is down.

A write with a key first reserves it (`kv_set(only_new=True)`, the reservation living as
long as a request may run). The reserving request runs; a 2xx answer is recorded under
the key for `features.idempotency_ttl_s`, anything else releases the key so the client's
retry runs afresh (a node or store outage must stay retryable). A retry with the same
fingerprint (method, path, sorted query, SHA-256 of the body) gets the recorded answer
without touching a node, marked `Idempotent-Replayed: true`; a different fingerprint gets
`409 miroir_idempotency_key_reused`.

Decisions: a duplicate arriving while the first is still running waits for its outcome
(polling the store, at most the request budget `timeouts.request_ms`) and then replays it;
past that budget it gets `409 miroir_idempotency_key_in_use`. Request bodies of any size
are covered, since only their hash is kept; the size bound
`features.idempotency_max_body_bytes` applies to the recorded answer: a larger answer is
not remembered (the key is released). Keys are scoped by the credentials that sent them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.state import kvkeys
from miroir_proxy.state.store import Store, StoreUnavailable

from .appkeys import CONFIG, STORE, TOPOLOGY
from .auth import PUBLIC, required_action

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
# Answer headers worth replaying; Content-Type is implied (every answer is JSON).
_KEPT_HEADERS = ("X-Miroir-Degraded",)
_READ_ACTIONS = frozenset({PUBLIC, "search", "documents.get"})
_STORELESS_ACTIONS = frozenset({"keys.create", "keys.update", "keys.delete"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Hashing releases the GIL; bodies above this are hashed off the event loop.
_THREAD_HASH_BYTES = 1 << 20
# Stores have no delete: a released key is overwritten with an entry that expires at once.
_RELEASE_TTL_S = 0.001
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1


def write_action(request: web.Request) -> str | None:
    """The auth action of a write route (None for reads and Miroir's own routes)."""
    if request.method not in _WRITE_METHODS:
        return None
    resource = request.match_info.route.resource
    if resource is None:
        return None
    action = required_action(request.method, resource.canonical)
    return None if action in _READ_ACTIONS else action


def reused() -> MiroirError:
    return MiroirError(
        "miroir_idempotency_key_reused",
        f"This `{HEADER}` was already used for a different request (method, path, query or "
        "body differ). Use a new key for a new request.",
    )


def in_use() -> MiroirError:
    return MiroirError(
        "miroir_idempotency_key_in_use",
        f"A request with this `{HEADER}` is still being processed. Retry later.",
    )


async def fingerprint(request: web.Request) -> str:
    body = await request.read()
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0" + request.path.encode() + b"\0")
    digest.update(orjson.dumps(sorted(request.query.items())))
    digest.update(b"\0")
    if len(body) > _THREAD_HASH_BYTES:
        await asyncio.to_thread(digest.update, body)
    else:
        digest.update(body)
    return digest.hexdigest()


class Claim:
    """One request's hold on an idempotency key."""

    def __init__(self, store: Store, key: str, fingerprint: str, pending_ttl_s: float) -> None:
        self._store = store
        self._key = key
        self._fingerprint = fingerprint
        self._pending_ttl_s = pending_ttl_s

    async def acquire(self) -> dict[str, Any] | None:
        """None when this request holds the key and must run; else the recorded answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._pending_ttl_s
        pending = orjson.dumps({"state": "pending", "hash": self._fingerprint})
        delay = _POLL_FIRST_S
        while True:
            if await self._store.kv_set(self._key, pending, self._pending_ttl_s, only_new=True):
                return None
            raw = await self._store.kv_get(self._key)
            entry: dict[str, Any] = {} if raw is None else orjson.loads(raw)
            if entry.get("state") in ("pending", "done"):
                if entry.get("hash") != self._fingerprint:
                    raise reused()
                if entry["state"] == "done":
                    return entry
            if loop.time() >= deadline:
                raise in_use()
            if raw is not None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)

    async def record(self, response: web.Response, ttl_s: float) -> None:
        body = response.body
        assert isinstance(body, bytes)
        entry = {
            "state": "done",
            "hash": self._fingerprint,
            "status": response.status,
            "body": body.decode(),
            "headers": {h: response.headers[h] for h in _KEPT_HEADERS if h in response.headers},
        }
        await self._store.kv_set(self._key, orjson.dumps(entry), ttl_s)

    async def release(self) -> None:
        released = orjson.dumps({"state": "released", "hash": self._fingerprint})
        await self._store.kv_set(self._key, released, _RELEASE_TTL_S)


def replay(entry: dict[str, Any]) -> web.Response:
    headers = {**entry.get("headers", {}), REPLAYED: "true"}
    return web.Response(
        body=entry["body"].encode(),
        status=int(entry["status"]),
        content_type="application/json",
        headers=headers,
    )


async def idempotency(request: web.Request, handler: Handler, action: str) -> web.StreamResponse:
    """A write (of auth `action`) under its `Idempotency-Key`, if it has one; runs after
    `authorize`, so only authenticated writes reserve keys."""
    if action not in _STORELESS_ACTIONS:
        watcher = request.app[TOPOLOGY]
        await watcher.ensure_fresh()
        if watcher.store_down:
            # Registering the task would fail after the nodes were written: refuse up front.
            raise StoreUnavailable("the state store is unreachable")
    key = request.headers.get(HEADER)
    if not key:
        return await handler(request)
    app = request.app
    config = app[CONFIG]
    claim = Claim(
        app[STORE],
        kvkeys.idempotency(key, request.headers.get("Authorization", "")),
        await fingerprint(request),
        config.timeouts.request_ms / 1000,
    )
    recorded = await claim.acquire()
    if recorded is not None:
        return replay(recorded)
    try:
        response = await handler(request)
    except BaseException:
        await asyncio.shield(_release_quietly(claim))
        raise
    features = config.features
    if (
        isinstance(response, web.Response)
        and 200 <= response.status < 300
        and isinstance(response.body, bytes)
        and len(response.body) <= features.idempotency_max_body_bytes
    ):
        try:
            await claim.record(response, features.idempotency_ttl_s)
        except StoreUnavailable:
            # The write happened; its answer matters more than remembering it.
            log.warning("could not record idempotency key: the store is unreachable")
    else:
        await _release_quietly(claim)
    return response


async def _release_quietly(claim: Claim) -> None:
    try:
        await claim.release()
    except StoreUnavailable:
        log.warning("could not release idempotency key: the store is unreachable")
