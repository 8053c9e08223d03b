"""The process harness: node lifecycle proven over HTTP, deadlines, and failure reports."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from miroir_proxy.cli.processes import (
    LocalNodes,
    NodeBinary,
    NodeProcess,
    NodeStartError,
    ProxyProcess,
    free_port,
    free_ports,
    resolve_node_binary,
)


def _health(url: str, timeout_s: float = 5.0) -> int:
    return requests.get(f"{url}/health", timeout=timeout_s).status_code


def _script(tmp_path: Path, body: str) -> NodeBinary:
    path = tmp_path / "fake-node"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return NodeBinary(str(path), is_devnode=False)


def test_start_pause_resume_kill_restart_cycle(fresh_node: Callable[..., NodeProcess]) -> None:
    node = fresh_node()
    port = node.port
    assert _health(node.url) == 200

    node.pause()
    with pytest.raises(requests.Timeout):
        requests.get(f"{node.url}/health", timeout=0.5)
    node.resume()
    assert _health(node.url) == 200

    first_pid = node.pid
    node.kill()
    assert not node.is_running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{node.url}/health", timeout=0.5)

    node.restart()
    assert node.port == port
    assert node.pid != first_pid
    assert _health(node.url) == 200

    node.stop()
    assert not node.is_running
    assert node.log_path.exists()


def test_stop_of_a_paused_node_terminates_it(fresh_node: Callable[..., NodeProcess]) -> None:
    node = fresh_node()
    node.pause()
    started = time.monotonic()
    node.stop(timeout_s=5.0)
    assert not node.is_running
    assert time.monotonic() - started < 5.0


def test_local_nodes_start_and_stop_together(tmp_path: Path, master_key: str) -> None:
    with LocalNodes(3, tmp_path, master_key) as cluster:
        assert len(set(cluster.urls)) == 3
        assert [_health(url) for url in cluster.urls] == [200, 200, 200]
        data_dirs = {node.data_dir for node in cluster.nodes}
    assert len(data_dirs) == 3
    assert not any(node.is_running for node in cluster.nodes)


def test_a_node_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "n", binary=_script(tmp_path, "echo boom-on-start >&2; exit 3"))
    node.start()
    started = time.monotonic()
    with pytest.raises(NodeStartError, match=r"(?s)exited with code 3.*boom-on-start"):
        node.wait_healthy(timeout_s=10.0)
    assert time.monotonic() - started < 5.0


def test_a_silent_node_fails_at_the_deadline(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "n", binary=_script(tmp_path, "exec sleep 30"))
    node.start()
    started = time.monotonic()
    with pytest.raises(NodeStartError, match="did not hold within"):
        node.wait_healthy(timeout_s=0.3)
    assert time.monotonic() - started < 2.0
    node.stop()
    assert not node.is_running


def test_stop_escalates_to_kill_after_its_deadline(tmp_path: Path) -> None:
    stubborn = _script(tmp_path, "trap '' TERM; while :; do sleep 0.05; done")
    node = NodeProcess(tmp_path / "n", binary=stubborn)
    node.start()
    started = time.monotonic()
    node.stop(timeout_s=0.2)
    assert not node.is_running
    assert time.monotonic() - started < 3.0


def test_command_line_for_a_real_meilisearch(tmp_path: Path) -> None:
    real = NodeBinary("/opt/meilisearch", is_devnode=False)
    node = NodeProcess(tmp_path, master_key="k" * 16, port=7777, binary=real)
    command = node.command()
    assert command[0] == "/opt/meilisearch"
    assert "--no-analytics" in command
    assert command[command.index("--http-addr") + 1] == "127.0.0.1:7777"
    assert command[command.index("--db-path") + 1] == str(tmp_path / "db")
    assert command[command.index("--master-key") + 1] == "k" * 16
    assert "--enable-fault-injection" not in command
    with pytest.raises(ValueError, match="devnode test feature"):
        NodeProcess(tmp_path, binary=real, fault_injection=True)


def test_command_line_for_the_devnode(tmp_path: Path) -> None:
    devnode = NodeBinary("/venv/bin/miroir-devnode", is_devnode=True)
    command = NodeProcess(tmp_path, binary=devnode, fault_injection=True).command()
    assert "--enable-fault-injection" in command
    assert "--no-analytics" not in command
    assert "--master-key" not in command


def test_binary_resolution_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIROIR_MEILI_BIN", "/somewhere/meilisearch")
    assert resolve_node_binary() == NodeBinary("/somewhere/meilisearch", is_devnode=False)
    monkeypatch.setenv("MIROIR_MEILI_BIN", "/somewhere/miroir-devnode")
    assert resolve_node_binary().is_devnode


def test_free_ports_are_distinct_bindable_and_never_ephemeral() -> None:
    ports = free_ports(8)
    assert len(set(ports)) == 8
    # Below the range the kernel hands to port-0 binds and outgoing connections, so no
    # other socket can take a node's port while the node restarts.
    ephemeral_first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(ephemeral_first - 10_000 <= p < ephemeral_first for p in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_async_tests_that_leave_tasks_running_fail(tmp_path: Path) -> None:
    # The same layout as the repository: the guard only counts tasks of code under it.
    tests = tmp_path / "tests"
    tests.mkdir()
    for module in ("conftest.py", "redis_server.py", "redis_cluster.py"):
        shutil.copy(Path(__file__).with_name(module), tests / module)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = --import-mode=importlib\n"
    )
    (tests / "test_probe.py").write_text(
        "import asyncio\n\n"
        "async def test_leaks():\n"
        "    async def forever():\n"
        "        await asyncio.Event().wait()\n"
        "    asyncio.create_task(forever())\n\n"
        "async def test_tidy():\n"
        "    async def quick():\n"
        "        return 1\n"
        "    assert await asyncio.create_task(quick()) == 1\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "1 failed, 1 passed" in run.stdout, run.stdout + run.stderr
    assert "test left asyncio tasks running" in run.stdout


def test_a_node_whose_chosen_port_was_taken_moves_to_another(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", master_key="harness-master-key-0123")
    taken = node.port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        node.start()
        try:
            node.wait_healthy()
            assert node.port != taken
            assert requests.get(f"{node.url}/health", timeout=5).json() == {"status": "available"}
        finally:
            node.stop()


def test_a_proxy_whose_chosen_port_was_taken_moves_to_another(tmp_path: Path) -> None:
    # Another process binds the port between our check and the proxy's own bind (parallel
    # test workers draw from the same range), and answers /health and /_miroir/ready as
    # well as ours would: the first start still moves to free ports, and is only called
    # ready once our own process listens.
    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "available"}')

        def log_message(self, *args: object) -> None:
            pass

    with LocalNodes(1, tmp_path / "nodes", "harness-master-key-0123") as nodes:
        config = {
            "shards": 2,
            "replication_factor": 1,
            "node_master_key": "harness-master-key-0123",
            "replica_groups": [{"id": "g0", "nodes": [{"id": "n0", "url": nodes.urls[0]}]}],
        }
        proxy = ProxyProcess(tmp_path / "proxy", config)
        taken = proxy.port
        impostor = http.server.HTTPServer(("127.0.0.1", taken), Impostor)
        serving = threading.Thread(target=impostor.serve_forever, daemon=True)
        serving.start()
        try:
            proxy.start()
            try:
                proxy.wait_ready()
                assert proxy.port != taken
                answer = requests.get(f"{proxy.url}/_miroir/ready", timeout=5)
                assert answer.json() == {"status": "ready"}
            finally:
                proxy.stop()
        finally:
            impostor.shutdown()
            impostor.server_close()
