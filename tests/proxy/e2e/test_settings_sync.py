"""Settings that stay identical on every node (issue 11 §3), through the public API.

A two-node cluster (RG=1, RF=1, S=4), real processes: a settings update is verified on every
node or rolled back, a node that fails one leaves no partial settings and freezes writes
until the drift pass puts it back, a manual change on one node is undone by the drift pass,
and no `_miroir_*` field is ever searched.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .conftest import (
    FAST_FAILURE,
    MASTER_KEY,
    NODE_KEY,
    eventually,
    http,
    node_http,
    sdk,
    start_clusters,
    wait_done,
)

SHARDS = 4
WORDS = ["amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron"]


def _pair(data_dir: Path, **sync: Any) -> DevCluster:
    spec = ClusterSpec(
        nodes=2,
        replica_groups=1,
        replication_factor=1,
        shards=SHARDS,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=data_dir,
        proxy_settings={**FAST_FAILURE, "settings_sync": sync},
    )
    (cluster,) = start_clusters([spec])
    return cluster


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[DevCluster]:
    """Two nodes without the periodic drift pass (the tests run it)."""
    cluster = _pair(tmp_path, drift_enabled=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def watched_pair(tmp_path: Path) -> Iterator[DevCluster]:
    """Two nodes whose proxy runs the drift pass every 200 ms."""
    cluster = _pair(tmp_path, drift_interval_ms=200)
    yield cluster
    cluster.stop()


def _ok(answer: requests.Response) -> Any:
    assert answer.ok, answer.text
    return answer.json()


def _task(cluster: DevCluster, answer: requests.Response) -> Any:
    return wait_done(sdk(cluster.url), _ok(answer)["taskUid"])


def _succeeds(cluster: DevCluster, answer: requests.Response) -> None:
    task = _task(cluster, answer)
    assert task.status == "succeeded", task


def _documents(count: int) -> list[dict[str, Any]]:
    """Documents whose ids and values hold no digit."""
    letters = string.ascii_lowercase
    return [
        {"id": f"d{letters[i // 26]}{letters[i % 26]}", "title": WORDS[i % len(WORDS)]}
        for i in range(count)
    ]


def _write(cluster: DevCluster, uid: str, documents: list[dict[str, Any]]) -> None:
    _succeeds(cluster, http("POST", f"{cluster.url}/indexes/{uid}/documents", json=documents))


def _hits(cluster: DevCluster, uid: str, q: str) -> list[dict[str, Any]]:
    body = {"q": q, "limit": 100}
    answer = _ok(http("POST", f"{cluster.url}/indexes/{uid}/search", json=body))
    hits: list[dict[str, Any]] = answer["hits"]
    return hits


def _stop_words(node: NodeProcess, uid: str) -> Any:
    return _ok(node_http(node, "GET", f"/indexes/{uid}/settings/stop-words"))


def _settings_path(cluster: DevCluster, uid: str) -> str:
    return f"{cluster.url}/indexes/{uid}/settings"


def test_a_shard_number_matches_no_document(pair: DevCluster) -> None:
    uid = "sync_searchable"
    _write(pair, uid, _documents(40))
    found = _hits(pair, uid, "grove")
    assert len(found) == 5 and {h["title"] for h in found} == {"grove"}
    for shard in range(SHARDS):
        assert _hits(pair, uid, str(shard)) == [], f"q={shard}"
    # The client still sees its own choice.
    assert _ok(http("GET", _settings_path(pair, uid)))["searchableAttributes"] == ["*"]
    # A field first seen later is searchable once its write succeeded; `*` in the client's
    # attributesToSearchOn means the client's fields, never Miroir's.
    _write(pair, uid, [{"id": "late", "colour": "crimson", "note": "two"}])
    assert [h["id"] for h in _hits(pair, uid, "crimson")] == ["late"]
    body = {"q": "2", "attributesToSearchOn": ["*"]}
    answer = _ok(http("POST", f"{pair.url}/indexes/{uid}/search", json=body))
    assert answer["hits"] == []
    # Nor can a client make one searchable.
    for refused in (
        http("PUT", f"{_settings_path(pair, uid)}/searchable-attributes", json=["_miroir_shard"]),
        http("PATCH", _settings_path(pair, uid), json={"searchableAttributes": ["_miroir_x"]}),
    ):
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "invalid_settings_searchable_attributes"


def test_an_update_is_on_every_node_when_its_task_succeeded(pair: DevCluster) -> None:
    uid = "sync_update"
    _write(pair, uid, _documents(4))
    answer = http("PATCH", _settings_path(pair, uid), json={"stopWords": ["the", "a"]})
    assert answer.status_code == 202, answer.text
    _succeeds(pair, answer)
    for node in pair.nodes:
        assert _stop_words(node, uid) == ["a", "the"]


def test_a_stopped_node_refuses_the_update_and_no_node_keeps_it(pair: DevCluster) -> None:
    uid = "sync_refused"
    _write(pair, uid, _documents(4))
    _succeeds(pair, http("PATCH", _settings_path(pair, uid), json={"stopWords": ["old"]}))
    pair.nodes[1].stop()
    answer = http("PATCH", _settings_path(pair, uid), json={"stopWords": ["new"]})
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "miroir_node_unavailable"
    assert _stop_words(pair.nodes[0], uid) == ["old"]
    # A node that is merely down is not drift: the pass does not freeze the index for it.
    drift = _ok(http("POST", f"{pair.url}/_miroir/maintenance/settings-drift"))
    (mine,) = [i for i in drift["indexes"] if i["indexUid"] == uid]
    assert not mine["frozen"] and "n1" in mine["skipped"], mine
    pair.nodes[1].restart()
    assert _stop_words(pair.nodes[1], uid) == ["old"]


def test_a_node_lost_mid_update_rolls_back_freezes_and_the_drift_pass_heals(
    pair: DevCluster,
) -> None:
    uid = "sync_lost"
    _write(pair, uid, _documents(4))
    _succeeds(pair, http("PATCH", _settings_path(pair, uid), json={"stopWords": ["old"]}))
    answer = http("PATCH", _settings_path(pair, uid), json={"stopWords": ["new"]})
    assert answer.status_code == 202, answer.text
    pair.nodes[1].kill()  # it accepted the update; whether it applied it is unknown
    task = _task(pair, answer)
    assert task.status == "failed", task
    assert task.error["code"] == "miroir_settings_frozen", task.error
    assert _stop_words(pair.nodes[0], uid) == ["old"]

    frozen = http("POST", f"{pair.url}/indexes/{uid}/documents", json=[{"id": "x"}])
    assert frozen.status_code == 503, frozen.text
    error = frozen.json()
    assert error["code"] == "miroir_settings_frozen"
    assert set(error) == {"message", "code", "type", "link"} and error["type"] == "system"

    pair.nodes[1].restart()
    eventually(lambda: http("GET", f"{pair.url}/health").ok, "proxy up")

    def healed() -> bool:
        drift = http("POST", f"{pair.url}/_miroir/maintenance/settings-drift")
        assert drift.status_code == 200, drift.text
        mine = [i for i in drift.json()["indexes"] if i["indexUid"] == uid]
        return bool(mine) and not mine[0]["frozen"]

    eventually(healed, "the drift pass repairs node 1 and unfreezes the index")
    for node in pair.nodes:
        assert _stop_words(node, uid) == ["old"]
    _write(pair, uid, [{"id": "after", "title": "zephyr"}])


def test_a_manual_change_on_one_node_is_put_back_by_the_drift_pass(pair: DevCluster) -> None:
    uid = "sync_drift"
    _write(pair, uid, _documents(4))
    _succeeds(pair, http("PATCH", _settings_path(pair, uid), json={"stopWords": ["kept"]}))
    changed = node_http(pair.nodes[1], "PUT", f"/indexes/{uid}/settings/stop-words", json=["x"])
    assert changed.status_code == 202, changed.text
    eventually(lambda: _stop_words(pair.nodes[1], uid) == ["x"], "the manual change applied")

    drift = http("POST", f"{pair.url}/_miroir/maintenance/settings-drift")
    assert drift.status_code == 200, drift.text
    (mine,) = [i for i in drift.json()["indexes"] if i["indexUid"] == uid]
    assert mine["nodesRepaired"] == ["n1"] and not mine["frozen"]
    for node in pair.nodes:
        assert _stop_words(node, uid) == ["kept"]


def test_the_periodic_pass_puts_back_a_node_restored_from_old_settings(
    watched_pair: DevCluster,
) -> None:
    uid = "sync_periodic"
    _write(watched_pair, uid, _documents(4))
    answer = http("PATCH", _settings_path(watched_pair, uid), json={"stopWords": ["kept"]})
    _succeeds(watched_pair, answer)
    # What a node restored from an old volume holds: the settings before the update.
    reset = node_http(watched_pair.nodes[0], "DELETE", f"/indexes/{uid}/settings/stop-words")
    assert reset.status_code == 202, reset.text
    node_task = f"/tasks/{reset.json()['taskUid']}"
    eventually(
        lambda: _ok(node_http(watched_pair.nodes[0], "GET", node_task))["status"] == "succeeded",
        "node 0 applied the reset",
    )
    eventually(
        lambda: _stop_words(watched_pair.nodes[0], uid) == ["kept"],
        "the periodic drift pass repairs node 0",
    )


def test_a_swap_moves_the_intended_settings_with_the_indexes(pair: DevCluster) -> None:
    first, second = "sync_swap_a", "sync_swap_b"
    for uid, words in ((first, ["alpha"]), (second, ["beta"])):
        _write(pair, uid, _documents(4))
        _succeeds(pair, http("PATCH", _settings_path(pair, uid), json={"stopWords": words}))
    body = [{"indexes": [first, second]}]
    _succeeds(pair, http("POST", f"{pair.url}/swap-indexes", json=body))
    drift = _ok(http("POST", f"{pair.url}/_miroir/maintenance/settings-drift"))
    mine = {i["indexUid"]: i for i in drift["indexes"] if i["indexUid"] in (first, second)}
    assert sorted(mine) == [first, second]
    assert all(not i.get("nodesRepaired") and not i["frozen"] for i in mine.values()), mine
    for node in pair.nodes:
        assert _stop_words(node, first) == ["beta"]
        assert _stop_words(node, second) == ["alpha"]
