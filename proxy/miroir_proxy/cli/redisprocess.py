"""A `redis-server` child process for a multi-pod dev cluster, with a node's lifecycle.

Decisions a newcomer would otherwise get wrong:
- `--set-proc-title no` keeps the command line as we wrote it, data directory included:
  `miroir dev down` only signals pids whose command line names the cluster's directory,
  and Redis would otherwise rewrite it to `redis-server 127.0.0.1:PORT`.
- The append-only file lives in the data directory, so a stopped dev cluster keeps its
  task registry and topology like the SQLite store does.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from .processes import LOOPBACK, NodeBinary, NodeProcess, NodeStartError, poll_until

REDIS_COMMAND = "redis-server"
REDIS_LOG_NAME = "redis.log"
_PING_TIMEOUT_S = 0.2


def resolve_redis_binary() -> str:
    found = shutil.which(REDIS_COMMAND)
    if found is None:
        raise FileNotFoundError(f"no `{REDIS_COMMAND}` on PATH: run `make setup`")
    return found


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=_PING_TIMEOUT_S) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess(NodeProcess):
    """`redis-server` on a loopback port, its data and log under `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        super().__init__(
            data_dir, port=port, binary=NodeBinary(resolve_redis_binary(), is_devnode=False)
        )

    @property
    def url(self) -> str:
        """The store URL the proxies are configured with."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / REDIS_LOG_NAME

    def command(self) -> list[str]:
        return [
            *(self.binary.path, "--port", str(self.port), "--bind", LOOPBACK),
            *("--dir", str(self.data_dir), "--set-proc-title", "no"),
            *("--save", "", "--appendonly", "yes", "--protected-mode", "no"),
        ]

    def wait_healthy(self, timeout_s: float = 20.0) -> None:
        def pong() -> bool:
            if not self.is_running:
                self._reap()
                raise NodeStartError(self._failure(f"redis exited with code {self._returncode()}"))
            return answers_ping(self.port)

        try:
            poll_until(pong, timeout_s, what=f"PING on {self.url}")
        except TimeoutError as e:
            raise NodeStartError(self._failure(str(e))) from e

    def __repr__(self) -> str:
        return f"RedisProcess({self.url}, pid={self.pid}, data_dir={str(self.data_dir)!r})"
