"""`antientropy_pass_over_scan`: what an anti-entropy pass costs over merely reading.

Four nodes, RG=2 with two nodes each, RF=2, S=8: every node holds every shard, so each
document has 4 replicas. `documents` small documents (~150 bytes: a pass reads and hashes
documents, their size only scales both sides alike) are seeded through a proxy once. Each
run then deletes `damaged` documents directly on one node and alters as many on another
(behind Miroir's back), times a full pass (`POST /_miroir/maintenance/anti-entropy` to the
operation's `succeeded`: paging, fingerprints, comparison and the repairs), and right after
times the floor: paging every document of every replica with the same filter, page size
and concurrency (the 4 replicas of a shard at once, shard after shard), parsing each page
and nothing more. The ratio divides the first by the second.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from miroir_proxy.cli.processes import LocalNodes, poll_until

from .harness import MASTER_KEY, call, proxy_config, start_proxy, wait_task

INDEX = "entropy"
SHARDS = 8
PAGE = 1_000
_SEED_BATCH = 5_000
_WAIT_S = 1_800.0


def _documents(count: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    words = [f"w{i:03d}" for i in range(300)]
    return [
        {
            "id": i,
            "title": f"{rng.choice(words)} {rng.choice(words)} {i}",
            "genre": rng.choice(("drama", "comedy", "horror", "documentary")),
            "year": rng.randrange(1950, 2025),
            "tags": [rng.choice(words) for _ in range(4)],
        }
        for i in range(count)
    ]


def _seed(proxy_url: str, docs: list[dict[str, Any]]) -> None:
    created = call(f"{proxy_url}/indexes", "POST", {"uid": INDEX, "primaryKey": "id"})
    wait_task(proxy_url, created["taskUid"])
    last = None
    for start in range(0, len(docs), _SEED_BATCH):
        answer = call(
            f"{proxy_url}/indexes/{INDEX}/documents", "POST", docs[start : start + _SEED_BATCH]
        )
        last = answer["taskUid"]
    if last is not None:

        def done() -> bool:
            task = call(f"{proxy_url}/tasks/{last}")
            if task["status"] in ("failed", "canceled"):
                raise RuntimeError(f"seeding task {last} {task['status']}")
            return bool(task["status"] == "succeeded")

        poll_until(done, _WAIT_S, what="seeding the anti-entropy index")


def _damage(urls: list[str], ids: list[int], run: int) -> None:
    """Delete half of `ids` on the first node and alter the other half on the second."""
    half = len(ids) // 2
    gone = call(f"{urls[0]}/indexes/{INDEX}/documents/delete-batch", "POST", ids[:half])
    wait_task(urls[0], gone["taskUid"])
    altered = [{"id": i, "title": f"changed {run}"} for i in ids[half:]]
    changed = call(f"{urls[1]}/indexes/{INDEX}/documents", "PUT", altered)
    wait_task(urls[1], changed["taskUid"])


def _timed_pass(proxy_url: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    operation = call(f"{proxy_url}/_miroir/maintenance/anti-entropy", "POST")["operation"]
    record: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal record
        record = call(f"{proxy_url}/_miroir/operations/{operation}")
        if record["state"] not in ("running", "succeeded"):
            raise RuntimeError(f"anti-entropy pass {record['state']}: {record['error']}")
        return bool(record["state"] == "succeeded")

    poll_until(finished, _WAIT_S, what="the anti-entropy pass")
    return time.monotonic() - started, record["progress"]


async def _scan(urls: list[str]) -> int:
    """Page every document of every replica, shard by shard, the replicas of a shard at
    once; returns how many documents were read."""
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

        async def replica(url: str, shard: int) -> int:
            offset = 0
            while True:
                body = {"filter": f"_miroir_shard = {shard}", "offset": offset, "limit": PAGE}
                async with session.post(
                    f"{url}/indexes/{INDEX}/documents/fetch", json=body
                ) as response:
                    response.raise_for_status()
                    results = orjson.loads(await response.read())["results"]
                offset += len(results)
                if len(results) < PAGE:
                    return offset

        read = 0
        for shard in range(SHARDS):
            read += sum(await asyncio.gather(*(replica(url, shard) for url in urls)))
        return read


def antientropy_run(base: Path, documents: int, damaged: int, runs: int) -> list[dict[str, float]]:
    with LocalNodes(4, base / "antientropy-nodes", MASTER_KEY) as nodes:
        urls = nodes.urls
        config = proxy_config([urls[:2], urls[2:]], shards=SHARDS, rf=2)
        config["anti_entropy"] = {"enabled": False, "page_size": PAGE, "read_concurrency": 4}
        proxy = start_proxy(base / "proxy-antientropy", config)
        try:
            _seed(proxy.url, _documents(documents))
            figures = []
            rng = random.Random(5)
            for run in range(runs):
                _damage(urls, rng.sample(range(documents), damaged), run)
                pass_s, progress = _timed_pass(proxy.url)
                if progress["repaired"] != damaged or progress["documentsScanned"] < documents:
                    raise RuntimeError(f"the pass did not repair what was damaged: {progress}")
                started = time.monotonic()
                read = asyncio.run(_scan(urls))
                scan_s = time.monotonic() - started
                if read != 4 * documents:
                    raise RuntimeError(f"the scan read {read} documents, not {4 * documents}")
                figures.append(
                    {
                        "antientropy_pass_s": pass_s,
                        "antientropy_scan_s": scan_s,
                        "antientropy_pass_over_scan": pass_s / scan_s,
                    }
                )
            return figures
        finally:
            proxy.stop()
