"""The benchmark scenarios: data they use and what each one measures.

Each `*_run` function measures once and returns plain numbers; `bench.run` repeats them
and keeps medians. Sizes come from a `Sizes` value so the smoke test can run every code
path in seconds.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from miroir_proxy.cli.processes import LocalNodes, ProxyProcess, poll_until
from miroir_proxy.core.assignment import minimum_moves, moves

from .harness import (
    MASTER_KEY,
    LoadResult,
    call,
    proxy_config,
    run_load,
    seed,
    set_faults,
    start_proxy,
    wait_task,
)
from .measure import cpu_seconds, percentile, rss_mb

_WORDS = [f"w{i:03d}" for i in range(300)]
QUERY_WORDS = _WORDS[:40]


@dataclass(frozen=True, slots=True)
class Sizes:
    documents: int = 1_000  # seeded into the search index
    searches: int = 2_500  # per search-cost run
    search_concurrency: int = 16
    latency_searches: int = 400  # per latency run, one at a time
    write_batches: int = 32  # of `write_batch` documents, per write-cost run (CPU ticks are 10 ms)
    write_batch: int = 1_000
    scaling_s: float = 3.0  # per scaling run
    scaling_delay_ms: int = 40
    scaling_slots: int = 2
    rss_concurrency: int = 500
    rss_searches: int = 2_000
    sync_documents: int = 10_000  # copied by the group sync benchmark
    antientropy_documents: int = 100_000  # x 4 replicas, compared by the anti-entropy pass
    antientropy_damaged: int = 100  # deleted or altered behind Miroir's back per run
    runs: int = 3


SMOKE = Sizes(
    documents=60, searches=40, search_concurrency=4, latency_searches=10, write_batches=2,
    write_batch=50, scaling_s=0.5, scaling_delay_ms=5, scaling_slots=2, rss_concurrency=20,
    rss_searches=40, sync_documents=200, antientropy_documents=400, antientropy_damaged=10,
    runs=1,
)  # fmt: skip


def document(rng: random.Random, number: int) -> dict[str, Any]:
    """A ~1 KB document: an id, a title, a few fields and ~900 bytes of text."""
    text = " ".join(rng.choice(_WORDS) for _ in range(225))
    return {
        "id": number,
        "title": f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {number}",
        "genre": rng.choice(("drama", "comedy", "horror", "documentary")),
        "year": rng.randrange(1950, 2025),
        "text": text,
    }


def documents(count: int, seed_value: int = 7, first: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed_value)
    return [document(rng, first + i) for i in range(count)]


def search_bodies() -> list[dict[str, Any]]:
    # Distinct queries, so a proxy that coalesces identical searches is not flattered.
    return [{"q": word, "limit": 20} for word in QUERY_WORDS]


def load_spec(url: str, path: str, bodies: list[Any], **kwargs: Any) -> dict[str, Any]:
    return {"url": url, "path": path, "bodies": bodies, "key": MASTER_KEY, **kwargs}


@dataclass(frozen=True, slots=True)
class SearchSetup:
    proxy: ProxyProcess
    node_urls: list[str]
    index: str


def search_setup(
    base: Path, node_urls: list[str], sizes: Sizes, profile_dir: Path | None = None
) -> SearchSetup:
    config = proxy_config([node_urls], shards=16, rf=1)
    proxy = start_proxy(base / "proxy-search", config, profile_dir)
    seed(proxy.url, "search", documents(sizes.documents))
    return SearchSetup(proxy, node_urls, "search")


def search_cost_run(setup: SearchSetup, sizes: Sizes) -> dict[str, float]:
    """Searches per proxy CPU-second at fan-out 3, many in flight."""
    assert setup.proxy.pid is not None
    spec = load_spec(
        setup.proxy.url,
        f"/indexes/{setup.index}/search",
        search_bodies(),
        concurrency=sizes.search_concurrency,
        requests=sizes.searches,
        duration_s=120.0,
        warmup=min(200, sizes.searches),
    )
    result = run_load(spec, setup.proxy.pid)
    _no_errors(result, "search")
    return {
        "search_per_cpu_s": result.answered / result.cpu_s if result.cpu_s else float("nan"),
        "search_system_share": result.system_share,
    }


def floor_run(setup: SearchSetup, sizes: Sizes) -> dict[str, float]:
    """`GET /health` per proxy CPU-second, through every middleware: what the HTTP server
    and the request plumbing cost before any node is called (the ceiling of the search
    figure)."""
    assert setup.proxy.pid is not None
    spec = load_spec(
        setup.proxy.url,
        "/health",
        [],
        method="GET",
        concurrency=sizes.search_concurrency,
        requests=sizes.searches,
        duration_s=120.0,
        warmup=min(200, sizes.searches),
    )
    result = run_load(spec, setup.proxy.pid)
    _no_errors(result, "health")
    return {"health_per_cpu_s": result.answered / result.cpu_s if result.cpu_s else float("nan")}


def search_latency_run(setup: SearchSetup, sizes: Sizes) -> dict[str, float]:
    """Proxy p50/p99 minus the slowest node's for the same queries sent directly, one query
    at a time: each goes to the proxy, then to every node in turn, then to the three nodes
    at once (what the proxy itself waits for).

    `search_added_*` subtracts the slowest answer of the nodes asked at once: on a 2-core
    machine three nodes asked together queue for the cores, and that wait is the machine's,
    not the proxy's. `search_added_vs_alone_*` subtracts the slowest node's figure when
    asked alone (the nodes then never compete), an upper bound of what the proxy adds."""
    spec = load_spec(
        setup.proxy.url,
        f"/indexes/{setup.index}/search",
        search_bodies(),
        also=setup.node_urls,
        concurrency=1,
        requests=sizes.latency_searches,
        duration_s=60.0,
        warmup=20,
    )
    result = run_load(spec, None)
    _no_errors(result, "latency search")
    figures = {}
    for q in (50, 99):
        alone = max(percentile(direct, q) for direct in result.also_latencies_ms)
        together = percentile(result.together_latencies_ms, q)
        proxy = percentile(result.latencies_ms, q)
        figures[f"search_p{q}_ms"] = proxy
        figures[f"node_p{q}_ms"] = alone
        figures[f"nodes_together_p{q}_ms"] = together
        figures[f"search_added_p{q}_ms"] = proxy - together
        figures[f"search_added_vs_alone_p{q}_ms"] = proxy - alone
    return figures


def rss_run(setup: SearchSetup, sizes: Sizes) -> dict[str, float]:
    pid = setup.proxy.pid
    assert pid is not None
    idle = rss_mb(pid)
    spec = load_spec(
        setup.proxy.url,
        f"/indexes/{setup.index}/search",
        search_bodies(),
        concurrency=sizes.rss_concurrency,
        requests=sizes.rss_searches,
        duration_s=120.0,
        warmup=0,
    )
    result = run_load(spec, pid)
    # Memory is what this run measures: failures under overload are reported, not fatal.
    return {
        "rss_idle_mb": idle,
        "rss_500_concurrent_mb": max(result.peak_rss_mb, rss_mb(pid)),
        "rss_run_failed_requests": float(result.errors),
    }


def write_setup(base: Path, node_urls: list[str], profile_dir: Path | None = None) -> ProxyProcess:
    """RG=2, RF=2 over four nodes: every document goes to four nodes."""
    groups = [node_urls[:2], node_urls[2:4]]
    config = proxy_config(groups, shards=16, rf=2)
    proxy = start_proxy(base / "proxy-write", config, profile_dir)
    seed(proxy.url, "writes", [])
    return proxy


def write_cost_run(proxy: ProxyProcess, sizes: Sizes, run: int) -> dict[str, float]:
    """Documents routed per proxy CPU-second, and the same batches parsed and serialized
    once with orjson in this process (the unavoidable work) for the ratio."""
    assert proxy.pid is not None
    first = (run + 1) * 10_000_000
    batches = [
        orjson.dumps(documents(sizes.write_batch, run, first + b * sizes.write_batch))
        for b in range(sizes.write_batches)
    ]
    spec = load_spec(
        proxy.url,
        "/indexes/writes/documents",
        [orjson.loads(b) for b in batches],
        concurrency=1,
        requests=len(batches),
        duration_s=300.0,
        warmup=0,
    )
    result = run_load(spec, proxy.pid)
    _no_errors(result, "write")
    routed = result.answered * sizes.write_batch
    # The unavoidable work's cost is its best of five passes: noise only ever adds to it.
    bare_s = min(_bare_pass(batches) for _ in range(5))
    # A run too short for the 10 ms CPU tick (smoke sizes) measures nothing: NaN, not 0.
    proxy_rate = routed / result.cpu_s if result.cpu_s else float("nan")
    bare_rate = routed / bare_s if bare_s else float("nan")
    return {
        "write_docs_per_cpu_s": proxy_rate,
        "bare_docs_per_cpu_s": bare_rate,
        "write_cost_ratio": bare_rate / proxy_rate,
        "write_system_share": result.system_share,
    }


def _bare_pass(batches: list[bytes]) -> float:
    started = time.process_time()
    for raw in batches:
        orjson.dumps(orjson.loads(raw))
    return time.process_time() - started


def scaling_run(base: Path, node_urls: list[str], groups: int, sizes: Sizes, run: int) -> float:
    """Searches per second through `groups` groups of 3 capacity-limited nodes."""
    group_urls = [node_urls[3 * g : 3 * g + 3] for g in range(groups)]
    index = f"scale{groups}-{run}"  # each proxy starts with empty state; the nodes do not
    config = proxy_config(group_urls, shards=16, rf=1)
    proxy = start_proxy(base / f"proxy-rg{groups}-{run}", config)
    try:
        seed(proxy.url, index, documents(min(sizes.documents, 200)))
        for url in node_urls[: 3 * groups]:
            set_faults(url, sizes.scaling_delay_ms, sizes.scaling_slots)
        # Three times what the nodes can hold at once, so every node always has a queue.
        in_flight = 3 * sizes.scaling_slots * groups
        spec = load_spec(
            proxy.url,
            f"/indexes/{index}/search",
            search_bodies(),
            concurrency=in_flight,
            requests=1_000_000,
            duration_s=sizes.scaling_s,
            warmup=in_flight,
        )
        result = run_load(spec, None)
        _no_errors(result, "scaling search")
        return result.answered / result.elapsed_s
    finally:
        for url in node_urls[: 3 * groups]:
            set_faults(url, 0, None)
        proxy.stop()


def _no_errors(result: LoadResult, what: str) -> None:
    if result.errors:
        raise RuntimeError(f"{what}: {result.errors} requests failed: {result.error_samples}")


def group_sync_run(base: Path, sizes: Sizes, run: int) -> dict[str, float]:
    """Add a replica group of two empty nodes to a group of two holding
    `sizes.sync_documents` documents (RF=1, S=8) and time the operation from the request to
    `succeeded`; then have the same destination nodes ingest the same documents sent to
    them directly (into another index, in batches of the copy's page size, all enqueued
    at once), which is what the nodes alone can do."""
    with LocalNodes(4, base / f"sync-nodes-{run}", MASTER_KEY) as nodes:
        sources, destinations = nodes.urls[:2], nodes.urls[2:]
        config = proxy_config([sources], shards=8, rf=1)
        config["operations"] = {"copy_page_size": SYNC_PAGE}
        proxy = start_proxy(base / f"proxy-sync-{run}", config)
        try:
            seed(proxy.url, "sync", documents(sizes.sync_documents, seed_value=run))
            body = {
                "id": "g1",
                "nodes": [{"id": f"d{i}", "url": u} for i, u in enumerate(destinations)],
            }
            started = time.monotonic()
            operation = call(f"{proxy.url}/_miroir/groups", "POST", body)["operation"]
            _wait_operation(proxy.url, operation)
            sync_s = time.monotonic() - started
        finally:
            proxy.stop()
        held = [_all_documents(url, "sync") for url in destinations]
        started = time.monotonic()
        last = [
            _enqueue_all(url, "direct", docs) for url, docs in zip(destinations, held, strict=True)
        ]
        for url, uid in zip(destinations, last, strict=True):
            if uid is not None:
                wait_task(url, uid)
        ingest_s = time.monotonic() - started
    copied = sum(len(docs) for docs in held)
    return {
        "group_sync_docs_per_s": copied / sync_s,
        "group_ingest_docs_per_s": copied / ingest_s,
        "group_sync_over_ingest": ingest_s / sync_s,
    }


def rebalance_run(base: Path, sizes: Sizes, run: int) -> dict[str, float]:
    """Add a third, empty node to a group of two holding `sizes.sync_documents` documents
    (RF=1, S=8) and time `POST /_miroir/nodes` to `succeeded`; then time what the nodes
    alone must do for the same move: ingest the documents the new node received, sent to it
    directly (as `group_sync_run` does), and delete them again by `_miroir_shard` filter
    (the old owners' cleanup).
    `rebalance_moved_over_ideal` divides the replicas that moved (the tables before and
    after) by the fewest any balanced table needs (`assignment.minimum_moves`)."""
    with LocalNodes(3, base / f"rebalance-nodes-{run}", MASTER_KEY) as nodes:
        config = proxy_config([nodes.urls[:2]], shards=8, rf=1)
        config["operations"] = {"copy_page_size": SYNC_PAGE}
        proxy = start_proxy(base / f"proxy-rebalance-{run}", config)
        try:
            seed(proxy.url, "sync", documents(sizes.sync_documents, seed_value=run))
            before = call(f"{proxy.url}/_miroir/shards")["groups"]["g0"]
            body = {"id": "new", "url": nodes.urls[2], "group": "g0"}
            started = time.monotonic()
            operation = call(f"{proxy.url}/_miroir/nodes", "POST", body)["operation"]
            _wait_operation(proxy.url, operation)
            move_s = time.monotonic() - started
            after = call(f"{proxy.url}/_miroir/shards")["groups"]["g0"]
        finally:
            proxy.stop()
        new = nodes.urls[2]
        held = _all_documents(new, "sync")
        moved_shards = sorted({d["_miroir_shard"] for d in held})
        body = {"filterableAttributes": ["_miroir_shard"]}
        wait_task(new, call(f"{new}/indexes/direct/settings", "PATCH", body)["taskUid"])
        started = time.monotonic()
        last = _enqueue_all(new, "direct", held)
        if last is not None:
            wait_task(new, last)
        body = {"filter": f"_miroir_shard IN {moved_shards}"}
        wait_task(new, call(f"{new}/indexes/direct/documents/delete", "POST", body)["taskUid"])
        ingest_s = time.monotonic() - started
    previous = tuple(tuple(row) for row in before)
    moved = moves(previous, tuple(tuple(row) for row in after))
    ideal = minimum_moves(previous, ["n0-0", "n0-1", "new"], 1, len(previous))
    return {
        "rebalance_docs_per_s": len(held) / move_s,
        "rebalance_over_ingest": ingest_s / move_s,
        "rebalance_moved_over_ideal": moved / ideal,
    }


def dump_export_run(base: Path, sizes: Sizes, run: int) -> dict[str, float]:
    """`POST /dumps` of `sizes.sync_documents` ~1 KB documents on two groups of two nodes
    (RF=1, S=8), timed from the request to the task's `succeeded`, with the proxy's CPU and
    peak RSS growth meanwhile; then the same documents read straight from one group's
    nodes page by page (the reads the dump cannot avoid) for `dump_export_over_fetch`."""
    with LocalNodes(4, base / f"export-nodes-{run}", MASTER_KEY) as nodes:
        config = proxy_config([nodes.urls[:2], nodes.urls[2:]], shards=8, rf=1)
        proxy = start_proxy(base / f"proxy-export-{run}", config)
        try:
            pid = proxy.pid
            assert pid is not None
            seed(proxy.url, "dump", documents(sizes.sync_documents, seed_value=run))
            rss_before, cpu_before = rss_mb(pid), cpu_seconds(pid)
            peak = [rss_before]
            started = time.monotonic()
            uid = call(f"{proxy.url}/dumps", "POST")["taskUid"]

            def finished() -> bool:
                peak.append(rss_mb(pid))
                task = call(f"{proxy.url}/tasks/{uid}")
                if task["status"] in ("failed", "canceled"):
                    raise RuntimeError(f"dump task {uid} {task['status']}: {task['error']}")
                return bool(task["status"] == "succeeded")

            poll_until(finished, 600, what=f"dump task {uid}")
            dump_s = time.monotonic() - started
            cpu_s = cpu_seconds(pid) - cpu_before
        finally:
            proxy.stop()
        started = time.monotonic()
        fetched = sum(len(_all_documents(url, "dump")) for url in nodes.urls[:2])
        fetch_s = time.monotonic() - started
    if fetched != sizes.sync_documents:
        raise RuntimeError(f"the nodes hold {fetched} documents, not {sizes.sync_documents}")
    return {
        "dump_export_docs_per_s": fetched / dump_s,
        "dump_export_docs_per_cpu_s": fetched / cpu_s if cpu_s else float("nan"),
        "dump_export_over_fetch": fetch_s / dump_s,
        "dump_export_rss_growth_mb": max(peak) - rss_before,
    }


SYNC_PAGE = 1_000


def _wait_operation(proxy_url: str, operation: str) -> None:
    """Until the admin operation succeeded; RuntimeError once it failed or was canceled."""

    def finished() -> bool:
        state = call(f"{proxy_url}/_miroir/operations/{operation}")["state"]
        if state not in ("running", "succeeded"):
            raise RuntimeError(f"operation {operation} {state}")
        return bool(state == "succeeded")

    poll_until(finished, 600, what=f"operation {operation}")


def _all_documents(node_url: str, index: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = call(
            f"{node_url}/indexes/{index}/documents/fetch",
            "POST",
            {"offset": len(found), "limit": SYNC_PAGE},
        )
        found.extend(page["results"])
        if len(page["results"]) < SYNC_PAGE:
            return found


def _enqueue_all(node_url: str, index: str, docs: list[dict[str, Any]]) -> int | None:
    last = None
    for start in range(0, len(docs), SYNC_PAGE):
        answer = call(
            f"{node_url}/indexes/{index}/documents?primaryKey=id",
            "POST",
            docs[start : start + SYNC_PAGE],
        )
        last = int(answer["taskUid"])
    return last
