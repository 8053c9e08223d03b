"""A local Miroir cluster: N node processes split into replica groups behind one proxy, or
behind several proxy pods sharing a Redis store (`--proxies 3 --store redis`).

`miroir dev up` and the end-to-end tests both build on `DevCluster`. Everything lives under
one data directory: `node-<i>/` per node, `proxy/` (config, state, log) for the first proxy
and `proxy-<i>/` for the others, `redis/` when the cluster runs its own Redis and, for a
detached cluster, `cluster.json` with the pids that `miroir dev down` stops.

Decisions a newcomer would otherwise get wrong:
- Node and proxy processes start together and are waited for in parallel: the proxy's health
  prober finds the nodes once they answer, and `/_miroir/ready` is the only honest signal
  that the cluster serves every shard.
- `dev down` trusts a recorded pid only while that process's command line still names the
  data directory, so a pid reused by an unrelated process after a reboot is never signalled.
- Redis starts before the proxies (a proxy reads its topology from the store at start-up)
  and stops after them (a proxy releases its leases and leaves the peer set on shutdown).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from miroir_proxy.state.factory import REDIS_SCHEMES

from .processes import (
    NodeBinary,
    NodeProcess,
    ProxyProcess,
    free_ports,
    poll_until,
    resolve_node_binary,
)
from .redisprocess import RedisProcess

DEFAULT_MASTER_KEY = "miroir-dev-master-key"
DEFAULT_DATA_DIR = ".miroir-dev"
STATE_FILE_NAME = "cluster.json"
PROXY_DIR_NAME = "proxy"
REDIS_DIR_NAME = "redis"
# `ClusterSpec.store` value that makes the cluster run its own redis-server.
OWN_REDIS = "redis"

P = TypeVar("P", bound=NodeProcess)


class ClusterLayoutError(ValueError):
    """The data directory belongs to a cluster of another shape."""


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    nodes: int = 6
    replica_groups: int = 2
    replication_factor: int = 2
    shards: int = 16
    port: int = 7700
    metrics_port: int | None = None
    master_key: str = DEFAULT_MASTER_KEY
    admin_key: str | None = None
    node_master_key: str | None = None
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    # Fixed node ports keep a data directory reusable: the proxy's stored topology names them.
    node_ports: tuple[int, ...] | None = None
    # Further proxy settings (timeouts, health, unavailable_shards, ...), merged last.
    proxy_settings: dict[str, Any] = field(default_factory=dict)
    proxies: int = 1
    # None: each proxy's own SQLite file; "redis": a redis-server of the cluster's own;
    # any other value: the store URL the proxies share.
    store: str | None = None
    # Modules every proxy sets up (`miroir-proxy --plugin`), and directories put first on the
    # proxies' PYTHONPATH to find them (`ProxyProcess`).
    plugins: tuple[str, ...] = ()
    python_path: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.proxies < 1:
            raise ValueError("a cluster needs at least one proxy")
        if self.proxies > 1 and self.store is None:
            raise ValueError("several proxies must share a store: add --store redis")
        if self.store not in (None, OWN_REDIS) and not self.store.startswith(REDIS_SCHEMES):
            raise ValueError(f"store {self.store!r}: expected sqlite, redis or a redis:// URL")
        if self.replica_groups < 1 or self.nodes < self.replica_groups:
            raise ValueError(f"{self.nodes} nodes cannot form {self.replica_groups} replica groups")
        if self.node_ports is not None and len(self.node_ports) != self.nodes:
            raise ValueError(f"{len(self.node_ports)} node ports for {self.nodes} nodes")
        smallest = self.nodes // self.replica_groups
        if smallest < self.replication_factor:
            raise ValueError(
                f"a group of {smallest} nodes cannot hold {self.replication_factor} replicas: "
                "add nodes or lower --replication-factor"
            )

    @property
    def node_key(self) -> str:
        return self.node_master_key or self.master_key


def group_layout(nodes: int, groups: int) -> list[list[int]]:
    """Node indexes per group: contiguous runs whose sizes differ by at most one."""
    base, extra = divmod(nodes, groups)
    layout: list[list[int]] = []
    start = 0
    for g in range(groups):
        size = base + (1 if g < extra else 0)
        layout.append(list(range(start, start + size)))
        start += size
    return layout


def proxy_config(spec: ClusterSpec, node_urls: list[str]) -> dict[str, Any]:
    """The proxy's settings tree (without `listen`, which `ProxyProcess` fills in)."""
    return {
        "shards": spec.shards,
        "replication_factor": spec.replication_factor,
        "replica_groups": [
            {"id": f"g{g}", "nodes": [{"id": f"n{i}", "url": node_urls[i]} for i in members]}
            for g, members in enumerate(group_layout(spec.nodes, spec.replica_groups))
        ],
        "master_key": spec.master_key,
        "admin_key": spec.admin_key or spec.master_key,
        "node_master_key": spec.node_key,
        **spec.proxy_settings,
    }


def pod_config(
    base: dict[str, Any], spec: ClusterSpec, index: int, store: str | None
) -> dict[str, Any]:
    """Proxy `index`'s settings: `base` plus the shared store and, with several proxies, a
    stable pod id (`pod-<i>`), so ownership and logs name the same pod across restarts."""
    config = dict(base)
    if store is not None:
        config["store"] = store
    if spec.proxies > 1:
        config["coordination"] = {**base.get("coordination", {}), "pod_id": f"pod-{index}"}
    return config


def proxy_dir_name(index: int) -> str:
    return PROXY_DIR_NAME if index == 0 else f"{PROXY_DIR_NAME}-{index}"


class DevCluster:
    """The nodes and proxies of one `ClusterSpec` (and its Redis when it runs one);
    `start()` returns once every proxy is ready."""

    def __init__(self, spec: ClusterSpec, *, binary: NodeBinary | None = None) -> None:
        self.spec = spec
        self.data_dir = spec.data_dir.resolve()
        chosen = binary or resolve_node_binary()
        ports = spec.node_ports or free_ports(spec.nodes)
        self.nodes = [
            NodeProcess(
                self.data_dir / f"node-{i}",
                master_key=spec.node_key,
                port=p,
                binary=chosen,
            )
            for i, p in enumerate(ports)
        ]
        self.redis = (
            RedisProcess(self.data_dir / REDIS_DIR_NAME) if spec.store == OWN_REDIS else None
        )
        store = self.redis.url if self.redis else spec.store
        base = proxy_config(spec, [node.url for node in self.nodes])
        self.proxies = [
            ProxyProcess(
                self.data_dir / proxy_dir_name(i),
                pod_config(base, spec, i, store),
                port=spec.port + i if spec.port else None,
                metrics_port=spec.metrics_port if i == 0 else None,
                plugins=spec.plugins,
                python_path=spec.python_path,
            )
            for i in range(spec.proxies)
        ]
        self.proxy = self.proxies[0]

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def urls(self) -> list[str]:
        return [proxy.url for proxy in self.proxies]

    @property
    def store_url(self) -> str | None:
        return self.redis.url if self.redis else self.spec.store

    def node_ids(self) -> dict[str, NodeProcess]:
        """Node id as the proxy knows it (`n<i>`) to its process."""
        return {f"n{i}": node for i, node in enumerate(self.nodes)}

    def start(self, timeout_s: float = 60.0) -> None:
        self._check_layout()
        started: list[NodeProcess] = []
        try:
            if self.redis:
                started.append(self.redis)
                self.redis.start()
                self.redis.wait_healthy(timeout_s)
            for process in [*self.nodes, *self.proxies]:
                started.append(process)
                process.start()
            self._each(lambda node: node.wait_healthy(timeout_s), self.nodes)
            self._each(lambda proxy: proxy.wait_ready(timeout_s), self.proxies)
        except BaseException:
            self._each(NodeProcess.kill, started)
            raise

    def _check_layout(self) -> None:
        """Refuse a data directory whose stored topology differs: the proxy's state would win
        over the new configuration and route to nodes that do not exist."""
        path = self.proxy.config_path
        if not path.exists():
            return
        previous = yaml.safe_load(path.read_text()) or {}
        layout_keys = ("shards", "replication_factor", "replica_groups")
        wanted = self.proxy.config
        if any(previous.get(key) != wanted[key] for key in layout_keys):
            raise ClusterLayoutError(
                f"{self.data_dir} holds a cluster with another layout (nodes, ports, groups, "
                "RF or shards): use another --data-dir or delete this one"
            )

    def stop(self, timeout_s: float = 10.0) -> None:
        # The proxies first, so they never report nodes that are going away as failures.
        self._each(lambda proxy: proxy.stop(timeout_s), self.proxies)
        self._each(lambda node: node.stop(timeout_s), self.nodes)
        if self.redis:
            self.redis.stop(timeout_s)

    @property
    def processes(self) -> list[NodeProcess]:
        return [*self.proxies, *self.nodes, *([self.redis] if self.redis else [])]

    def detach(self) -> Path:
        """Record the pids in `cluster.json` and let the processes outlive this Python."""
        state: dict[str, Any] = {
            "proxy": {"pid": self.proxy.pid, "url": self.url},
            "proxies": [{"pid": proxy.pid, "url": proxy.url} for proxy in self.proxies],
            "nodes": [{"pid": node.pid, "url": node.url} for node in self.nodes],
        }
        if self.redis:
            state["redis"] = {"pid": self.redis.pid, "url": self.redis.url}
        path = self.data_dir / STATE_FILE_NAME
        path.write_text(json.dumps(state, indent=2) + "\n")
        for process in self.processes:
            process.detach()
        return path

    def first_failure(self) -> str | None:
        """Why the cluster is broken (a process exited), or None while all are running."""
        for process in self.processes:
            if not process.is_running:
                return f"{process!r} exited\n{process.log_tail()}"
        return None

    def describe(self) -> Iterator[str]:
        spec = self.spec
        for i, proxy in enumerate(self.proxies):
            pod = f"pod-{i}, " if spec.proxies > 1 else ""
            yield (
                f"Miroir proxy: {proxy.url}  ({pod}metrics {proxy.metrics_url}/metrics, "
                f"{spec.shards} shards, RF={spec.replication_factor})"
            )
        if self.store_url:
            yield f"state store: {self.store_url}"
        layout = group_layout(spec.nodes, spec.replica_groups)
        for g, members in enumerate(layout):
            for i in members:
                yield f"  group g{g}  node n{i}: {self.nodes[i].url}"
        yield f"data and logs: {self.data_dir}"

    @staticmethod
    def _each(action: Callable[[P], None], processes: list[P]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(processes))) as pool:
            for future in [pool.submit(action, process) for process in processes]:
                future.result()


def recorded_stages(data_dir: Path) -> list[list[int]]:
    """Pids of a detached cluster in stopping order: proxies, nodes, Redis."""
    path = data_dir.resolve() / STATE_FILE_NAME
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    proxies = state.get("proxies", [state["proxy"]])
    redis = [state["redis"]] if "redis" in state else []
    return [[int(p["pid"]) for p in stage] for stage in (proxies, state["nodes"], redis)]


def recorded_pids(data_dir: Path) -> list[int]:
    """Pids of a detached cluster, proxies first; [] when there is no `cluster.json`."""
    return [pid for stage in recorded_stages(data_dir) for pid in stage]


def down(data_dir: Path, timeout_s: float = 10.0) -> list[int]:
    """Stop a detached cluster stage by stage (proxies, nodes, Redis): SIGTERM to each
    process group, SIGKILL after `timeout_s`.

    Returns the pids that were running; `cluster.json` is removed.
    """
    root = data_dir.resolve()
    stopped: list[int] = []
    for stage in recorded_stages(root):
        ours = [pid for pid in stage if _is_ours(pid, root)]
        _stop_groups(ours, timeout_s)
        stopped += ours
    (root / STATE_FILE_NAME).unlink(missing_ok=True)
    return stopped


def _stop_groups(pids: list[int], timeout_s: float) -> None:
    _signal_groups(pids, signal.SIGTERM)
    try:
        poll_until(lambda: not any(_alive(pid) for pid in pids), timeout_s, what="cluster exit")
    except TimeoutError:
        _signal_groups([pid for pid in pids if _alive(pid)], signal.SIGKILL)
        poll_until(lambda: not any(_alive(pid) for pid in pids), timeout_s, what="SIGKILL")


def _signal_groups(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            # Each process leads its own session, so its group id is its pid.
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A detached child's parent is gone; until init reaps it, a zombie still answers kill(0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc").is_dir()
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_ours(pid: int, root: Path) -> bool:
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc").is_dir()
    return str(root).encode() in cmdline
