"""Three proxy processes on one Redis act as one Miroir: one task registry (same uids
everywhere, unique and increasing under concurrent writes to every pod), one topology (a
change through one pod is routed with by all within 2 s), idempotent retries that land on
another pod, and read-your-writes through another pod.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import requests

from miroir_proxy.cli.devcluster import DevCluster

from .conftest import (
    DEADLINE_S,
    MASTER_KEY,
    create_index,
    eventually,
    figure,
    http,
    node_http,
    node_task_total,
    ok,
    wait_task,
)

TOPOLOGY_DEADLINE_S = 2.0
WRITERS_PER_POD = 5
WRITES_PER_WRITER = 10
SESSION = {"X-Miroir-Session": "client-42"}


def _writer(url: str, index: str, first_id: int) -> list[int]:
    """Sequential small writes from one client; the task uids it was given, in order."""
    uids = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {MASTER_KEY}"
        for doc_id in range(first_id, first_id + WRITES_PER_WRITER):
            response = session.post(
                f"{url}/indexes/{index}/documents", json=[{"id": doc_id}], timeout=10
            )
            assert response.status_code == 202, response.text
            uids.append(int(response.json()["taskUid"]))
    return uids


def _tasks(url: str, uids: list[int]) -> dict[int, dict[str, Any]]:
    params = {"uids": ",".join(map(str, uids)), "limit": len(uids) + 1}
    answer = ok(http("GET", f"{url}/tasks", params=params))
    return {task["uid"]: task for task in answer["results"]}


def test_tasks_have_one_uid_sequence_shared_by_every_pod(pods: DevCluster) -> None:
    index = "mp-uids"
    create_index(pods.urls[0], index)
    before = int(ok(http("GET", f"{pods.urls[1]}/tasks", params={"limit": 1}))["results"][0]["uid"])
    writers = [
        (url, WRITES_PER_WRITER * (p * WRITERS_PER_POD + w))
        for p, url in enumerate(pods.urls)
        for w in range(WRITERS_PER_POD)
    ]
    with ThreadPoolExecutor(max_workers=len(writers)) as pool:
        sequences = list(pool.map(lambda args: _writer(args[0], index, args[1]), writers))

    uids = [uid for sequence in sequences for uid in sequence]
    assert len(set(uids)) == len(uids) == len(pods.urls) * WRITERS_PER_POD * WRITES_PER_WRITER
    assert min(uids) > before
    for sequence in sequences:
        assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
    # Every pod lists the same records under the same uids, whichever pod created them.
    listings = [_tasks(url, uids) for url in pods.urls]
    assert set(listings[0]) == set(uids)
    for listing in listings[1:]:
        assert {u: (t["indexUid"], t["type"], t["enqueuedAt"]) for u, t in listing.items()} == {
            u: (t["indexUid"], t["type"], t["enqueuedAt"]) for u, t in listings[0].items()
        }
    # Like Meilisearch's, `enqueuedAt` follows the uid order, whichever pod enqueued.
    enqueued = [listings[0][uid]["enqueuedAt"] for uid in sorted(uids)]
    assert enqueued == sorted(enqueued)
    for uid in (min(uids), max(uids)):
        wait_task(pods.urls[2], uid)
    search = ok(http("POST", f"{pods.urls[1]}/indexes/{index}/search", json={"limit": 0}))
    assert search["estimatedTotalHits"] == len(uids)


def _on_epoch(url: str, epoch: int) -> bool:
    return bool(ok(http("GET", f"{url}/_miroir/topology"))["epoch"] == epoch)


def test_a_topology_change_through_one_pod_is_used_by_all_within_2s(pods: DevCluster) -> None:
    index = "mp-topology"
    create_index(pods.urls[0], index)
    original = ok(http("GET", f"{pods.urls[1]}/_miroir/topology"))
    epoch = original["epoch"]
    g1 = {
        node["id"] for group in original["groups"] if group["id"] == "g1" for node in group["nodes"]
    }
    nodes = pods.node_ids()
    counts = {node_id: node_task_total(node) for node_id, node in nodes.items()}
    # Drop group g1: writes must reach only g0's nodes from now on, through every pod.
    change = {**original, "groups": [g for g in original["groups"] if g["id"] != "g1"]}
    published = ok(http("PUT", f"{pods.urls[1]}/_miroir/topology", json=change))
    published_at = time.monotonic()
    try:
        assert published["epoch"] == epoch + 1
        for url in pods.urls:
            took = eventually(
                partial(_on_epoch, url, epoch + 1),
                f"{url} routes with epoch {epoch + 1}",
                TOPOLOGY_DEADLINE_S,
            )
            figure(f"epoch_seen_s_{url}", round(time.monotonic() - published_at, 3))
            assert time.monotonic() - published_at <= TOPOLOGY_DEADLINE_S, took
        task = ok(http("POST", f"{pods.urls[2]}/indexes/{index}/documents", json=[{"id": 1}]), 202)
        wait_task(pods.urls[0], task["taskUid"])
        grown = {
            node_id: node_task_total(node) - counts[node_id] for node_id, node in nodes.items()
        }
        assert all(grown[node_id] == 0 for node_id in g1), grown
        # One document, one shard: its RF=2 replicas in g0 got it.
        assert sum(grown.values()) == 2, grown
        hits = ok(http("POST", f"{pods.urls[0]}/indexes/{index}/search", json={"q": ""}))["hits"]
        assert hits == [{"id": 1}]
    finally:
        restore = {**original, "epoch": epoch + 1}
        ok(http("PUT", f"{pods.urls[0]}/_miroir/topology", json=restore))
        for url in pods.urls:
            eventually(
                partial(_on_epoch, url, epoch + 2),
                f"{url} back on the original layout",
            )


def _write(url: str, index: str, docs: list[dict[str, Any]], key: str | None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return http("POST", f"{url}/indexes/{index}/documents", json=docs, headers=headers)


def _footprint(pods: DevCluster) -> tuple[int, list[int]]:
    """(Miroir's task count, every node's task count)."""
    miroir = ok(http("GET", f"{pods.urls[0]}/tasks", params={"limit": 1}))["total"]
    return int(miroir), [node_task_total(node) for node in pods.nodes]


def test_a_retry_on_another_pod_gets_the_original_task_without_touching_nodes(
    pods: DevCluster,
) -> None:
    index = "mp-idempotency"
    create_index(pods.urls[0], index)
    docs = [{"id": 1, "title": "Dune"}, {"id": 2, "title": "Emma"}]
    original = ok(_write(pods.urls[0], index, docs, "retry-1"), 202)
    wait_task(pods.urls[0], original["taskUid"])
    footprint = _footprint(pods)

    for url in pods.urls[1:]:
        assert ok(_write(url, index, docs, "retry-1"), 202) == original
    assert _footprint(pods) == footprint
    reused = _write(pods.urls[2], index, [{"id": 3}], "retry-1")
    assert reused.status_code == 409
    assert reused.json()["code"] == "miroir_idempotency_key_reused"
    # Without the key the same retry is a new write: what the key saves is real.
    fresh = ok(_write(pods.urls[1], index, docs, None), 202)
    assert fresh["taskUid"] != original["taskUid"]
    wait_task(pods.urls[1], fresh["taskUid"])
    assert _footprint(pods) != footprint


def _hit_ids(url: str, index: str, headers: dict[str, str]) -> list[Any]:
    body = {"q": "", "filter": "id = 0", "limit": 5}
    answer = ok(http("POST", f"{url}/indexes/{index}/search", json=body, headers=headers))
    return [hit["id"] for hit in answer["hits"]]


def test_a_session_write_is_seen_by_the_next_search_through_another_pod(pods: DevCluster) -> None:
    index = "mp-session"
    create_index(pods.urls[0], index)
    settings = ok(
        http(
            "PATCH",
            f"{pods.urls[0]}/indexes/{index}/settings",
            json={"filterableAttributes": ["id"]},
        ),
        202,
    )
    wait_task(pods.urls[0], settings["taskUid"])
    # A big batch keeps every node indexing, so the small write queued behind it is not
    # searchable yet when the next request arrives: the race the session closes is real.
    backlog = [{"id": i, "text": f"filler words number {i}"} for i in range(1, 5_001)]
    ok(http("POST", f"{pods.urls[0]}/indexes/{index}/documents", json=backlog), 202)
    ok(
        http(
            "POST",
            f"{pods.urls[0]}/indexes/{index}/documents",
            json=[{"id": 0, "text": "mine"}],
            headers=SESSION,
        ),
        202,
    )
    assert _hit_ids(pods.urls[1], index, {}) == []
    started = time.monotonic()
    assert _hit_ids(pods.urls[1], index, SESSION) == [0]
    figure("session_wait_s", round(time.monotonic() - started, 3))
    assert _hit_ids(pods.urls[2], index, SESSION) == [0]


def _holding(pods: DevCluster, index: str, doc_id: int) -> list[int]:
    return [
        i
        for i, node in enumerate(pods.nodes)
        if node_http(node, "GET", f"/indexes/{index}/documents/{doc_id}").status_code == 200
    ]


def test_a_delete_through_one_pod_while_a_replica_is_down_is_kept_by_a_pass_on_another(
    pods: DevCluster,
) -> None:
    """The tombstone lives in the shared store: the pass that meets the returning replica
    runs on another pod than the delete did, and still deletes instead of restoring."""
    index = "mp-antientropy"
    create_index(pods.urls[0], index)
    docs = [{"id": i, "title": f"t{i}"} for i in range(30)]
    task = ok(http("POST", f"{pods.urls[0]}/indexes/{index}/documents", json=docs), 202)
    wait_task(pods.urls[0], task["taskUid"])
    replica = pods.nodes[_holding(pods, index, 4)[0]]
    replica.stop()
    try:
        deleted = ok(http("DELETE", f"{pods.urls[1]}/indexes/{index}/documents/4"), 202)
        wait_task(pods.urls[1], deleted["taskUid"])
    finally:
        replica.start()
        replica.wait_healthy(DEADLINE_S)
    assert len(_holding(pods, index, 4)) == 1
    started = ok(http("POST", f"{pods.urls[2]}/_miroir/maintenance/anti-entropy"), 202)
    record: dict[str, Any] = {}

    def finished() -> bool:
        url = f"{pods.urls[2]}/_miroir/operations/{started['operation']}"
        record.update(ok(http("GET", url)))
        return record["state"] != "running"

    eventually(finished, "the anti-entropy pass finished", timeout_s=60)
    assert record["state"] == "succeeded", record
    # The pass covers every index of the module's cluster, which other tests left as they did.
    assert record["progress"]["deleted"] >= 1
    assert _holding(pods, index, 4) == []
    assert len(_holding(pods, index, 5)) == 4
