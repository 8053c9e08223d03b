"""A dump import across pods: two `miroir-proxy` processes on one redis-server that share a
spool directory (what a ReadWriteMany volume gives pods), four devnodes (RG=2, RF=2, S=8).
The pod that received the dump is killed mid-import; the other pod takes over the
operation and the chunks, each from its cursor."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import poll_until
from miroir_proxy.operations.dumpimport import IN_FLIGHT_BATCHES

from ..dumpkit import DumpIndex, write_dump
from ..test_dump_import import (
    MASTER_KEY,
    NODE_KEY,
    RF,
    RG,
    movie,
    node_ids,
    received_copies,
)
from .conftest import http, ok

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEADLINE_S = 400.0
PAGE = 500


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[DevCluster]:
    spec = ClusterSpec(
        nodes=4,
        replica_groups=RG,
        replication_factor=RF,
        shards=8,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=tmp_path / "cluster",
        proxies=2,
        store="redis",
        proxy_settings={
            "health": {"interval_ms": 200, "timeout_ms": 1_000, "unhealthy_after": 3},
            "coordination": {
                "peer_heartbeat_ms": 200,
                "peer_ttl_ms": 1_000,
                "lease_ttl_ms": 1_000,
                "lease_renew_ms": 300,
                "job_claim_ttl_ms": 1_000,
                "job_concurrency": 1,
            },
            "operations": {
                "dump_spool_dir": str(tmp_path / "shared-spool"),
                "dump_chunk_documents": 2_000,
                "copy_page_size": PAGE,
                "copy_docs_per_s": 1_500,
            },
        },
    )
    cluster = DevCluster(spec)
    cluster.start()
    yield cluster
    cluster.stop()


def test_the_other_pod_finishes_an_import_whose_receiving_pod_died(
    pods: DevCluster, tmp_path: Path
) -> None:
    count, uid = 12_000, "pods_movies"
    dump = write_dump(
        tmp_path / "pods.dump", [DumpIndex(uid, "id", (movie(i) for i in range(count)))]
    )
    receiver, survivor = pods.proxies
    with dump.open("rb") as body:
        started = ok(
            http(
                "POST",
                f"{receiver.url}/_miroir/dumps/import",
                key=MASTER_KEY,
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            ),
            202,
        )
    op_id = started["operation"]
    view: dict[str, Any] = {}

    def progress() -> int:
        view.update(ok(http("GET", f"{survivor.url}/_miroir/operations/{op_id}", key=MASTER_KEY)))
        return int(view["progress"].get("done", 0))

    poll_until(lambda: progress() >= 2_500, DEADLINE_S, what="the import is midway")
    assert view["state"] == "running" and progress() < count, view
    receiver.kill()

    def ended() -> bool:
        progress()
        return view["state"] != "running"

    poll_until(ended, DEADLINE_S, what="the import ends on the surviving pod")
    assert view["state"] == "succeeded", view["error"]
    assert view["progress"]["done"] == count
    copies = Counter(doc_id for node in pods.nodes for doc_id in node_ids(node, uid, "id"))
    assert len(copies) == count
    assert set(copies.values()) == {RF * RG}
    # Each pod ran one chunk at a time: its batches in flight are all that went twice.
    resent = received_copies(pods, uid) - count * RF * RG
    assert 0 <= resent <= (IN_FLIGHT_BATCHES + 1) * PAGE * RF * RG, resent
