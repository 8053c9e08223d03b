"""NodeClient against real loopback servers: well-behaved aiohttp apps and raw asyncio
servers that misbehave on purpose (never answer, stall or hang up mid-body)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from miroir_proxy.nodes.client import NodeClient
from miroir_proxy.nodes.errors import NodeProtocolError, NodeTimeout, NodeUnavailable
from miroir_proxy.nodes.fastclient import FastNodeClient
from miroir_proxy.nodes.metrics import PrometheusNodeMetrics

MASTER_KEY = "node-master-key"
POLL_S = 0.002

RawBehaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


# Every test runs against both implementations of the one node-client seam.
@pytest.fixture(params=[NodeClient, FastNodeClient], ids=["aiohttp", "fast"])
def implementation(request: pytest.FixtureRequest) -> type[NodeClient]:
    kind: type[NodeClient] = request.param
    return kind


@pytest.fixture
async def client(
    registry: CollectorRegistry, implementation: type[NodeClient]
) -> AsyncIterator[NodeClient]:
    metrics = PrometheusNodeMetrics(registry)
    async with implementation(
        master_key=MASTER_KEY, connect_timeout_ms=500, connections_per_node=2, metrics=metrics
    ) as nodes:
        yield nodes


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    async with TestServer(app) as server:
        yield str(server.make_url("")).rstrip("/")


@asynccontextmanager
async def raw_server(behaviour: RawBehaviour) -> AsyncIterator[str]:
    handlers: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        writers.append(writer)
        try:
            await behaviour(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def read_request_head(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def until_eof(reader: asyncio.StreamReader) -> None:
    await reader.read()


async def eventually(predicate: Callable[[], bool], within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(POLL_S)


def failures(registry: CollectorRegistry, node: str, kind: str) -> float:
    value = registry.get_sample_value("miroir_node_errors_total", {"node": node, "kind": kind})
    return value or 0.0


def echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.getall("Authorization", []),
                "content_type": request.headers.get("Content-Type"),
                "body": (await request.read()).decode(),
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


async def test_json_call_carries_key_params_and_body(
    client: NodeClient, registry: CollectorRegistry
) -> None:
    async with serve(echo_app()) as url:
        resp = await client.request(
            url,
            "POST",
            "/indexes/movies/search",
            params={"limit": 5, "fields": "a,b"},
            json_body={"q": "été", "limit": 3},
            timeout_ms=2_000,
        )
    assert resp.ok
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("application/json")
    seen = resp.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/indexes/movies/search"
    assert seen["query"] == {"limit": "5", "fields": "a,b"}
    assert seen["authorization"] == [f"Bearer {MASTER_KEY}"]
    assert seen["content_type"] == "application/json"
    assert orjson.loads(seen["body"]) == {"q": "été", "limit": 3}
    count = registry.get_sample_value(
        "miroir_node_request_duration_seconds_count", {"node": url, "method": "POST", "code": "200"}
    )
    assert count == 1


async def test_caller_authorization_and_raw_body_win(client: NodeClient) -> None:
    async with serve(echo_app()) as url:
        resp = await client.request(
            url,
            "PUT",
            "/indexes/movies/documents",
            body=b"id,title\n1,Alien\n",
            content_type="text/csv",
            headers={"authorization": "Bearer tenant-token"},
            timeout_ms=2_000,
        )
    seen = resp.json()
    assert seen["authorization"] == ["Bearer tenant-token"]
    assert seen["content_type"] == "text/csv"
    assert seen["body"] == "id,title\n1,Alien\n"


async def test_nodes_are_not_asked_to_compress(client: NodeClient) -> None:
    documents = orjson.dumps({"results": [{"id": i, "title": "same words"} for i in range(500)]})

    async def compressible(_: web.Request) -> web.Response:
        resp = web.Response(body=documents, content_type="application/json")
        resp.enable_compression()  # only takes effect when the client accepts an encoding
        return resp

    app = web.Application()
    app.router.add_get("/indexes/a/documents", compressible)
    async with serve(app) as url:
        resp = await client.request(url, "GET", "/indexes/a/documents", timeout_ms=2_000)
    assert "Content-Encoding" not in resp.headers
    assert resp.body == documents


async def test_node_error_answers_are_passed_through_byte_for_byte(client: NodeClient) -> None:
    error = b'{"message":"Index `movies` not found.","code":"index_not_found",  "odd":  1}'

    async def not_found(_: web.Request) -> web.Response:
        return web.Response(status=404, body=error, content_type="application/json")

    app = web.Application()
    app.router.add_get("/indexes/movies", not_found)
    async with serve(app) as url:
        resp = await client.request(url, "GET", "/indexes/movies", timeout_ms=2_000)
    assert resp.status == 404
    assert resp.body == error
    assert not resp.ok
    assert not resp.is_node_failure


@pytest.mark.parametrize(
    ("status", "node_failure"),
    [(400, False), (401, False), (429, True), (500, True), (501, False), (502, True), (503, True)],
)
async def test_node_failures_are_told_apart_from_request_errors(
    client: NodeClient, status: int, node_failure: bool
) -> None:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(status=status, body=b'{"code":"x"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/stats", answer)
    async with serve(app) as url:
        resp = await client.request(url, "GET", "/stats", timeout_ms=2_000)
    assert resp.status == status
    assert resp.is_node_failure is node_failure


async def test_failure_bodies_are_truncated_in_logs(
    client: NodeClient, caplog: pytest.LogCaptureFixture
) -> None:
    huge = b"x" * 50_000

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, body=huge)

    app = web.Application()
    app.router.add_get("/stats", broken)
    with caplog.at_level(logging.WARNING, logger="miroir_proxy.nodes.client"):
        async with serve(app) as url:
            resp = await client.request(url, "GET", "/stats", timeout_ms=2_000)
    assert resp.body == huge
    (record,) = caplog.records
    assert "500" in record.getMessage()
    assert "50000 bytes" in record.getMessage()
    assert len(record.getMessage()) < 1_000


async def test_non_json_answer_raises_protocol_error(client: NodeClient) -> None:
    async def html(_: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>")

    app = web.Application()
    app.router.add_get("/health", html)
    async with serve(app) as url:
        resp = await client.request(url, "GET", "/health", timeout_ms=2_000)
    with pytest.raises(NodeProtocolError, match="bad gateway") as caught:
        resp.json()
    assert caught.value.node_url == url


async def test_connection_refused_is_unavailable_not_timeout(
    client: NodeClient, registry: CollectorRegistry
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(NodeUnavailable) as caught:
        await client.request(url, "GET", "/health", timeout_ms=2_000)
    assert not isinstance(caught.value, NodeTimeout)
    assert caught.value.node_url == url
    assert caught.value.__cause__ is not None
    assert failures(registry, url, "connect") == 1


async def test_silent_node_times_out_within_the_deadline(
    client: NodeClient, registry: CollectorRegistry
) -> None:
    async def never_answer(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await until_eof(reader)

    async with raw_server(never_answer) as url:
        started = time.monotonic()
        with pytest.raises(NodeTimeout, match="within 200 ms"):
            await client.request(url, "POST", "/indexes/a/search", json_body={}, timeout_ms=200)
        elapsed = time.monotonic() - started
    # Generous slack for a loaded CI box; without the deadline the call would wait forever.
    assert 0.19 <= elapsed < 1.5
    assert failures(registry, url, "timeout") == 1


async def test_node_stalling_mid_body_times_out(
    client: NodeClient, registry: CollectorRegistry
) -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        await writer.drain()
        await until_eof(reader)

    async with raw_server(stall) as url:
        started = time.monotonic()
        with pytest.raises(NodeTimeout):
            await client.request(url, "GET", "/indexes", timeout_ms=200)
        assert time.monotonic() - started < 1.5
    assert failures(registry, url, "timeout") == 1


@pytest.mark.parametrize(
    "partial",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_node_hanging_up_mid_body_is_unavailable(
    client: NodeClient, registry: CollectorRegistry, partial: bytes
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(partial)
        await writer.drain()

    async with raw_server(hang_up) as url:
        with pytest.raises(NodeUnavailable, match="cut short") as caught:
            await client.request(url, "GET", "/indexes", timeout_ms=2_000)
    assert not isinstance(caught.value, NodeTimeout)
    assert failures(registry, url, "payload") == 1


async def test_node_hanging_up_before_answering_is_unavailable(client: NodeClient) -> None:
    async def hang_up(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await read_request_head(reader)

    async with raw_server(hang_up) as url:
        with pytest.raises(NodeUnavailable) as caught:
            await client.request(url, "POST", "/indexes", json_body={}, timeout_ms=2_000)
    assert not isinstance(caught.value, NodeTimeout)


async def test_chunked_answer_is_read_whole(client: NodeClient) -> None:
    parts = [b'{"results":[', b'{"id":1},', b'{"id":2}', b"]}"]

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/indexes/a/documents", chunked)
    async with serve(app) as url:
        resp = await client.request(url, "GET", "/indexes/a/documents", timeout_ms=2_000)
    assert resp.body == b"".join(parts)
    assert resp.json() == {"results": [{"id": 1}, {"id": 2}]}


async def test_concurrency_is_bounded_per_node(
    client: NodeClient, registry: CollectorRegistry
) -> None:
    in_flight = 0
    peak = 0
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await release.wait()
        finally:
            in_flight -= 1
        return web.json_response({"ok": True})

    slow_app = web.Application()
    slow_app.router.add_get("/stats", slow)

    def pool_waits(url: str) -> float:
        value = registry.get_sample_value("miroir_node_pool_waits_total", {"node": url})
        return value or 0.0

    async with serve(slow_app) as busy, serve(echo_app()) as other:
        calls = [
            asyncio.create_task(client.request(busy, "GET", "/stats", timeout_ms=5_000))
            for _ in range(6)
        ]
        try:
            await eventually(lambda: in_flight == 2 and pool_waits(busy) == 4)
            # A saturated node must not hold up calls to another node.
            elsewhere = await client.request(other, "GET", "/health", timeout_ms=1_000)
            assert elsewhere.status == 200
            assert peak == 2
        finally:
            release.set()
            answers = await asyncio.gather(*calls)
    assert [a.status for a in answers] == [200] * 6
    assert peak == 2


async def test_cancellation_propagates_and_is_not_a_node_failure(
    client: NodeClient, registry: CollectorRegistry
) -> None:
    received = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        received.set()
        await until_eof(reader)

    async with raw_server(never_answer) as url:
        call = asyncio.create_task(client.request(url, "GET", "/stats", timeout_ms=10_000))
        await asyncio.wait_for(received.wait(), 2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert call.cancelled()
    for kind in ("timeout", "connect", "disconnect", "payload", "other"):
        assert failures(registry, url, kind) == 0


async def test_client_must_be_open(implementation: type[NodeClient]) -> None:
    nodes = implementation(master_key=None)
    with pytest.raises(RuntimeError, match="not open"):
        await nodes.request("http://127.0.0.1:1", "GET", "/health", timeout_ms=100)


async def test_unresolvable_node_is_unavailable(client: NodeClient) -> None:
    # A resolver that cannot answer at all hits the deadline instead: still NodeUnavailable.
    with pytest.raises(NodeUnavailable, match=r"no-such-node\.invalid"):
        await client.request("http://no-such-node.invalid", "GET", "/health", timeout_ms=2_000)


def counting_server(
    answers: list[bytes], connections: list[int], before_answer: asyncio.Event | None = None
) -> RawBehaviour:
    """Answers every request on a connection with the next of `answers`; counts connections."""

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while answers:
            try:
                await read_request_head(reader)
            except asyncio.IncompleteReadError:
                return
            answer = answers.pop(0)
            if before_answer is not None:
                await before_answer.wait()
            writer.write(answer)
            await writer.drain()

    return behaviour


def http_answer(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_keep_alive_reuses_one_connection(client: NodeClient) -> None:
    connections: list[int] = []
    answers = [http_answer(f'{{"n":{i}}}'.encode()) for i in range(5)]
    async with raw_server(counting_server(answers, connections)) as url:
        bodies = [
            (await client.request(url, "GET", "/stats", timeout_ms=2_000)).json() for _ in range(5)
        ]
    assert bodies == [{"n": i} for i in range(5)]
    assert len(connections) == 1


async def test_connection_close_answer_is_not_reused(client: NodeClient) -> None:
    connections: list[int] = []
    answers = [http_answer(b'{"n":0}', "Connection: close\r\n"), http_answer(b'{"n":1}')]
    remaining = list(answers)

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request_head(reader)
        writer.write(remaining.pop(0))
        await writer.drain()
        await until_eof(reader)

    async with raw_server(once) as url:
        first = await client.request(url, "GET", "/stats", timeout_ms=2_000)
        second = await client.request(url, "GET", "/stats", timeout_ms=2_000)
    assert (first.json(), second.json()) == ({"n": 0}, {"n": 1})
    assert len(connections) == 2


async def test_late_answer_after_a_timeout_never_reaches_the_next_call(
    client: NodeClient,
) -> None:
    late = asyncio.Event()
    connections: list[int] = []
    answers = [http_answer(b'{"late":true}'), http_answer(b'{"late":false}')]
    async with raw_server(counting_server(answers, connections, late)) as url:
        with pytest.raises(NodeTimeout):
            await client.request(url, "GET", "/stats", timeout_ms=100)
        late.set()  # the node now answers the call that already gave up
        resp = await client.request(url, "GET", "/stats", timeout_ms=2_000)
    assert resp.json() == {"late": False}
    assert len(connections) == 2


async def test_queued_call_times_out_and_frees_nothing_it_did_not_hold(
    client: NodeClient,
) -> None:
    release = asyncio.Event()
    in_flight = 0

    async def slow(_: web.Request) -> web.Response:
        nonlocal in_flight
        in_flight += 1
        await release.wait()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/stats", slow)
    async with serve(app) as url:
        busy = [
            asyncio.create_task(client.request(url, "GET", "/stats", timeout_ms=5_000))
            for _ in range(2)
        ]
        await eventually(lambda: in_flight == 2)
        with pytest.raises(NodeTimeout):
            await client.request(url, "GET", "/stats", timeout_ms=100)
        release.set()
        assert [r.status for r in await asyncio.gather(*busy)] == [200, 200]
        # Both slots are free again: two more calls run side by side.
        again = await asyncio.gather(
            *(client.request(url, "GET", "/stats", timeout_ms=2_000) for _ in range(2))
        )
    assert [r.status for r in again] == [200, 200]


async def test_body_delimited_by_the_end_of_the_connection(client: NodeClient) -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"whole":true}')
        await writer.drain()

    async with raw_server(until_close) as url:
        resp = await client.request(url, "GET", "/stats", timeout_ms=2_000)
    assert resp.json() == {"whole": True}


async def test_query_params_are_added_to_a_path_that_has_a_query(client: NodeClient) -> None:
    async with serve(echo_app()) as url:
        resp = await client.request(
            url, "GET", "/tasks?limit=2", params={"from": 7, "q": "a b"}, timeout_ms=2_000
        )
    assert resp.json()["query"] == {"limit": "2", "from": "7", "q": "a b"}


async def test_a_waiter_cancelled_as_its_slot_frees_up_stays_cancelled() -> None:
    # `release` drops a cancelled waiter from the queue before the waiting task resumes;
    # that task must then end cancelled, not with an error about the queue.
    from miroir_proxy.nodes.fastclient import _Pool

    pool = _Pool("http://127.0.0.1:1", limit=1)
    pool.busy = 1
    waiting = asyncio.ensure_future(pool.wait_for_slot())
    await asyncio.sleep(0)  # the waiter is queued
    waiting.cancel()
    pool.release(None)  # in the same turn: skips the cancelled waiter, frees the slot
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pool.busy == 0
    assert pool.has_free_slot()
