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
