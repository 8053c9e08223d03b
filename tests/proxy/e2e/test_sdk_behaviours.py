"""SDK calls that worked on one node and broke through Miroir (issue 12 §2), each made with
the official `meilisearch` client against the proxy and against one devnode.

Times and uids legitimately differ and are dropped or compared in shape only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import meilisearch
import pytest

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .conftest import node_http, sdk, wait_done
from .parity_data import Targets, both, error_of, load, make_documents

UID = "e2e_sdk"
COUNT = 60
DOCUMENTS = make_documents(COUNT)
# Meilisearch prints a step's time as Rust's `Duration` debug form; the devnode as `1.23ms`.
DURATION = re.compile(r"^\d+(\.\d+)?(ns|µs|ms|s)$")


@pytest.fixture(scope="module")
def targets(e2e_cluster: DevCluster, devnode: NodeProcess, master_key: str) -> Targets:
    pair = {"proxy": sdk(e2e_cluster.url, master_key), "node": sdk(devnode.url, master_key)}
    both(pair, lambda client: load(client, UID, DOCUMENTS))
    return pair


def _performance(answer: dict[str, Any]) -> Any:
    details = answer.get("performanceDetails")
    if details is None:
        return None
    assert all(DURATION.match(value) for value in details.values()), details
    return sorted(details)


def test_show_performance_details_on_search_and_multi_search(targets: Targets) -> None:
    def ask(client: meilisearch.Client) -> Any:
        index = client.index(UID)
        single = index.search("amber", {"showPerformanceDetails": True, "limit": 2})
        plain = index.search("amber", {"limit": 2})
        multi = client.multi_search(
            [
                {"indexUid": UID, "q": "amber", "showPerformanceDetails": True, "limit": 1},
                {"indexUid": UID, "q": "birch", "limit": 1},
            ]
        )["results"]
        return [_performance(a) for a in (single, plain, *multi)]

    proxy, node = both(targets, ask)
    assert node[0] is not None and node[1] is None
    assert proxy == node


def test_tasks_deleted_by_uid_are_gone(targets: Targets) -> None:
    """The SDKs delete a write's task right after sending the write: a node deletes it once
    it has run (a deletion waits for the task being processed); so must Miroir."""

    def ask(client: meilisearch.Client) -> Any:
        index = client.index("e2e_sdk_deleted")
        kept = wait_done(client, index.update_ranking_rules(["words"]).task_uid)
        seen = []
        for i in range(3):
            written = index.add_documents([{"id": i}])
            deletion = client.delete_tasks({"uids": str(written.task_uid)})
            deleted = wait_done(client, deletion.task_uid)
            gone = error_of(lambda uid=written.task_uid: client.get_task(uid))
            seen.append((deleted.status, deleted.details["deletedTasks"], gone))
        still = client.get_task(kept.uid).status
        wait_done(client, client.delete_index("e2e_sdk_deleted").task_uid)
        return seen, still

    proxy, node = both(targets, ask)
    assert node == ([("succeeded", 1, (404, "task_not_found", "invalid_request"))] * 3, "succeeded")
    assert proxy == node


def test_listing_documents_with_offset_and_fields(targets: Targets) -> None:
    def ask(client: meilisearch.Client) -> Any:
        index = client.index(UID)
        found = []
        for parameters in (
            {"offset": 5, "limit": 4, "fields": ["id", "title"]},
            {"offset": 0, "limit": 3, "fields": ["rank"]},
            {"offset": 2, "limit": 2, "fields": ["id", "color"], "filter": "color = red"},
        ):
            results = index.get_documents(dict(parameters)).results
            found.append(sorted(sorted(dict(d)) for d in results))
        raw = client.http.get(f"indexes/{UID}/documents?offset=7&limit=3&fields=id,color")
        found.append(sorted(sorted(d) for d in raw["results"]))
        return found

    proxy, node = both(targets, ask)
    assert node[0] == [["id", "title"]] * 4 and node[1] == [["rank"]] * 3
    assert proxy == node


def test_csv_documents_with_a_delimiter(targets: Targets) -> None:
    def ask(client: meilisearch.Client) -> Any:
        index = client.index("e2e_sdk_csv")
        body = b"id;title;price:number\n1;red fox;3.5\n2;blue, bird;4\n"
        added = wait_done(client, index.add_documents_csv(body, "id", csv_delimiter=";").task_uid)
        update = index.update_documents_csv(b"id|title\n2|blue jay\n", csv_delimiter="|")
        updated = wait_done(client, update.task_uid)
        documents = sorted((dict(d) for d in index.get_documents().results), key=str)
        wait_done(client, client.delete_index("e2e_sdk_csv").task_uid)
        return added.status, updated.status, documents

    proxy, node = both(targets, ask)
    assert node == (
        "succeeded",
        "succeeded",
        [
            {"id": "1", "title": "red fox", "price": 3.5},
            {"id": "2", "title": "blue jay", "price": 4},
        ],
    )
    assert proxy == node


def test_settings_sub_routes_reset_one_setting_with_a_null_body(targets: Targets) -> None:
    def ask(client: meilisearch.Client) -> Any:
        index = client.index("e2e_sdk_null")
        wait_done(client, client.create_index("e2e_sdk_null").task_uid)
        changed = {
            "rankingRules": ["words", "sort"],
            "filterableAttributes": ["color"],
            "displayedAttributes": ["id"],
            "distinctAttribute": "color",
            "stopWords": ["the"],
            "typoTolerance": {"enabled": False},
        }
        wait_done(client, index.update_settings(changed).task_uid)
        resets = [
            index.update_ranking_rules(None),
            index.update_filterable_attributes(None),
            index.update_displayed_attributes(None),
            index.update_distinct_attribute(None),  # type: ignore[arg-type]
            index.update_stop_words(None),
            index.update_typo_tolerance(None),
        ]
        tasks = [wait_done(client, task.task_uid) for task in resets]
        settings = index.get_settings()
        wait_done(client, client.delete_index("e2e_sdk_null").task_uid)
        return [(t.status, t.type, t.details, t.error) for t in tasks], {
            key: settings[key] for key in changed
        }

    proxy, node = both(targets, ask)
    assert [status for status, *_ in node[0]] == ["succeeded"] * 6
    assert node[1]["rankingRules"][0] == "words" and node[1]["filterableAttributes"] == []
    assert proxy == node


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_task_times_come_from_the_node_tasks(targets: Targets, e2e_cluster: DevCluster) -> None:
    """A Miroir task starts with its first node task and ends with its last. It is
    registered after its node tasks were sent, so a node that started before `enqueuedAt`
    counts from `enqueuedAt`, and the task then ends once the nodes' span has passed, or when
    Miroir saw it finish if that came sooner."""
    client = targets["proxy"]
    before = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    documents = [{"id": i, "title": "amber " * 200} for i in range(COUNT, COUNT + 300)]
    done = wait_done(client, client.index(UID).add_documents(documents).task_uid)
    assert done.status == "succeeded"
    node_tasks = []
    for node in e2e_cluster.nodes:
        params = {"indexUids": UID, "afterEnqueuedAt": before}
        answer = node_http(node, "GET", "/tasks", params=params)
        assert answer.status_code == 200, answer.text
        node_tasks.extend(answer.json()["results"])
    assert len(node_tasks) >= 4, node_tasks  # every group holds every shard, twice
    task = client.http.get(f"tasks/{done.uid}")
    enqueued = _moment(task["enqueuedAt"])
    started, finished = _moment(task["startedAt"]), _moment(task["finishedAt"])
    first = min(_moment(t["startedAt"]) for t in node_tasks)
    last = max(_moment(t["finishedAt"]) for t in node_tasks)
    assert started == max(first, enqueued)
    assert last <= finished <= max(last, started + (last - first))
    assert task["duration"] == _iso(finished - started) != "PT0S"


def _iso(span: timedelta) -> str:
    whole, micros = divmod(round(span.total_seconds() * 1_000_000), 1_000_000)
    return f"PT{whole}.{micros:06d}S" if micros else f"PT{whole}S"
