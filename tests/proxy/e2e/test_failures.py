"""Nodes die under a running proxy (6 nodes, RG=2, RF=2, S=16): what clients see.

Each test breaks a private cluster, so the clusters are never shared. Victims are chosen
from the proxy's own shard map, and every expectation (which shards go missing, which
replicas a write misses) is derived from that map rather than hard-coded.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import meilisearch
import requests

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.core.hashing import shard_of

from .conftest import (
    SHARDS,
    StartClusters,
    eventually,
    http,
    id_in_shard,
    node_http,
    proxy_sees_down,
    sdk,
    shard_map,
    wait_done,
)

UID = "e2e_failures"
COUNT = 200
COLORS = ("red", "green", "blue")
DEGRADED = "X-Miroir-Degraded"
DOCUMENTS: list[dict[str, Any]] = [
    {"id": i, "title": f"item {i}", "color": COLORS[i % 3]} for i in range(COUNT)
]


def load(cluster: DevCluster) -> meilisearch.Client:
    client = sdk(cluster.url)
    client.create_index(UID, {"primaryKey": "id"})
    # Waited for: a node killed while a settings update is verified freezes the index's
    # writes (operations.settingsync), which is not what these tests look at.
    settings = client.index(UID).update_filterable_attributes(["color"])
    added = client.index(UID).add_documents(DOCUMENTS)
    for task in (settings, added):
        assert wait_done(client, task.task_uid).status == "succeeded"
    return client


def kill(cluster: DevCluster, node_ids: set[str]) -> None:
    processes = cluster.node_ids()
    with ThreadPoolExecutor(len(node_ids)) as pool:
        list(pool.map(lambda node_id: processes[node_id].kill(), node_ids))


def search(cluster: DevCluster, **body: Any) -> requests.Response:
    return http("POST", f"{cluster.url}/indexes/{UID}/search", json=body)


def add(cluster: DevCluster, documents: list[dict[str, Any]]) -> requests.Response:
    return http("POST", f"{cluster.url}/indexes/{UID}/documents", json=documents)


def assert_complete_searches(cluster: DevCluster, total: int) -> None:
    """Enough searches that round robin sends some to each group: all complete, none degraded."""
    for _ in range(4):
        answer = search(cluster, q="", limit=0, facets=["color"])
        assert answer.status_code == 200, answer.text
        assert DEGRADED not in answer.headers, answer.headers[DEGRADED]
        assert answer.json()["estimatedTotalHits"] == total
        assert sum(answer.json()["facetDistribution"]["color"].values()) == total


def test_one_dead_node_at_rf2_leaves_searches_and_reads_complete(clusters: StartClusters) -> None:
    (cluster,) = clusters()
    client = load(cluster)
    held = shard_map(cluster).groups["g0"]
    kill(cluster, {"n0"})
    # At once (the proxy learns from refused connections) and after the prober noticed.
    assert_complete_searches(cluster, COUNT)
    proxy_sees_down(cluster, {"n0"})
    assert_complete_searches(cluster, COUNT)
    on_victim = [d for d in DOCUMENTS if "n0" in held[shard_of(d["id"], SHARDS)]]
    assert on_victim
    index = client.index(UID)
    assert [dict(index.get_document(d["id"])) for d in on_victim] == on_victim

    # A write still succeeds (g1 has a quorum for every shard) and names the missed replica,
    # whose batch is kept as a hint (hinted handoff) for when it returns.
    new: list[dict[str, Any]] = [{"id": COUNT + i, "color": "red"} for i in range(20)]
    answer = add(cluster, new)
    assert answer.status_code == 202, answer.text
    touched = {shard_of(d["id"], SHARDS) for d in new}
    expected = {f"g0/{s}/n0:hinted" for s in touched if "n0" in held[s]}
    assert expected and set(answer.headers[DEGRADED].split(",")) == expected
    assert wait_done(client, answer.json()["taskUid"]).status == "succeeded"
    assert_complete_searches(cluster, COUNT + len(new))


def test_a_hung_node_is_retried_on_another_replica(clusters: StartClusters) -> None:
    (cluster,) = clusters()
    load(cluster)
    hung = cluster.node_ids()["n4"]
    hung.pause()
    try:
        # Before the prober notices, a search that reaches n4 waits for the read timeout
        # and is answered by the other replicas.
        assert_complete_searches(cluster, COUNT)
        proxy_sees_down(cluster, {"n4"})
        started = time.monotonic()
        assert_complete_searches(cluster, COUNT)
        assert time.monotonic() - started < 1.0, "a known-dead node still costs a timeout"
    finally:
        hung.resume()


def test_a_dead_group_leaves_searches_and_writes_to_the_other(clusters: StartClusters) -> None:
    (cluster,) = clusters()
    client = load(cluster)
    smap = shard_map(cluster)
    kill(cluster, smap.group_nodes("g0"))
    assert_complete_searches(cluster, COUNT)

    new: list[dict[str, Any]] = [
        {"id": COUNT + i, "title": f"late {i}", "color": "red"} for i in range(10)
    ]
    answer = add(cluster, new)
    assert answer.status_code == 202, answer.text
    missed = set(answer.headers[DEGRADED].split(","))
    touched = {shard_of(d["id"], SHARDS) for d in new}
    # Every g0 replica is hinted: g1's quorum made the write, g0 catches up when it returns.
    assert missed == {f"g0/{s}/{n}:hinted" for s in touched for n in smap.groups["g0"][s]}
    task = wait_done(client, answer.json()["taskUid"])
    assert task.status == "succeeded", task
    assert_complete_searches(cluster, COUNT + len(new))
    assert dict(client.index(UID).get_document(COUNT + 3)) == new[3]


def test_a_shard_without_live_replicas_refuses_writes_and_degrades_reads(
    clusters: StartClusters,
) -> None:
    (cluster,) = clusters()
    client = load(cluster)
    smap = shard_map(cluster)
    victims = set(smap.holders(0))
    dead = {s for s in range(SHARDS) if set(smap.holders(s)) <= victims}
    alive_docs = [d for d in DOCUMENTS if shard_of(d["id"], SHARDS) not in dead]
    kill(cluster, victims)

    refused = add(cluster, [{"id": id_in_shard(0, start=COUNT), "color": "red"}])
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "miroir_no_quorum"

    partial = search(cluster, q="", limit=0, facets=["color"])
    assert partial.status_code == 200, partial.text
    assert partial.headers[DEGRADED] == "shards=" + ",".join(str(s) for s in sorted(dead))
    assert partial.json()["estimatedTotalHits"] == len(alive_docs)
    ready = http("GET", f"{cluster.url}/_miroir/ready", key=None)
    assert ready.status_code == 503
    assert set(ready.json()["uncoveredShards"]) == dead

    # Same state, `error` policy: the restarted proxy keeps its tasks (SQLite) too.
    cluster.proxy.config["unavailable_shards"] = "error"
    cluster.proxy.restart()
    refusing = search(cluster, q="")
    assert refusing.status_code == 503, refusing.text
    assert refusing.json()["code"] == "miroir_shard_unavailable"
    assert client.get_task(2).status == "succeeded"


def test_a_task_whose_node_dies_mid_task_still_finishes(clusters: StartClusters) -> None:
    (cluster,) = clusters()
    client = load(cluster)
    victim = cluster.node_ids()["n0"]
    # A big batch straight on the victim keeps its queue busy, so our task is still enqueued
    # there when the node dies.
    ballast = [{"id": i, "text": f"ballast words {i}"} for i in range(5_000)]
    assert node_http(victim, "POST", "/indexes/ballast/documents", json=ballast).ok
    held = shard_map(cluster).groups["g0"]
    new: list[dict[str, Any]] = [
        {"id": i, "title": "late", "color": "blue"}
        for i in range(COUNT, COUNT + 400)
        if "n0" in held[shard_of(i, SHARDS)]
    ][:20]
    answer = add(cluster, new)
    assert answer.status_code == 202, answer.text
    killed_at = time.time()
    victim.kill()

    task = wait_done(client, answer.json()["taskUid"])
    assert task.status == "succeeded", task
    assert dict(client.index(UID).get_document(new[0]["id"])) == new[0]

    # The node really had not finished our task when it died.
    victim.restart()
    eventually(
        lambda: _last_task(victim)["status"] not in ("enqueued", "processing"),
        "the restarted node settles",
    )
    last = _last_task(victim)
    finished = last.get("finishedAt")
    assert finished is None or _epoch(finished) > killed_at, last


def _last_task(node: Any) -> dict[str, Any]:
    answer = node_http(node, "GET", "/tasks", params={"indexUids": UID, "limit": 1})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["results"][0]
    return result


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
