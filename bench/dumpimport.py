"""Dump import benchmarks: how fast a Meilisearch dump goes in, compared with the same
documents written by a client, and how much memory the proxy needs for a big dump.

- `import_run`: RG=2, RF=2 over four nodes (every document on four nodes). The same ~1 KB
  documents are written by a client (batches of `write_batch`, all enqueued, then the last
  task awaited) into one index and imported from a V6 dump into another, each timed from
  the first byte sent to the last document applied, with the proxy's CPU charged to each.
- `rss_run`: a dump of `DUMP_MB` MB (the compressed file; its documents are ~3 KB of random
  base64, so it barely compresses) imported into two nodes (RG=1, RF=1), the proxy's
  resident memory sampled every `RSS_SAMPLE_S` from just before the upload to the end.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from miroir_proxy.cli.processes import LocalNodes, ProxyProcess

from .harness import MASTER_KEY, call, proxy_config, start_proxy, wait_task
from .measure import cpu_seconds, rss_mb
from .workloads import SMOKE, Sizes, documents

DUMP_MB = 200
SMOKE_DUMP_MB = 2
RSS_SAMPLE_S = 0.05
CHUNK_DOCUMENTS = 10_000
UPLOAD_TIMEOUT_S = 600
OPERATION_DEADLINE_S = 1_800


def _dump_tools() -> Any:
    # The dump writer is test scaffolding (tests/proxy/dumpkit.py): the benchmark builds its
    # dumps with the same code the tests do, from the documented format.
    from tests.proxy import dumpkit

    return dumpkit


def _config(groups: list[list[str]], base: Path, *, rf: int) -> dict[str, Any]:
    config = proxy_config(groups, shards=16, rf=rf)
    config["operations"] = {
        "dump_spool_dir": str(base / "spool"),
        "dump_chunk_documents": CHUNK_DOCUMENTS,
        "copy_page_size": 1_000,
    }
    return config


def _upload_and_wait(proxy: ProxyProcess, dump: Path) -> None:
    with dump.open("rb") as body, requests.Session() as session:
        session.trust_env = False  # loopback: no HTTP proxy from the environment
        response = session.post(
            f"{proxy.url}/_miroir/dumps/import",
            data=body,
            headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/gzip"},
            timeout=UPLOAD_TIMEOUT_S,
        )
    if response.status_code != 202:
        raise RuntimeError(f"dump import refused: {response.status_code} {response.text}")
    operation = response.json()["operation"]
    deadline = time.monotonic() + OPERATION_DEADLINE_S
    while True:
        state = call(f"{proxy.url}/_miroir/operations/{operation}")
        if state["state"] == "succeeded":
            return
        if state["state"] != "running":
            raise RuntimeError(f"dump import {operation} {state['state']}: {state['error']}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"dump import {operation} still running")
        time.sleep(0.05)


def import_run(base: Path, node_urls: list[str], sizes: Sizes, run: int) -> dict[str, float]:
    count = 2 * sizes.sync_documents
    docs = documents(count, seed_value=run)
    dumpkit = _dump_tools()
    dump = dumpkit.write_dump(
        base / f"import-{run}.dump", [dumpkit.DumpIndex(f"dumped{run}", "id", docs)]
    )
    proxy = start_proxy(
        base / f"proxy-dump-{run}", _config([node_urls[:2], node_urls[2:4]], base, rf=2)
    )
    try:
        assert proxy.pid is not None
        cpu, started = cpu_seconds(proxy.pid), time.monotonic()
        last = None
        for first in range(0, count, sizes.write_batch):
            batch = docs[first : first + sizes.write_batch]
            last = call(f"{proxy.url}/indexes/written{run}/documents", "POST", batch)["taskUid"]
        if last is not None:
            wait_task(proxy.url, last)
        write_s, write_cpu = time.monotonic() - started, cpu_seconds(proxy.pid) - cpu
        cpu, started = cpu_seconds(proxy.pid), time.monotonic()
        _upload_and_wait(proxy, dump)
        import_s, import_cpu = time.monotonic() - started, cpu_seconds(proxy.pid) - cpu
    finally:
        proxy.stop()
        dump.unlink(missing_ok=True)
    return {
        "dump_import_docs_per_s": count / import_s,
        "dump_write_docs_per_s": count / write_s,
        "dump_import_over_write": write_s / import_s,
        "dump_import_docs_per_cpu_s": count / import_cpu if import_cpu else float("nan"),
        "dump_write_docs_per_cpu_s": count / write_cpu if write_cpu else float("nan"),
    }


def _big_documents(target_bytes: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(11)
    number, written = 0, 0
    while written < target_bytes:
        text = base64.b64encode(rng.randbytes(2_250)).decode()
        yield {"id": number, "title": f"document {number}", "blob": text}
        number += 1
        written += 2_280  # what one document adds to the compressed file, about


def rss_run(base: Path, sizes: Sizes) -> dict[str, float]:
    megabytes = SMOKE_DUMP_MB if sizes is SMOKE else DUMP_MB
    dumpkit = _dump_tools()
    dump = dumpkit.write_dump(
        base / "rss.dump", [dumpkit.DumpIndex("big", "id", _big_documents(megabytes << 20))]
    )
    with LocalNodes(2, base / "rss-nodes", MASTER_KEY) as nodes:
        proxy = start_proxy(base / "proxy-dump-rss", _config([nodes.urls], base, rf=1))
        try:
            pid = proxy.pid
            assert pid is not None
            before = rss_mb(pid)
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.wait(RSS_SAMPLE_S):
                    peak[0] = max(peak[0], rss_mb(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                _upload_and_wait(proxy, dump)
            finally:
                done.set()
                sampler.join()
            peak[0] = max(peak[0], rss_mb(pid))
        finally:
            proxy.stop()
            size_mb = dump.stat().st_size / (1 << 20)
            dump.unlink(missing_ok=True)
    return {
        "dump_import_rss_growth_mb": peak[0] - before,
        "dump_import_rss_dump_mb": size_mb,
    }
