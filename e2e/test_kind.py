"""Install the chart, apply the small example, and use the cluster through its Service
with a stock Meilisearch SDK."""

from __future__ import annotations

import json
import time
from typing import Any

import helm_python as helm
import meilisearch

from .conftest import IMAGE, REPO

NAMESPACE = "miroir-system"
MASTER_KEY = "change-me-master-key-0123456789"


def _install_chart(cluster: Any) -> None:
    repository, tag = IMAGE.split(":")
    with helm.Config(namespace=NAMESPACE, kubeconfig_path=str(cluster.kubeconfig_path)) as cfg:
        cfg.install(
            str(REPO / "charts" / "miroir"),
            "miroir",
            {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"}},
            wait="watcher",
            timeout=300,
            create_namespace=True,
        )


def test_small_cluster_becomes_ready_and_serves_writes_and_searches(kind_cluster: Any) -> None:
    _install_chart(kind_cluster)
    kind_cluster.kubectl("apply", "-f", str(REPO / "examples" / "small.yaml"))
    kind_cluster.kubectl("wait", "--for=condition=Ready", "miroircluster/small", "--timeout=600s")
    listed = kind_cluster.kubectl("get", "miroirclusters")
    assert "Ready" in listed and "3/3" in listed, listed
    status = json.loads(kind_cluster.kubectl("get", "miroircluster/small", "-o", "json"))["status"]
    assert status["phase"] == "Ready"

    with kind_cluster.port_forward("service/small", 7700) as port:
        client = meilisearch.Client(f"http://127.0.0.1:{port}", MASTER_KEY, timeout=30)
        task = client.index("movies").add_documents(
            [{"id": i, "title": f"movie {i}"} for i in range(200)], primary_key="id"
        )
        client.wait_for_task(task.task_uid, timeout_in_ms=60_000)
        deadline = time.monotonic() + 60
        hits: dict[str, Any] = {}
        while time.monotonic() < deadline:
            hits = client.index("movies").search("movie 42")
            if hits["hits"]:
                break
            time.sleep(1)
        assert hits["hits"][0]["id"] == 42
        assert client.index("movies").get_stats().number_of_documents == 200


def _patch_and_settle(cluster: Any, patch: dict[str, Any], generation: int) -> dict[str, Any]:
    """`kubectl patch` the spec, wait until the operator handled that generation and the
    cluster is Ready again; the status."""
    cluster.kubectl("patch", "miroircluster/small", "--type=merge", "-p", json.dumps(patch))
    cluster.kubectl(
        "wait",
        f"--for=jsonpath={{.status.observedGeneration}}={generation}",
        "miroircluster/small",
        "--timeout=600s",
    )
    cluster.kubectl("wait", "--for=condition=Ready", "miroircluster/small", "--timeout=900s")
    return dict(json.loads(cluster.kubectl("get", "miroircluster/small", "-o", "json"))["status"])


def test_the_cluster_adds_a_group_and_drains_a_node_online(kind_cluster: Any) -> None:
    """Continues the cluster of the test above (its 200 documents)."""
    status = _patch_and_settle(kind_cluster, {"spec": {"replicaGroups": {"count": 2}}}, 2)
    assert [(g["id"], g["state"]) for g in status["groups"]] == [
        ("g0", "active"),
        ("g1", "active"),
    ]
    status = _patch_and_settle(kind_cluster, {"spec": {"replicaGroups": {"nodesPerGroup": 2}}}, 3)
    assert status["nodes"] == "4/4", status
    sts = json.loads(kind_cluster.kubectl("get", "statefulset/small-g0", "-o", "json"))
    assert sts["spec"]["replicas"] == 2
    with kind_cluster.port_forward("service/small", 7700) as port:
        client = meilisearch.Client(f"http://127.0.0.1:{port}", MASTER_KEY, timeout=30)
        assert client.index("movies").get_stats().number_of_documents == 200
        assert client.index("movies").search("movie 42")["hits"][0]["id"] == 42
