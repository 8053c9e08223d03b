"""Node-call metrics, recorded at the one seam where the proxy talks to nodes.

`NodeClient` feeds a `NodeCallMetrics`; `trace_config()` adapts aiohttp's tracing signals
to it so handlers never time or count node calls themselves. aiohttp's trace ends when the
response headers arrive: durations are time-to-headers, and a failure while the body is
being read is reported by the client itself (the only place bodies are read). Labels carry
the node URL, never the path, so the number of series stays bounded by the fleet size.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Literal, Protocol

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from miroir_proxy.histogram import HistogramChild, LabeledHistogram

FailureKind = Literal["timeout", "connect", "disconnect", "payload", "other"]

# Search calls are sub-millisecond to tens of ms on a healthy node; writes and dumps run
# into seconds, and anything past the last bucket is already a timeout in practice.
_DURATION_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class NodeCallMetrics(Protocol):
    def observe_response(self, node: str, method: str, status: int, seconds: float) -> None: ...

    def observe_failure(self, node: str, kind: FailureKind) -> None: ...

    def observe_pool_wait(self, node: str) -> None: ...


class PrometheusNodeMetrics:
    """`NodeCallMetrics` as Prometheus series in the app's registry (one instance each)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._duration = LabeledHistogram(
            "miroir_node_request_duration_seconds",
            "Time from sending a node request to its response headers",
            ["node", "method", "code"],
            _DURATION_BUCKETS_S,
            registry,
        )
        self._children: dict[tuple[str, str, int], HistogramChild] = {}
        self._failures = Counter(
            "miroir_node_errors",
            "Node calls that got no usable answer (node HTTP errors are not failures here)",
            ["node", "kind"],
            registry=registry,
        )
        self._pool_waits = Counter(
            "miroir_node_pool_waits",
            "Node calls that had to wait for a free pooled connection (per-node saturation)",
            ["node"],
            registry=registry,
        )

    def observe_response(self, node: str, method: str, status: int, seconds: float) -> None:
        # Three times per search: the children are few (nodes x methods x statuses), so
        # keep them rather than build a label key on every call.
        key = (node, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._duration.labels(node, method, str(status))
        child.observe(seconds)

    def observe_failure(self, node: str, kind: FailureKind) -> None:
        self._failures.labels(node, kind).inc()

    def observe_pool_wait(self, node: str) -> None:
        self._pool_waits.labels(node).inc()


def failure_kind(exc: BaseException) -> FailureKind:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "payload"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "disconnect"
    return "other"


def trace_config(metrics: NodeCallMetrics) -> aiohttp.TraceConfig:
    """Adapt aiohttp's request signals to `metrics`.

    `NodeClient` passes the node URL as `trace_request_ctx`, which saves deriving the label
    from the full request URL on every call.
    """
    config = aiohttp.TraceConfig()

    async def on_start(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, __: aiohttp.TraceRequestStartParams
    ) -> None:
        ctx.started = time.perf_counter()

    async def on_end(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        elapsed = time.perf_counter() - ctx.started
        metrics.observe_response(
            ctx.trace_request_ctx, params.method, params.response.status, elapsed
        )

    async def on_exception(
        _: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        # CancelledError is not an Exception: a cancelled call is the caller giving up
        # (client gone, quorum reached), and counting it would blame a healthy node.
        if isinstance(params.exception, Exception):
            metrics.observe_failure(ctx.trace_request_ctx, failure_kind(params.exception))

    async def on_queued(
        _: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        __: aiohttp.TraceConnectionQueuedStartParams,
    ) -> None:
        metrics.observe_pool_wait(ctx.trace_request_ctx)

    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_exception)
    config.on_connection_queued_start.append(on_queued)
    return config
