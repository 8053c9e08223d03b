"""Processes a benchmark runs against: devnodes, a `miroir-proxy`, and the load generator.

Setup calls (index creation, seeding, fault settings) use blocking urllib on loopback:
they are not measured, and keeping them out of asyncio keeps the harness simple.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from miroir_proxy.cli.processes import ProxyProcess, poll_until

from .measure import cpu_split, rss_mb
from .profiling import ProfiledProxy

MASTER_KEY = "bench-master-key"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_TASK_WAIT_S = 120.0
_RSS_SAMPLE_S = 0.05


def call(url: str, method: str = "GET", body: Any = None, key: str = MASTER_KEY) -> Any:
    """One JSON call; raises on any HTTP error (setup must not half-succeed)."""
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (loopback http)
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _NO_PROXY.open(request, timeout=60) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as e:  # say why: the status alone hides Miroir's error
        raise RuntimeError(f"{method} {url}: HTTP {e.code} {e.read()[:500]!r}") from e


def wait_task(base_url: str, task_uid: int) -> None:
    def finished() -> bool:
        task = call(f"{base_url}/tasks/{task_uid}")
        if task["status"] in ("failed", "canceled"):
            raise RuntimeError(f"task {task_uid} {task['status']}: {task.get('error')}")
        return bool(task["status"] == "succeeded")

    poll_until(finished, _TASK_WAIT_S, what=f"task {task_uid} on {base_url}")


def set_faults(node_url: str, delay_ms: int, max_concurrent: int | None) -> None:
    body = {"delayMs": delay_ms, "maxConcurrent": max_concurrent}
    call(f"{node_url}/_devnode/faults", "PUT", body)


def proxy_config(groups: list[list[str]], *, shards: int, rf: int) -> dict[str, Any]:
    return {
        "shards": shards,
        "replication_factor": rf,
        "master_key": MASTER_KEY,
        "node_master_key": MASTER_KEY,
        "replica_groups": [
            {"id": f"g{g}", "nodes": [{"id": f"n{g}-{i}", "url": u} for i, u in enumerate(urls)]}
            for g, urls in enumerate(groups)
        ],
    }


def start_proxy(
    data_dir: Path, config: dict[str, Any], profile_dir: Path | None = None
) -> ProxyProcess:
    """A ready proxy; with `profile_dir`, profiled into `profile_dir/<data_dir name>.prof`."""
    # WARNING keeps one JSON access-log line per request out of what is measured; the
    # access log's cost is reported separately (see bench/README.md).
    proxy: ProxyProcess
    if profile_dir is None:
        proxy = ProxyProcess(data_dir, config, log_level="WARNING")
    else:
        profile_dir.mkdir(parents=True, exist_ok=True)
        out = profile_dir.resolve() / f"{data_dir.name}.prof"
        proxy = ProfiledProxy(data_dir, config, out, log_level="WARNING")
    proxy.start()
    try:
        proxy.wait_ready()
    except BaseException:
        proxy.kill()
        raise
    return proxy


def seed(base_url: str, index: str, documents: list[dict[str, Any]], batch: int = 1000) -> None:
    wait_task(
        base_url, call(f"{base_url}/indexes", "POST", {"uid": index, "primaryKey": "id"})["taskUid"]
    )
    last = None
    for start in range(0, len(documents), batch):
        answer = call(
            f"{base_url}/indexes/{index}/documents", "POST", documents[start : start + batch]
        )
        last = answer["taskUid"]
    if last is not None:
        wait_task(base_url, last)


@dataclass
class LoadResult:
    cpu_s: float
    latencies_ms: list[float]
    errors: int
    elapsed_s: float
    peak_rss_mb: float = 0.0
    system_share: float = 0.0  # of cpu_s, spent in the kernel (loopback TCP, epoll)
    error_samples: list[str] = field(default_factory=list)
    also_latencies_ms: list[list[float]] = field(default_factory=list)  # per `also` URL
    together_latencies_ms: list[float] = field(default_factory=list)  # slowest `also`, at once

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)


def run_load(spec: dict[str, Any], measured_pid: int | None) -> LoadResult:
    """Run the load generator once; charge `measured_pid` the CPU it spent meanwhile."""
    cwd = Path(__file__).resolve().parent.parent
    # The spec carries the request bodies (megabytes for writes): too long for argv.
    with tempfile.NamedTemporaryFile(suffix=".json") as spec_file:
        spec_file.write(orjson.dumps(spec))
        spec_file.flush()
        command = [sys.executable, "-m", "bench.loadgen", spec_file.name]
        return _drive(command, cwd, measured_pid)


def _drive(command: list[str], cwd: Path, measured_pid: int | None) -> LoadResult:
    with subprocess.Popen(
        command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as gen:
        assert gen.stdin is not None and gen.stdout is not None
        line = gen.stdout.readline().strip()
        if line != "ready":
            gen.kill()
            raise RuntimeError(f"load generator failed to warm up: {line!r}")
        peak = [0.0]
        done = threading.Event()
        sampler = threading.Thread(target=_sample_rss, args=(measured_pid, peak, done))
        sampler.start()
        before = cpu_split(measured_pid) if measured_pid else (0.0, 0.0)
        gen.stdin.write("go\n")
        gen.stdin.flush()
        result = orjson.loads(gen.stdout.readline())
        after = cpu_split(measured_pid) if measured_pid else (0.0, 0.0)
        done.set()
        sampler.join()
        if gen.wait(timeout=30) != 0:
            raise RuntimeError("load generator exited with an error")
    user, system = after[0] - before[0], after[1] - before[1]
    return LoadResult(
        user + system,
        result["latencies_ms"],
        result["errors"],
        result["elapsed_s"],
        peak[0],
        system_share=system / (user + system) if user + system else 0.0,
        error_samples=result["error_samples"],
        also_latencies_ms=result["also_latencies_ms"],
        together_latencies_ms=result["together_latencies_ms"],
    )


def _sample_rss(pid: int | None, peak: list[float], done: threading.Event) -> None:
    while pid and not done.wait(_RSS_SAMPLE_S):
        peak[0] = max(peak[0], rss_mb(pid))
