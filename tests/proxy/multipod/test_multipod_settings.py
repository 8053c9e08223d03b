"""Settings and searchable fields across pods (issue 11 §3): three pods on one Redis.

A field one pod's write brings is searched through every pod within the catalog's refresh
(README "Settings updates"), a shard number matches nothing through any pod, and a settings
update through one pod is verified on every node, then kept there by another pod's drift
pass.
"""

from __future__ import annotations

from miroir_proxy.cli.devcluster import DevCluster

from .conftest import create_index, eventually, http, node_http, ok, wait_task


def _hits(url: str, index: str, q: str) -> list[str]:
    answer = ok(http("POST", f"{url}/indexes/{index}/search", json={"q": q, "limit": 100}))
    return [hit["id"] for hit in answer["hits"]]


def test_a_new_field_is_searched_through_every_pod(pods: DevCluster) -> None:
    index = "mp-fields"
    create_index(pods.urls[0], index)
    first = [{"id": f"d{chr(97 + i)}", "title": "amber"} for i in range(20)]
    task = ok(http("POST", f"{pods.urls[0]}/indexes/{index}/documents", json=first), 202)
    wait_task(pods.urls[0], task["taskUid"])
    for url in pods.urls:  # every pod has now read the index's fields
        assert len(_hits(url, index, "amber")) == 20
        for shard in range(16):
            assert _hits(url, index, str(shard)) == [], (url, shard)
    late = [{"id": "late", "colour": "crimson"}]
    task = ok(http("POST", f"{pods.urls[1]}/indexes/{index}/documents", json=late), 202)
    wait_task(pods.urls[1], task["taskUid"])
    assert _hits(pods.urls[1], index, "crimson") == ["late"]
    for url in (pods.urls[0], pods.urls[2]):
        eventually(lambda url=url: _hits(url, index, "crimson") == ["late"], f"{url} sees it")


def test_an_update_through_one_pod_is_kept_by_another_pods_drift_pass(pods: DevCluster) -> None:
    index = "mp-settings"
    create_index(pods.urls[0], index)
    path = f"/indexes/{index}/settings/stop-words"
    task = ok(http("PUT", f"{pods.urls[0]}{path}", json=["kept"]), 202)
    assert wait_task(pods.urls[1], task["taskUid"])["type"] == "settingsUpdate"
    for node in pods.nodes:
        assert ok(node_http(node, "GET", path)) == ["kept"]

    changed = ok(node_http(pods.nodes[3], "PUT", path, json=["manual"]), 202)
    node_task = f"/tasks/{changed['taskUid']}"
    eventually(
        lambda: ok(node_http(pods.nodes[3], "GET", node_task))["status"] == "succeeded",
        "the manual change applied",
    )
    drift = ok(http("POST", f"{pods.urls[2]}/_miroir/maintenance/settings-drift"))
    (mine,) = [i for i in drift["indexes"] if i["indexUid"] == index]
    assert mine["nodesRepaired"] == ["n3"] and not mine["frozen"], mine
    for node in pods.nodes:
        assert ok(node_http(node, "GET", path)) == ["kept"]
