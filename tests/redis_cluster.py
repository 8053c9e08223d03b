"""A real 3-master Redis Cluster for tests: three `redis-server --cluster-enabled yes`
processes on free loopback ports, joined by `redis-cli --cluster create`, no replicas and no
persistence. Everything lives in one directory; `stop()` ends the three processes.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from miroir_proxy.cli.processes import poll_until

from .redis_server import READY_DEADLINE_S, RedisServer, free_port

MASTERS = 3


def _cluster_ok(port: int) -> bool:
    """The node answers CLUSTER INFO with every slot covered."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"CLUSTER INFO\r\n")
            reply = b""
            while b"cluster_state:" not in reply or not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return b"cluster_state:ok" in reply
    except OSError:
        return False


class RedisCluster:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.nodes = [
            RedisServer(
                directory / f"node-{i}",
                extra_args=(
                    *("--cluster-enabled", "yes"),
                    # The bus port defaults to port + 10000, which may be taken or too high.
                    *("--cluster-port", str(free_port())),
                    *("--cluster-config-file", "nodes.conf"),
                    *("--cluster-node-timeout", "2000"),
                ),
            )
            for i in range(MASTERS)
        ]

    @property
    def url(self) -> str:
        """The store URL of the cluster: any one node; the client finds the others."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def client_url(self) -> str:
        """The same node as redis-py's cluster client reads it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (run `make setup`)")
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    *("--cluster-replicas", "0", "--cluster-yes"),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Start the stopped nodes again: same ports, and each node's `nodes.conf` still
        names its slots and peers, so the cluster re-forms (with no data)."""
        for node in self.nodes:
            node.start()
        self._wait_ok()

    def _wait_ok(self) -> None:
        poll_until(
            lambda: all(_cluster_ok(node.port) for node in self.nodes),
            READY_DEADLINE_S,
            what="the Redis Cluster's cluster_state:ok",
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
