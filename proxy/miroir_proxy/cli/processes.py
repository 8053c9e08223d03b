"""Local Meilisearch-compatible nodes (and `miroir-proxy`) as child processes: the dev cluster
and the tests use this.

The node binary is a real `meilisearch` when one is available (`MIROIR_MEILI_BIN` or PATH), else
our `miroir-devnode`; both take Meilisearch's flags, so callers never care which one runs.

Decisions a newcomer would otherwise get wrong:
- Every node runs in its own session (process group) and every signal goes to the group, so a
  node that forks helpers is paused or killed as a whole, and Ctrl-C in the parent does not
  race our own shutdown.
- Nothing sleeps for a fixed time: waits poll a condition with a short backoff until a deadline
  and fail with the node's log tail, which is usually the only useful clue.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Self

import psutil
import yaml

MEILI_BIN_ENV = "MIROIR_MEILI_BIN"
DEVNODE_COMMAND = "miroir-devnode"
LOOPBACK = "127.0.0.1"
_EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
LOG_FILE_NAME = "node.log"
DB_DIR_NAME = "db"
PROXY_COMMAND = "miroir-proxy"
PROXY_CONFIG_NAME = "miroir.yaml"
PROXY_LOG_NAME = "proxy.log"
PROXY_STATE_NAME = "state.sqlite3"

_NODE_ENV_PREFIXES = ("MEILI_", "MIROIR_DEVNODE_")
_POLL_FIRST_S = 0.01
_POLL_MAX_S = 0.2
_PROBE_TIMEOUT_S = 0.5

# urllib would otherwise honour http_proxy for loopback probes.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LIVE_NODES: weakref.WeakSet[NodeProcess] = weakref.WeakSet()


class NodeStartError(RuntimeError):
    """A node did not become healthy before its deadline (the message carries the log tail)."""


@dataclass(frozen=True, slots=True)
class NodeBinary:
    path: str
    is_devnode: bool


def resolve_node_binary() -> NodeBinary:
    """`MIROIR_MEILI_BIN`, else `meilisearch` on PATH, else `miroir-devnode` beside Python."""
    configured = os.environ.get(MEILI_BIN_ENV)
    if configured:
        return NodeBinary(configured, is_devnode=Path(configured).name == DEVNODE_COMMAND)
    real = shutil.which("meilisearch")
    if real:
        return NodeBinary(real, is_devnode=False)
    beside_python = Path(sys.executable).parent / DEVNODE_COMMAND
    if beside_python.exists():
        return NodeBinary(str(beside_python), is_devnode=True)
    on_path = shutil.which(DEVNODE_COMMAND)
    if on_path:
        return NodeBinary(on_path, is_devnode=True)
    raise FileNotFoundError(
        f"no node binary: set {MEILI_BIN_ENV}, put `meilisearch` on PATH or install the devnode"
    )


_BIND_ATTEMPTS = 3


def free_port(host: str = LOOPBACK) -> int:
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct free ports: all are held open together so none is handed out twice.

    They are drawn below the kernel's ephemeral range: a port there is never handed to a
    socket bound to port 0 (a test server) or to an outgoing connection, so no other
    process takes it while a node restarts on it. (A kill -9 test once lost its node's
    port to another test's server in the half second the node took to come back.)
    """
    first, end = _reserved_range()
    sockets: list[socket.socket] = []
    try:
        for _ in range(100 * count):
            if len(sockets) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, random.randrange(first, end)))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        while len(sockets) < count:  # the range is crowded: let the kernel choose
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _reserved_range() -> tuple[int, int]:
    """The 10,000 ports just below the ephemeral range (Linux), else a common default."""
    try:
        ephemeral_first = int(Path(_EPHEMERAL_RANGE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_first = 32768
    return max(1024, ephemeral_first - 10_000), ephemeral_first


def poll_until(condition: Callable[[], bool], timeout_s: float, *, what: str = "condition") -> None:
    """Re-check `condition` with a short growing backoff; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    pause_s = _POLL_FIRST_S
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what} did not hold within {timeout_s:.1f}s")
        time.sleep(min(pause_s, remaining))
        pause_s = min(pause_s * 2, _POLL_MAX_S)


def probe_health(url: str, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
    """True when `GET {url}/health` answers 200 within `timeout_s`."""
    try:
        with _NO_PROXY_OPENER.open(f"{url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class NodeProcess:
    """One node process bound to a loopback port, with its data and log under `data_dir`."""

    dropped_env_prefixes: ClassVar[tuple[str, ...]] = _NODE_ENV_PREFIXES

    def __init__(
        self,
        data_dir: Path,
        *,
        master_key: str | None = None,
        port: int | None = None,
        binary: NodeBinary | None = None,
        fault_injection: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary or resolve_node_binary()
        if fault_injection and not self.binary.is_devnode:
            raise ValueError("fault injection is a devnode test feature")
        self.data_dir = Path(data_dir)
        self.master_key = master_key
        self.port = port or free_port()
        # A port we chose may be taken by another process between our check and the node's
        # bind: until the node first answered, such a start moves to another port.
        self._may_move = port is None
        self.fault_injection = fault_injection
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE_NAME

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_DIR_NAME

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def is_paused(self) -> bool:
        return self._paused

    def command(self) -> list[str]:
        args = [
            self.binary.path,
            "--http-addr",
            f"{LOOPBACK}:{self.port}",
            "--db-path",
            str(self.db_path),
        ]
        if self.master_key is not None:
            args += ["--master-key", self.master_key]
        if self.binary.is_devnode:
            if self.fault_injection:
                args.append("--enable-fault-injection")
        else:
            args += ["--no-analytics", "--env", "development"]
        return args + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        """The child's environment: ours without the variables that would change its settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(self.dropped_env_prefixes)}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> None:
        if self.is_running:
            raise RuntimeError(f"node on port {self.port} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._close_log()
        # Append, so a restarted node's log keeps what happened before the restart.
        self._log = self.log_path.open("ab")
        # The flags are the whole configuration: inherited MEILI_* or devnode variables would
        # silently change what a test runs against.
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.data_dir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._paused = False
        _LIVE_NODES.add(self)

    def wait_healthy(self, timeout_s: float = 20.0) -> None:
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            try:
                self._wait_healthy(timeout_s)
            except NodeStartError as e:
                lost = "address already in use" in str(e).lower()
                if not (self._may_move and lost and attempt < _BIND_ATTEMPTS):
                    raise
                self._move()
                self.start()
                continue
            self._may_move = False
            return

    def _move(self) -> None:
        self.port = free_port()

    def _wait_healthy(self, timeout_s: float) -> None:
        def healthy() -> bool:
            if not self.is_running:
                self._reap()
                raise NodeStartError(self._failure(f"node exited with code {self._returncode()}"))
            # Our process must hold the port: another one that took it (a parallel test's
            # node or proxy) would answer /health too.
            return self._listening() and probe_health(self.url)

        try:
            poll_until(healthy, timeout_s, what=f"/health on {self.url}")
        except TimeoutError as e:
            raise NodeStartError(self._failure(str(e))) from e

    def _listening(self) -> bool:
        """True when this very process listens on its port."""
        if self._process is None:
            return False
        try:
            sockets = psutil.Process(self._process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(
            s.status == psutil.CONN_LISTEN and s.laddr and s.laddr.port == self.port
            for s in sockets
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if the node has not exited after `timeout_s`."""
        if self.is_running:
            self._signal(signal.SIGTERM)
            if self._paused:
                self._signal(signal.SIGCONT)
            try:
                self._wait_exit(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def kill(self) -> None:
        if self.is_running:
            self._signal(signal.SIGKILL)
            self._wait_exit(10.0)
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, but nothing answers them."""
        self._require_running()
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._require_running()
        self._signal(signal.SIGCONT)
        self._paused = False

    def restart(self, timeout_s: float = 20.0) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop()
        self.start()
        self.wait_healthy(timeout_s)

    def detach(self) -> None:
        """Leave the process running after this Python exits (`miroir dev up --detach`)."""
        self._reap()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"NodeProcess({self.url}, pid={self.pid}, data_dir={str(self.data_dir)!r})"

    def _signal(self, sig: signal.Signals) -> None:
        assert self._process is not None
        try:
            os.killpg(self._process.pid, sig)
        except ProcessLookupError:
            pass

    def _wait_exit(self, timeout_s: float) -> None:
        assert self._process is not None
        self._process.wait(timeout=timeout_s)

    def _reap(self) -> None:
        self._paused = False
        self._close_log()
        _LIVE_NODES.discard(self)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _require_running(self) -> None:
        if not self.is_running:
            raise RuntimeError(f"node on port {self.port} is not running")

    def _returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def _failure(self, reason: str) -> str:
        return f"{self!r}: {reason}\n--- last lines of {self.log_path} ---\n{self.log_tail()}"


class LocalNodes:
    """`count` nodes under `base_dir/node-<i>`, started and stopped in parallel."""

    def __init__(
        self,
        count: int,
        base_dir: Path,
        master_key: str | None = None,
        *,
        binary: NodeBinary | None = None,
        fault_injection: bool = False,
    ) -> None:
        chosen = binary or resolve_node_binary()
        self.nodes = [
            NodeProcess(
                Path(base_dir) / f"node-{i}",
                master_key=master_key,
                port=port,
                binary=chosen,
                fault_injection=fault_injection,
            )
            for i, port in enumerate(free_ports(count))
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout_s: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        try:
            self._each(lambda node: node.wait_healthy(timeout_s))
        except BaseException:
            self._each(NodeProcess.kill)
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        self._each(lambda node: node.stop(timeout_s))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _each(self, action: Callable[[NodeProcess], None]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            for future in [pool.submit(action, node) for node in self.nodes]:
                future.result()


def resolve_proxy_binary() -> str:
    """`miroir-proxy` beside the running Python (the venv), else on PATH."""
    beside_python = Path(sys.executable).parent / PROXY_COMMAND
    if beside_python.exists():
        return str(beside_python)
    on_path = shutil.which(PROXY_COMMAND)
    if on_path:
        return on_path
    raise FileNotFoundError(f"no `{PROXY_COMMAND}`: install the miroir package")


def probe_status(url: str, timeout_s: float = _PROBE_TIMEOUT_S) -> int | None:
    """HTTP status of `GET url`, or None when nothing answered."""
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


class ProxyProcess(NodeProcess):
    """`miroir-proxy --config data_dir/miroir.yaml` on loopback ports, with the lifecycle of a
    node (start, wait_healthy, stop, kill, pause, restart).

    `config` is the proxy's settings tree without `listen` (the ports are ours to choose);
    `state_path` defaults to a file under `data_dir`, so a restart keeps the task registry.
    Edit `config` and call `restart()` to run the same state under new settings.

    `plugins` are passed as `--plugin MODULE` (`miroir_proxy/api/plugins.py`); the directories
    of `python_path` go first on the child's `PYTHONPATH`, so it can import a module that is not
    installed (the tests' scaffolding: the child runs in `data_dir`, not in the repository).
    """

    # MIROIR_* variables override the file's secrets: inheriting them would change the keys.
    dropped_env_prefixes = (*_NODE_ENV_PREFIXES, "MIROIR_")

    def __init__(
        self,
        data_dir: Path,
        config: dict[str, Any],
        *,
        port: int | None = None,
        metrics_port: int | None = None,
        log_level: str = "INFO",
        plugins: Sequence[str] = (),
        python_path: Sequence[Path] = (),
    ) -> None:
        spare = free_ports(2)
        super().__init__(
            data_dir,
            port=port or spare[0],
            binary=NodeBinary(resolve_proxy_binary(), is_devnode=False),
        )
        self.metrics_port = metrics_port or spare[1]
        self._may_move = port is None and metrics_port is None
        self.config = config
        self.log_level = log_level
        self.plugins = tuple(plugins)
        self.python_path = tuple(Path(p).resolve() for p in python_path)

    @property
    def config_path(self) -> Path:
        return self.data_dir / PROXY_CONFIG_NAME

    @property
    def log_path(self) -> Path:
        return self.data_dir / PROXY_LOG_NAME

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}"

    def command(self) -> list[str]:
        return [self.binary.path, *self.proxy_args()]

    def proxy_args(self) -> list[str]:
        """`miroir-proxy`'s arguments."""
        args = ["--config", str(self.config_path), "--log-level", self.log_level]
        for plugin in self.plugins:
            args += ["--plugin", plugin]
        return args

    def environment(self) -> dict[str, str]:
        env = super().environment()
        inherited = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
        if self.python_path:
            env["PYTHONPATH"] = os.pathsep.join([*map(str, self.python_path), *inherited])
        return env

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        super().start()

    def write_config(self) -> None:
        listen = {"host": LOOPBACK, "port": self.port, "metrics_port": self.metrics_port}
        document = {"state_path": str(self.data_dir / PROXY_STATE_NAME), **self.config}
        document["listen"] = listen
        self.config_path.write_text(yaml.safe_dump(document, sort_keys=False))

    def _move(self) -> None:
        self.port, self.metrics_port = free_ports(2)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Poll `/_miroir/ready` until 200: every shard has a live replica in an active group."""
        self.wait_healthy(timeout_s)
        try:
            poll_until(
                lambda: probe_status(f"{self.url}/_miroir/ready") == 200,
                timeout_s,
                what=f"/_miroir/ready on {self.url}",
            )
        except TimeoutError as e:
            raise NodeStartError(self._failure(str(e))) from e

    def __repr__(self) -> str:
        return f"ProxyProcess({self.url}, pid={self.pid}, data_dir={str(self.data_dir)!r})"


@atexit.register
def _kill_leftover_nodes() -> None:
    for node in list(_LIVE_NODES):
        node.kill()
