"""The load generator: a separate process of asyncio workers sending requests on loopback.

Run by the harness as `python -m bench.loadgen SPEC.json`. It warms up, prints `ready`,
waits for `go` on stdin (so the harness reads the proxy's CPU counter exactly around the
measured requests), runs a closed loop of `concurrency` workers until `requests` answers
or `duration_s` have passed, and prints one JSON line of results. Every loop is bounded
in count and in time, and only loopback URLs are accepted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

from miroir_proxy.nodes.client import NodeClient, excerpt
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.nodes.fastclient import FastNodeClient

_TIMEOUT_MS = 30_000


def _loopback_only(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit(f"the load generator only targets loopback, not {url!r}")


async def _closed_loop(
    client: NodeClient, spec: dict[str, Any], requests: int, duration_s: float
) -> dict[str, Any]:
    """`spec["also"]` lists more URLs that get each request right after `spec["url"]`, so
    a comparison (proxy vs each node directly) runs under the same machine load: first one
    URL at a time, then all of them at once (a client's own fan-out; the slowest answer
    is recorded)."""
    path, method = spec["path"], spec.get("method", "POST")
    urls = [spec["url"], *spec.get("also", ())]
    bodies: list[bytes | None] = [orjson.dumps(b) for b in spec["bodies"]] or [None]
    turns = itertools.cycle(bodies)
    counter = itertools.count()
    latencies: list[list[float]] = [[] for _ in urls]
    together: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + duration_s

    async def timed(url: str, body: bytes | None) -> float | None:
        started = time.perf_counter()
        try:
            response = await client.request(
                url,
                method,
                path,
                body=body,
                content_type=None if body is None else "application/json",
                timeout_ms=_TIMEOUT_MS,
            )
        except NodeError as e:
            errors.append(e.reason)
            return None
        if response.status >= 300:
            errors.append(f"HTTP {response.status}: {excerpt(response.body)}")
            return None
        return (time.perf_counter() - started) * 1000

    async def worker() -> None:
        while next(counter) < requests and time.monotonic() < deadline:
            body = next(turns)
            for url, record in zip(urls, latencies, strict=True):
                latency = await timed(url, body)
                if latency is not None:
                    record.append(latency)
            if len(urls) > 1:
                answers = await asyncio.gather(*(timed(url, body) for url in urls[1:]))
                if None not in answers:
                    together.append(max(a for a in answers if a is not None))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    elapsed = time.perf_counter() - started
    return {
        "latencies_ms": latencies[0],
        "also_latencies_ms": latencies[1:],
        "together_latencies_ms": together,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:3],
        "elapsed_s": elapsed,
    }


async def _main(spec: dict[str, Any]) -> None:
    for url in (spec["url"], *spec.get("also", ())):
        _loopback_only(url)
    # 500 connections opened at once overflow the proxy's listen backlog (128): the kernel
    # retries a dropped SYN after 1 s, so connecting gets the same patience as answering.
    async with FastNodeClient(
        master_key=spec.get("key"),
        connect_timeout_ms=_TIMEOUT_MS,
        connections_per_node=spec["concurrency"],
    ) as client:
        warm = await _closed_loop(client, spec, spec.get("warmup", 0), 30.0)
        if warm["errors"]:
            raise SystemExit(f"warm-up requests failed: {warm['error_samples']}")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        result = await _closed_loop(client, spec, spec["requests"], spec["duration_s"])
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


def main() -> None:
    # The client logs every 5xx as a node failure; here the "node" is the proxy under test,
    # and failures are counted and reported instead.
    logging.disable(logging.WARNING)
    with open(sys.argv[1], "rb") as spec_file:
        spec = orjson.loads(spec_file.read())
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(_main(spec))


if __name__ == "__main__":
    main()
