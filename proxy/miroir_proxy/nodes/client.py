"""The one HTTP client through which the proxy talks to Meilisearch nodes.

One `NodeClient` per proxy process, opened and closed by the app's `cleanup_ctx`: one
connection pool with at most `connections_per_node` connections to any one node (further
calls queue for a free one), a deadline on every call, and the transport's exceptions
translated here, once, into `NodeUnavailable` / `NodeTimeout`.

A node's HTTP error answers are *responses*, not exceptions, so a Meilisearch error object
can reach the user byte for byte; `NodeResponse.is_node_failure` tells the caller whether
the node (worth another replica) or the request (pass it through) is at fault.

Nothing from aiohttp appears in this interface, so a leaner client can replace it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson
from multidict import CIMultiDict

from miroir_proxy.config import MiroirConfig
from miroir_proxy.nodes.errors import NodeProtocolError, NodeTimeout, NodeUnavailable
from miroir_proxy.nodes.metrics import NodeCallMetrics, failure_kind, trace_config

logger = logging.getLogger(__name__)

QueryParams = Mapping[str, str | int | float]
DEFAULT_CONNECTIONS_PER_NODE = 64

_LOG_BODY_BYTES = 300
# Meilisearch (actix-web) closes idle keep-alive connections after 5 s. Reusing one it has
# just closed fails a POST (search, every write) and aiohttp only retries idempotent
# methods, so idle connections are dropped on our side first.
_KEEPALIVE_S = 4.0
# 501 is Meilisearch's "unimplemented": every replica answers the same, so not retryable.
_NOT_IMPLEMENTED = 501


@dataclass(frozen=True, slots=True)
class NodeResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]  # case-insensitive
    node_url: str

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def is_node_failure(self) -> bool:
        """The node, not the request, is at fault (5xx but 501, or 429 from a node-side
        limiter): another replica or a later retry may succeed. 4xx are the request's."""
        status = self.status
        return (status >= 500 and status != _NOT_IMPLEMENTED) or status == 429

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as e:
            raise NodeProtocolError(
                self.node_url, f"HTTP {self.status} body is not JSON: {excerpt(self.body)}"
            ) from e


def excerpt(body: bytes) -> str:
    """A node body cut short for a log line or an error message."""
    text = body[:_LOG_BODY_BYTES].decode("utf-8", "replace")
    return text if len(body) <= _LOG_BODY_BYTES else f"{text}… ({len(body)} bytes)"


class NodeClient:
    """Shared pooled client for every node; use as `async with NodeClient(...) as nodes:`."""

    def __init__(
        self,
        *,
        master_key: str | None,
        connect_timeout_ms: int = 1_000,
        connections_per_node: int = DEFAULT_CONNECTIONS_PER_NODE,
        metrics: NodeCallMetrics | None = None,
    ) -> None:
        if connections_per_node < 1:
            raise ValueError("connections_per_node must be at least 1")
        self._default_headers = {"Authorization": f"Bearer {master_key}"} if master_key else {}
        self._connect_timeout_s = connect_timeout_ms / 1000
        self._connections_per_node = connections_per_node
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(
        cls,
        config: MiroirConfig,
        *,
        connections_per_node: int = DEFAULT_CONNECTIONS_PER_NODE,
        metrics: NodeCallMetrics | None = None,
    ) -> NodeClient:
        return cls(
            master_key=config.node_master_key,
            connect_timeout_ms=config.timeouts.node_connect_ms,
            connections_per_node=connections_per_node,
            metrics=metrics,
        )

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("NodeClient is already open")
        connector = aiohttp.TCPConnector(
            limit=0,  # the bound that matters is per node; a global one would couple nodes
            limit_per_host=self._connections_per_node,
            keepalive_timeout=_KEEPALIVE_S,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._default_headers,
            # Compressing on the node and inflating here costs CPU on both sides of a
            # cluster-local link; without Accept-Encoding nodes answer identity-encoded,
            # so `body` and the node's headers describe the same bytes.
            skip_auto_headers=("Accept-Encoding",),
            trace_configs=[trace_config(self._metrics)] if self._metrics else None,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

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
        """Send one request to `node_url` + `path` and read the whole answer.

        `timeout_ms` bounds everything (waiting for a pooled connection, connecting,
        sending, the node's work, reading the body); connecting alone is also bounded by
        the client's connect timeout. The node master key is sent unless `headers` carry
        their own Authorization. Raises `NodeTimeout` / `NodeUnavailable`; never swallows
        cancellation.
        """
        session = self._session
        if session is None:
            raise RuntimeError("NodeClient is not open; use it as an async context manager")
        if json_body is not None:
            if body is not None:
                raise ValueError("pass json_body or body, not both")
            body = orjson.dumps(json_body)
            content_type = content_type or "application/json"
        send_headers: CIMultiDict[str] | Mapping[str, str] | None = headers
        if content_type is not None:
            send_headers = CIMultiDict(headers or ())
            send_headers["Content-Type"] = content_type
        timeout = aiohttp.ClientTimeout(
            total=timeout_ms / 1000, sock_connect=self._connect_timeout_s
        )
        try:
            async with session.request(
                method,
                node_url + path,
                params=params,
                data=body,
                headers=send_headers,
                timeout=timeout,
                allow_redirects=False,
                trace_request_ctx=node_url,
            ) as resp:
                try:
                    payload = await resp.read()
                except Exception as e:
                    # The trace has already recorded this call as answered; only here do
                    # we see the body break off.
                    if self._metrics is not None:
                        self._metrics.observe_failure(node_url, failure_kind(e))
                    raise
        except TimeoutError as e:
            # aiohttp turns both deadlines into TimeoutError subclasses; a CancelledError
            # from outside is not one of them and propagates untouched.
            if isinstance(e, aiohttp.ConnectionTimeoutError):
                reason = f"no connection within {self._connect_timeout_s * 1000:.0f} ms"
            else:
                reason = f"no complete answer within {timeout_ms} ms"
            raise NodeTimeout(node_url, f"{method} {path}: {reason}") from e
        except aiohttp.ClientPayloadError as e:
            raise NodeUnavailable(node_url, f"{method} {path}: response cut short ({e})") from e
        except aiohttp.ClientError as e:
            raise NodeUnavailable(node_url, f"{method} {path}: {type(e).__name__}: {e}") from e
        response = NodeResponse(resp.status, payload, resp.headers, node_url)
        if response.is_node_failure:
            logger.warning(
                "node %s answered %s %s with %d: %s",
                node_url, method, path, response.status, excerpt(payload),
            )  # fmt: skip
        return response
