"""The lean node client: keep-alive HTTP/1.1 over an asyncio Protocol, httptools parsing.

A drop-in for the aiohttp-based `NodeClient` (same constructor, `request()`,
`NodeResponse`, exceptions and metrics). Profiles showed the aiohttp client costing
~0.35 ms of CPU per node call — more than the rest of a proxied search — because of the
machinery a general client needs (redirects, cookies, tracing, multipart, streaming
readers) and a proxy talking to its own nodes does not.

Decisions a newcomer would otherwise get wrong:
- One deadline per call covers waiting for a pool slot, connecting, sending and reading the
  whole body. The common path (a warm connection) arms one timer handle instead of an
  `asyncio.timeout` scope; only the slow paths (queueing, connecting) use the scope.
- A connection that saw a timeout, a cancellation, a parse error or a `Connection: close`
  is never reused: the node may still answer on it, and that answer would be read as the
  next call's.
- Nothing is retried. Meilisearch drops idle connections after 5 s; we drop ours after
  `_KEEPALIVE_S` so a POST never goes out on a connection the node is closing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any, Self, cast
from urllib.parse import quote, urlencode, urlsplit

import httptools
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from miroir_proxy.nodes.client import NodeClient, NodeResponse, QueryParams, excerpt, logger
from miroir_proxy.nodes.errors import NodeTimeout, NodeUnavailable
from miroir_proxy.nodes.metrics import FailureKind

_KEEPALIVE_S = 4.0
_MAX_CACHED_HEADS = 256  # per node; document paths carry ids, so bound what is kept
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~!$&'()*+,;=:@%?-]*")


class _CallFailed(Exception):
    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class _ConnectTimeout(TimeoutError):
    """The connect timeout, shorter than the call's deadline, ran out."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection reading one response at a time."""

    __slots__ = (
        "_body", "_headers", "_parser", "_waiter",
        "closed", "head_only", "headers_at", "idle_since", "reusable", "transport",
    )  # fmt: skip

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self.head_only = False
        self.headers_at = 0.0
        self.idle_since = 0.0
        self.closed = False
        self.reusable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not `asyncio.Transport` subclasses, only look-alikes.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self.headers_at and self._ends_with_connection():
            waiter.set_result(None)
        elif self.headers_at:
            waiter.set_exception(_CallFailed("payload", "response cut short"))
        else:
            waiter.set_exception(_CallFailed("disconnect", "node closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.abort()  # bytes nobody asked for: the connection's framing is lost
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.abort()
            self._fail(_CallFailed("other", f"malformed HTTP response: {e}"))

    def send(self, data: list[bytes], waiter: asyncio.Future[None], head_only: bool) -> None:
        assert self.transport is not None
        self._waiter = waiter
        self._headers = []
        self._body = []
        self.head_only = head_only
        self.headers_at = 0.0
        self.reusable = False
        self.transport.writelines(data)

    def response(self) -> tuple[int, bytes, Mapping[str, str]]:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        return self._parser.get_status_code(), body, _Headers(self._headers)

    def _ends_with_connection(self) -> bool:
        """The body is delimited by the connection closing (no length, not chunked)."""
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_at = time.perf_counter()
        if self.head_only:
            # httptools cannot be told a HEAD answer has no body: finish here, never reuse.
            self.closed = True
            self._complete()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive() and not self.closed
        self._complete()

    def _complete(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Headers(Mapping[str, str]):
    """A node's response headers, decoded into a case-insensitive mapping on first use: the
    proxy rarely reads them, and decoding every header of every answer showed in profiles."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._decoded: CIMultiDictProxy[str] | None = None

    def _mapping(self) -> CIMultiDictProxy[str]:
        if self._decoded is None:
            pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw]
            self._decoded = CIMultiDictProxy(CIMultiDict(pairs))
        return self._decoded

    def __getitem__(self, name: str) -> str:
        return self._mapping()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._raw)


class _Pool:
    """Connections to one node: at most `limit` in use, idle ones reused newest first."""

    __slots__ = ("_idle", "_waiters", "busy", "heads", "host", "limit", "port", "ssl", "url")

    def __init__(self, node_url: str, limit: int) -> None:
        parts = urlsplit(node_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) node URL: {node_url!r}")
        self.url = node_url
        self.ssl = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.ssl else 80)
        self.limit = limit
        self.busy = 0
        self._idle: deque[_Connection] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.heads: dict[tuple[str, str, str | None], bytes] = {}

    def has_free_slot(self) -> bool:
        return self.busy < self.limit and not self._waiters

    def take_idle(self) -> _Connection | None:
        """An idle connection and a slot for it, if both are free right now."""
        if self.busy >= self.limit or self._waiters:
            return None
        connection = self.idle_connection()
        if connection is not None:
            self.busy += 1
        return connection

    async def wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(None)  # the slot was handed to us just as we gave up
            elif waiter in self._waiters:  # `release` drops cancelled waiters itself
                self._waiters.remove(waiter)
            raise

    def idle_connection(self) -> _Connection | None:
        idle = self._idle
        stale_before = time.monotonic() - _KEEPALIVE_S
        while idle and idle[0].idle_since < stale_before:
            idle.popleft().abort()
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    def release(self, connection: _Connection | None) -> None:
        if connection is not None and connection.reusable and not connection.closed:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        elif connection is not None:
            connection.abort()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on; `busy` stays the same
                return
        self.busy -= 1

    def close(self) -> None:
        while self._idle:
            self._idle.pop().abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _start_lines(
    pool: _Pool,
    method: str,
    path: str,
    params: QueryParams | None,
    headers: Mapping[str, str] | None,
    content_type: str | None,
) -> bytes:
    """A request's head up to (not including) Content-Length and the credentials."""
    if not _PLAIN_PATH.fullmatch(path):
        path = quote(path, safe="/%?=&:@")
    if params:
        path += ("&" if "?" in path else "?") + urlencode(params, quote_via=quote)
    lines = [f"{method} {path} HTTP/1.1\r\nHost: {pool.host}:{pool.port}\r\n"]
    if headers:
        lines.extend(
            f"{k}: {v}\r\n"
            for k, v in headers.items()
            if content_type is None or k.lower() != "content-type"
        )
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}\r\n")
    return "".join(lines).encode("latin-1")


class FastNodeClient(NodeClient):
    """`NodeClient` without aiohttp on the client side; use as `async with`."""

    _pools: dict[str, _Pool] | None = None

    async def __aenter__(self) -> Self:
        if self._pools is not None:
            raise RuntimeError("NodeClient is already open")
        self._pools = {}
        self._auth_line = b"".join(
            f"{k}: {v}\r\n".encode("latin-1") for k, v in self._default_headers.items()
        )
        return self

    async def close(self) -> None:
        pools, self._pools = self._pools, None
        for pool in (pools or {}).values():
            pool.close()

    async def request(
        self,
        node_url: str,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_ms: int,
    ) -> NodeResponse:
        """See `NodeClient.request`: same contract, same exceptions, same metrics."""
        pools = self._pools
        if pools is None:
            raise RuntimeError("NodeClient is not open; use it as an async context manager")
        if json_body is not None:
            if body is not None:
                raise ValueError("pass json_body or body, not both")
            body = orjson.dumps(json_body)
            content_type = content_type or "application/json"
        pool = pools.get(node_url)
        if pool is None:
            pool = pools[node_url] = _Pool(node_url, self._connections_per_node)
        head = self._head(pool, method, path, params, body, content_type, headers)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        try:
            # The warm path (a free slot and an idle connection) stays in this frame: a
            # coroutine per step was a visible share of a search's CPU.
            connection = pool.take_idle() or await self._acquire(pool, deadline)
            waiter: asyncio.Future[None] = loop.create_future()
            timer = loop.call_at(deadline, _expire, waiter)
            sent_at = time.perf_counter()
            try:
                connection.send([head, body] if body else [head], waiter, method == "HEAD")
                await waiter
                status, payload, answer_headers = connection.response()
            except BaseException:
                connection.abort()
                pool.release(connection)
                raise
            finally:
                timer.cancel()
            pool.release(connection)
            if self._metrics is not None:
                seconds = connection.headers_at - sent_at
                self._metrics.observe_response(node_url, method, status, seconds)
        except _CallFailed as e:
            self._failed(node_url, e.kind)
            raise NodeUnavailable(node_url, f"{method} {path}: {e}") from e
        except TimeoutError as e:
            self._failed(node_url, "timeout")
            reason = str(e) if isinstance(e, _ConnectTimeout) else ""
            reason = reason or f"no complete answer within {timeout_ms} ms"
            raise NodeTimeout(node_url, f"{method} {path}: {reason}") from e
        response = NodeResponse(status, payload, answer_headers, node_url)
        if response.is_node_failure:
            logger.warning(
                "node %s answered %s %s with %d: %s",
                node_url, method, path, status, excerpt(payload),
            )  # fmt: skip
        return response

    def _head(
        self,
        pool: _Pool,
        method: str,
        path: str,
        params: QueryParams | None,
        body: bytes | None,
        content_type: str | None,
        headers: Mapping[str, str] | None,
    ) -> bytes:
        length = b""
        if body is not None or method in ("POST", "PUT", "PATCH"):
            length = b"Content-Length: %d\r\n" % (len(body) if body else 0)
        if not params and not headers:
            # Searches repeat a few (method, path) pairs: quoting and formatting their
            # first lines on every call was a visible share of a node call's CPU.
            key = (method, path, content_type)
            start = pool.heads.get(key)
            if start is None:
                if len(pool.heads) >= _MAX_CACHED_HEADS:
                    pool.heads.clear()
                start = pool.heads[key] = _start_lines(pool, method, path, None, None, content_type)
            return start + length + self._auth_line + b"\r\n"
        start = _start_lines(pool, method, path, params, headers, content_type)
        own_auth = headers is not None and any(k.lower() == "authorization" for k in headers)
        return start + length + (b"\r\n" if own_auth else self._auth_line + b"\r\n")

    async def _acquire(self, pool: _Pool, deadline: float) -> _Connection:
        """A connection holding one of the pool's slots (the slot is freed on failure)."""
        if pool.has_free_slot():
            pool.busy += 1
        else:
            if self._metrics is not None:
                self._metrics.observe_pool_wait(pool.url)
            async with asyncio.timeout_at(deadline):
                await pool.wait_for_slot()
        connection = pool.idle_connection()
        if connection is not None:
            return connection
        try:
            return await self._connect(pool, deadline)
        except BaseException:
            pool.release(None)
            raise

    async def _connect(self, pool: _Pool, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        connect_deadline = min(deadline, loop.time() + self._connect_timeout_s)
        try:
            async with asyncio.timeout_at(connect_deadline):
                _, connection = await loop.create_connection(
                    _Connection, pool.host, pool.port, ssl=pool.ssl or None
                )
        except TimeoutError as e:
            if connect_deadline < deadline:
                ms = self._connect_timeout_s * 1000
                raise _ConnectTimeout(f"no connection within {ms:.0f} ms") from e
            raise
        except OSError as e:
            raise _CallFailed("connect", f"cannot connect: {type(e).__name__}: {e}") from e
        return connection

    def _failed(self, node_url: str, kind: FailureKind) -> None:
        if self._metrics is not None:
            self._metrics.observe_failure(node_url, kind)
