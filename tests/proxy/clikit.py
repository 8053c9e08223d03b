"""Running the `miroir` command against real processes: a one-proxy cluster of devnodes
(`miroir dev up`'s `DevCluster`), spare empty devnodes to add, and the command run as a
subprocess through its entry point, with pipes or, for the live progress bar, a terminal.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import LocalNodes, poll_until

MIROIR = str(Path(sys.executable).parent / "miroir")
MASTER_KEY = "cli-test-master-key-0123"
ADMIN_KEY = "cli-test-admin-key-0123"
NODE_KEY = "cli-test-node-key-0123"
SHARDS = 8
INDEX = "books"
COMMAND_DEADLINE_S = 300.0
HTTP_TIMEOUT_S = 10
# Throttled copies: an operation lasts long enough for the progress display to show it
# running, whatever the machine's speed.
SETTINGS: dict[str, Any] = {
    "health": {"interval_ms": 200, "timeout_ms": 1_000, "unhealthy_after": 3},
    "operations": {"copy_page_size": 100, "copy_docs_per_s": 500},
}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# What makes rich treat a pipe as a terminal or the reverse, or fixes its width: the tests
# decide those themselves.
RICH_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS", "LINES")


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cluster:
    fleet: DevCluster
    spare: LocalNodes

    @property
    def url(self) -> str:
        return self.fleet.url

    def env(self) -> dict[str, str]:
        """The environment a user of this cluster's CLI would set."""
        return {**os.environ, "MIROIR_URL": self.url, "MIROIR_ADMIN_KEY": ADMIN_KEY}

    def api(self, method: str, path: str, key: str = ADMIN_KEY, **kwargs: Any) -> Any:
        """The JSON of a 2xx answer (the admin key by default; data routes take the master key)."""
        response = requests.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {key}"},
            timeout=HTTP_TIMEOUT_S,
            **kwargs,
        )
        assert response.status_code < 300, f"{response.status_code}: {response.text}"
        return response.json()


def _scrubbed(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in RICH_ENV}


def miroir(*args: str, env: dict[str, str] | None = None) -> Ran:
    """Run `miroir ARGS` with pipes (not a terminal)."""
    done = subprocess.run(
        [MIROIR, *args],
        capture_output=True,
        text=True,
        env=_scrubbed(env if env is not None else dict(os.environ)),
        timeout=COMMAND_DEADLINE_S,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def miroir_on_terminal(*args: str, env: dict[str, str], columns: int = 120) -> Ran:
    """Run `miroir ARGS` with stdout and stderr on a pseudo-terminal, as a person would; the
    output has its terminal control sequences removed (`stderr` is empty: one stream)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**_scrubbed(env), "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [MIROIR, *args], stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + COMMAND_DEADLINE_S
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
            assert time.monotonic() < deadline, "miroir still running"
        code = process.wait(timeout=COMMAND_DEADLINE_S)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    text = ANSI.sub("", b"".join(chunks).decode(errors="replace"))
    return Ran(code, text, "")


def frames(output: str) -> list[str]:
    """The lines a terminal showed, each redraw of the progress line apart."""
    return [line.strip() for line in re.split(r"[\r\n]+", output) if line.strip()]


def load(cluster: Cluster, count: int, index: str = INDEX) -> None:
    cluster.api("POST", "/indexes", MASTER_KEY, json={"uid": index, "primaryKey": "id"})
    task = cluster.api(
        "POST",
        f"/indexes/{index}/documents",
        MASTER_KEY,
        json=[{"id": i, "title": f"book {i}"} for i in range(count)],
    )
    poll_until(
        lambda: (
            cluster.api("GET", f"/tasks/{task['taskUid']}", MASTER_KEY)["status"] == "succeeded"
        ),
        120,
        what="the load",
    )


def start_cluster(root: Path, spare_nodes: int = 4) -> Iterator[Cluster]:
    spec = ClusterSpec(
        nodes=2,
        replica_groups=1,
        replication_factor=2,
        shards=SHARDS,
        port=0,
        master_key=MASTER_KEY,
        admin_key=ADMIN_KEY,
        node_master_key=NODE_KEY,
        data_dir=root / "cluster",
        proxy_settings=SETTINGS,
    )
    fleet = DevCluster(spec)
    spare = LocalNodes(spare_nodes, root / "spare", NODE_KEY)
    fleet.start()
    try:
        spare.start()
        cluster = Cluster(fleet, spare)
        load(cluster, 3_000)
        yield cluster
    finally:
        spare.stop()
        fleet.stop()
