"""Durability: after `kill -9` and a restart on the same data, documents, settings, keys and
the task history are all still there, and new task uids keep increasing."""

from __future__ import annotations

from collections.abc import Callable

import meilisearch

from miroir_proxy.cli.processes import NodeProcess


def test_everything_survives_kill_9(fresh_node: Callable[..., NodeProcess]) -> None:
    node = fresh_node()
    client = meilisearch.Client(node.url, node.master_key, timeout=10)
    index = client.index("books")
    docs = [
        {"id": i, "title": f"book {i}", "genre": "scifi" if i % 2 else "poetry"} for i in range(50)
    ]
    tasks = [
        index.add_documents(docs, primary_key="id"),
        index.update_settings({"filterableAttributes": ["genre"], "stopWords": ["the"]}),
        index.delete_document(7),
    ]
    finished = [client.wait_for_task(t.task_uid, interval_in_ms=5) for t in tasks]
    assert [t.status for t in finished] == ["succeeded"] * 3
    key = client.create_key(
        {"name": "survivor", "actions": ["search"], "indexes": ["books"], "expiresAt": None}
    )

    node.kill()
    node.restart()

    assert client.get_index("books").primary_key == "id"
    assert index.get_stats().number_of_documents == 49
    assert dict(index.get_document(8)) == docs[8]
    settings = index.get_settings()
    assert settings["filterableAttributes"] == ["genre"]
    assert settings["stopWords"] == ["the"]
    assert len(index.search("", {"filter": "genre = poetry", "limit": 100})["hits"]) == 25

    assert client.get_key(key.uid).key == key.key
    searcher = meilisearch.Client(node.url, key.key)
    assert searcher.index("books").search("book")["estimatedTotalHits"] == 49

    history = {t.uid: t for t in client.get_tasks({"limit": 100}).results}
    for before in finished:
        assert history[before.uid].status == "succeeded"
        assert history[before.uid].type == before.type
        assert history[before.uid].details == before.details

    after = client.wait_for_task(index.add_documents([{"id": 100, "title": "new"}]).task_uid)
    assert after.status == "succeeded"
    assert after.uid > max(t.uid for t in finished)


def test_a_task_interrupted_by_kill_9_finishes_after_restart(
    fresh_node: Callable[..., NodeProcess],
) -> None:
    node = fresh_node()
    client = meilisearch.Client(node.url, node.master_key, timeout=10)
    docs = [{"id": i, "text": f"word{i % 991} filler {i}"} for i in range(40_000)]
    info = client.index("bulk").add_documents(docs)
    # A 202 means the task is durable, so killing the node mid-indexing must not lose it.
    node.kill()
    node.restart()
    task = client.wait_for_task(info.task_uid, timeout_in_ms=30_000, interval_in_ms=20)
    assert task.status == "succeeded"
    assert task.details == {"receivedDocuments": 40_000, "indexedDocuments": 40_000}
    assert client.index("bulk").get_stats().number_of_documents == 40_000
