"""`miroir dev up/down`: the layout it configures, and the processes it starts and stops."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from miroir_proxy.cli.devcluster import (
    STATE_FILE_NAME,
    ClusterLayoutError,
    ClusterSpec,
    DevCluster,
    down,
    group_layout,
    proxy_config,
    recorded_pids,
)
from miroir_proxy.cli.processes import poll_until
from miroir_proxy.cli.redisprocess import answers_ping

MIROIR = str(Path(sys.executable).parent / "miroir")
KEY = "dev-cluster-test-key"
URL = re.compile(r"http://127\.0\.0\.1:\d+")
SMALL = ["--nodes", "3", "--replica-groups", "1", "--replication-factor", "2", "--shards", "4"]


def _up_args(data_dir: Path, *extra: str) -> list[str]:
    fixed = ["--port", "0", "--master-key", KEY, "--data-dir", str(data_dir)]
    return [MIROIR, "dev", "up", *SMALL, *fixed, *extra]


def _printed_urls(stdout: str) -> tuple[str, list[str]]:
    """The proxy URL and the node URLs that `dev up` printed."""
    lines = stdout.splitlines()
    proxy = next(URL.findall(line)[0] for line in lines if line.startswith("Miroir proxy:"))
    return proxy, [URL.findall(line)[0] for line in lines if " node n" in line]


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _answers(url: str) -> bool:
    try:
        requests.get(f"{url}/health", timeout=2)
    except requests.ConnectionError:
        return False
    return True


def test_group_layout_splits_nodes_into_contiguous_near_equal_groups() -> None:
    assert group_layout(6, 2) == [[0, 1, 2], [3, 4, 5]]
    assert group_layout(7, 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert group_layout(1, 1) == [[0]]


def test_proxy_config_uses_the_master_key_for_every_role_unless_given() -> None:
    urls = [f"http://127.0.0.1:{9000 + i}" for i in range(4)]
    config = proxy_config(ClusterSpec(nodes=4, master_key="m"), urls)
    assert (config["master_key"], config["admin_key"], config["node_master_key"]) == ("m",) * 3
    assert [[n["url"] for n in g["nodes"]] for g in config["replica_groups"]] == [
        urls[:2],
        urls[2:],
    ]
    assert [g["id"] for g in config["replica_groups"]] == ["g0", "g1"]
    own = proxy_config(
        ClusterSpec(nodes=4, master_key="m", admin_key="a", node_master_key="n"), urls
    )
    assert (own["master_key"], own["admin_key"], own["node_master_key"]) == ("m", "a", "n")


@pytest.mark.parametrize(
    ("nodes", "groups", "rf"), [(3, 2, 2), (2, 3, 1), (4, 0, 1)], ids=["rf", "groups", "zero"]
)
def test_impossible_layouts_are_refused(nodes: int, groups: int, rf: int) -> None:
    with pytest.raises(ValueError, match="cannot"):
        ClusterSpec(nodes=nodes, replica_groups=groups, replication_factor=rf)


def test_a_data_dir_of_another_layout_is_refused_before_anything_starts(tmp_path: Path) -> None:
    first = DevCluster(
        ClusterSpec(nodes=2, replica_groups=1, replication_factor=1, data_dir=tmp_path)
    )
    first.proxy.data_dir.mkdir(parents=True)
    first.proxy.write_config()
    other = DevCluster(
        ClusterSpec(nodes=3, replica_groups=1, replication_factor=1, data_dir=tmp_path)
    )
    with pytest.raises(ClusterLayoutError, match="another layout"):
        other.start()
    assert not any(process.is_running for process in [*other.nodes, other.proxy])


def test_up_detach_serves_through_the_proxy_and_down_stops_every_process(tmp_path: Path) -> None:
    up = subprocess.run(_up_args(tmp_path, "--detach"), capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    proxy_url, node_urls = _printed_urls(up.stdout)
    assert len(node_urls) == 3
    pids = recorded_pids(tmp_path)
    assert len(pids) == 4 and all(not _gone(pid) for pid in pids)

    auth = {"Authorization": f"Bearer {KEY}"}
    assert requests.get(f"{proxy_url}/_miroir/ready", timeout=5).status_code == 200
    created = requests.post(f"{proxy_url}/indexes", json={"uid": "dev"}, headers=auth, timeout=5)
    assert created.status_code == 202, created.text
    assert isinstance(created.json()["taskUid"], int)
    # The nodes were started with the master key too.
    assert requests.get(f"{node_urls[0]}/keys", headers=auth, timeout=5).status_code == 200

    down = subprocess.run(
        [MIROIR, "dev", "down", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert down.returncode == 0, down.stderr
    assert "stopped 4 processes" in down.stdout
    assert all(_gone(pid) for pid in pids)
    assert not any(_answers(url) for url in [proxy_url, *node_urls])
    assert not (tmp_path / STATE_FILE_NAME).exists()


def test_foreground_up_stops_everything_on_sigterm(tmp_path: Path) -> None:
    with subprocess.Popen(
        _up_args(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as up:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        proxy_url, node_urls = _printed_urls("".join(lines))
        urls = [proxy_url, *node_urls]
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) == 4, lines
        assert len(node_urls) == 3 and all(_answers(url) for url in urls)
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=30) == 0
    assert all(_gone(child.pid) for child in children)
    assert not any(_answers(url) for url in urls)


def test_foreground_up_stops_the_nodes_and_fails_when_the_proxy_dies(tmp_path: Path) -> None:
    with subprocess.Popen(
        _up_args(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as up:
        assert up.stdout is not None and up.stderr is not None
        for line in up.stdout:
            if line.startswith("Ctrl-C"):
                break
        children = psutil.Process(up.pid).children(recursive=True)
        (proxy,) = [c for c in children if any("miroir-proxy" in a for a in c.cmdline())]
        proxy.kill()
        assert up.wait(timeout=30) == 1
        assert "ProxyProcess" in up.stderr.read()
    assert all(_gone(child.pid) for child in children)


def test_several_proxies_need_a_shared_store_and_get_stable_pod_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="share a store"):
        ClusterSpec(proxies=3)
    with pytest.raises(ValueError, match="expected sqlite, redis"):
        ClusterSpec(proxies=3, store="mysql://db")
    cluster = DevCluster(ClusterSpec(nodes=4, proxies=3, store="redis", port=0, data_dir=tmp_path))
    assert cluster.redis is not None and cluster.store_url == cluster.redis.url
    assert [p.data_dir.name for p in cluster.proxies] == ["proxy", "proxy-1", "proxy-2"]
    assert [p.config["store"] for p in cluster.proxies] == [cluster.redis.url] * 3
    assert [p.config["coordination"]["pod_id"] for p in cluster.proxies] == [
        "pod-0",
        "pod-1",
        "pod-2",
    ]
    assert len({p.port for p in cluster.proxies}) == 3
    shared = DevCluster(ClusterSpec(nodes=4, proxies=2, store="redis://10.0.0.1:6379/0"))
    assert shared.redis is None
    assert [p.config["store"] for p in shared.proxies] == ["redis://10.0.0.1:6379/0"] * 2
    single = DevCluster(ClusterSpec(nodes=4))
    assert "store" not in single.proxy.config and "coordination" not in single.proxy.config


def test_up_three_proxies_on_redis_act_as_one_and_down_stops_redis_too(tmp_path: Path) -> None:
    args = _up_args(tmp_path, "--proxies", "3", "--store", "redis", "--detach")
    up = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    try:
        _check_three_pods_on_redis(tmp_path, up.stdout)
    finally:
        # Stops whatever is still recorded, also when a check above failed.
        down(tmp_path)


def _check_three_pods_on_redis(tmp_path: Path, stdout: str) -> None:
    lines = stdout.splitlines()
    proxies = [URL.findall(line)[0] for line in lines if line.startswith("Miroir proxy:")]
    (store,) = [line.split()[-1] for line in lines if line.startswith("state store:")]
    port = int(store.rsplit(":", 1)[1].split("/")[0])
    assert len(proxies) == 3
    pids = recorded_pids(tmp_path)
    # 3 proxies, 3 nodes, 1 redis-server.
    assert len(pids) == 7 and all(not _gone(pid) for pid in pids)

    auth = {"Authorization": f"Bearer {KEY}"}
    created = requests.post(f"{proxies[0]}/indexes", json={"uid": "dev"}, headers=auth, timeout=5)
    assert created.status_code == 202, created.text
    uid = created.json()["taskUid"]
    seen = requests.get(f"{proxies[2]}/tasks/{uid}", headers=auth, timeout=5)
    assert seen.status_code == 200 and seen.json()["indexUid"] == "dev"

    def coordination() -> dict[str, Any]:
        url = f"{proxies[1]}/_miroir/coordination"
        answer: dict[str, Any] = requests.get(url, headers=auth, timeout=5).json()
        return answer

    assert coordination()["podId"] == "pod-1"
    # Each pod refreshes its peer set at its heartbeat: the others appear within one.
    poll_until(
        lambda: coordination()["livePeers"] == ["pod-0", "pod-1", "pod-2"], 10, what="3 peers"
    )

    stopped = subprocess.run(
        [MIROIR, "dev", "down", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped 7 processes" in stopped.stdout
    assert all(_gone(pid) for pid in pids)
    assert not any(_answers(url) for url in proxies)
    assert not answers_ping(port)
