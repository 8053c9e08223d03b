"""Indexes and instance routes through the official SDK: create/list/update/delete, stats,
version, health, webhooks, dumps and snapshots."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import meilisearch
import pytest
import requests
from meilisearch.errors import MeilisearchApiError
from meilisearch.index import Index
from meilisearch.models.task import Task, TaskInfo

from tests.conftest import wait_for

Wait = Callable[[TaskInfo | int], Task]
MakeIndex = Callable[..., Index]
ApiCall = Callable[..., requests.Response]


def test_create_get_list_update_delete_index(client: meilisearch.Client, wait_task: Wait) -> None:
    info = client.create_index("movies", {"primaryKey": "movie_id"})
    assert info.index_uid == "movies"
    assert info.type == "indexCreation"
    assert info.status == "enqueued"
    done = wait_task(info)
    assert done.details == {"primaryKey": "movie_id"}

    index = client.get_index("movies")
    assert index.uid == "movies"
    assert index.primary_key == "movie_id"
    assert index.created_at is not None
    assert abs(index.created_at - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)

    wait_task(client.create_index("books"))
    listed = client.get_indexes()
    assert sorted(i.uid for i in listed["results"]) == ["books", "movies"]
    assert client.get_raw_index("books")["primaryKey"] is None

    wait_task(client.index("books").update(primary_key="isbn"))
    assert client.get_index("books").primary_key == "isbn"

    wait_task(client.delete_index("books"))
    with pytest.raises(MeilisearchApiError) as err:
        client.get_index("books")
    assert err.value.code == "index_not_found"
    assert err.value.status_code == 404


def test_index_list_is_paginated(client: meilisearch.Client, wait_task: Wait) -> None:
    tasks = [client.create_index(uid) for uid in ("a1", "a2", "a3")]
    for task in tasks:
        wait_task(task)
    page = client.http.get("indexes?offset=1&limit=1")
    assert page["offset"] == 1
    assert page["limit"] == 1
    assert page["total"] == 3
    assert len(page["results"]) == 1
    assert set(page["results"][0]) == {"uid", "createdAt", "updatedAt", "primaryKey"}


def test_creating_an_existing_index_fails_in_the_task(
    client: meilisearch.Client, wait_task: Wait
) -> None:
    wait_task(client.create_index("movies"))
    task = client.wait_for_task(client.create_index("movies").task_uid)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error["code"] == "index_already_exists"
    assert task.error["message"] == "Index `movies` already exists."
    assert task.error["type"] == "invalid_request"
    assert task.error["link"] == "https://docs.meilisearch.com/errors#index_already_exists"


def test_changing_the_primary_key_of_a_filled_index_fails(
    client: meilisearch.Client, make_index: MakeIndex
) -> None:
    index = make_index("movies", [{"id": 1, "title": "Alien"}])
    task = client.wait_for_task(index.update(primary_key="title").task_uid)
    assert task.status == "failed"
    assert task.error is not None
    assert task.error["code"] == "index_primary_key_already_exists"


def test_index_stats_and_global_stats(client: meilisearch.Client, make_index: MakeIndex) -> None:
    make_index(
        "movies",
        [{"id": 1, "title": "Alien", "year": 1979}, {"id": 2, "title": "Heat"}],
    )
    stats = client.index("movies").get_stats()
    assert stats.number_of_documents == 2
    assert stats.is_indexing is False
    raw = client.http.get("indexes/movies/stats")
    assert raw["fieldDistribution"] == {"id": 2, "title": 2, "year": 1}
    assert raw["numberOfDocuments"] == 2

    everything = client.get_all_stats()
    assert isinstance(everything["databaseSize"], int)
    assert everything["lastUpdate"] is not None
    assert everything["indexes"]["movies"]["numberOfDocuments"] == 2
    assert everything["indexes"]["movies"]["fieldDistribution"]["year"] == 1


def test_version_and_health(client: meilisearch.Client) -> None:
    version = client.get_version()
    assert set(version) >= {"commitSha", "commitDate", "pkgVersion"}
    assert version["pkgVersion"].split(".")[0].isdigit()
    assert client.health() == {"status": "available"}
    assert client.is_healthy()


def test_webhooks_crud(client: meilisearch.Client) -> None:
    created = client.create_webhook(
        {"url": "https://example.com/hook", "headers": {"authorization": "secret"}}
    )
    assert created.url == "https://example.com/hook"
    assert created.isEditable is True
    assert created.headers is not None

    assert created.uuid in {w.uuid for w in client.get_webhooks().results}
    fetched = client.get_webhook(created.uuid)
    assert fetched.url == created.url

    updated = client.update_webhook(created.uuid, {"url": "https://example.com/other"})
    assert updated.url == "https://example.com/other"
    assert client.get_webhook(created.uuid).url == "https://example.com/other"

    assert client.delete_webhook(created.uuid) == 204
    with pytest.raises(MeilisearchApiError) as err:
        client.get_webhook(created.uuid)
    assert err.value.code == "webhook_not_found"
    assert err.value.status_code == 404


def test_dump_and_snapshot_tasks(client: meilisearch.Client, make_index: MakeIndex) -> None:
    make_index("movies", [{"id": 1, "title": "Alien"}])

    dump = client.create_dump()
    assert dump.type == "dumpCreation"
    assert dump.index_uid is None
    done = client.wait_for_task(dump.task_uid)
    assert done.status == "succeeded"
    assert done.details is not None
    assert isinstance(done.details["dumpUid"], str)

    snapshot = client.create_snapshot()
    assert snapshot.type == "snapshotCreation"
    client.wait_for_task(snapshot.task_uid)
    raw: dict[str, Any] = client.http.get(f"tasks/{snapshot.task_uid}")
    assert raw["status"] == "succeeded"
    assert "details" not in raw


def test_swap_indexes(client: meilisearch.Client, make_index: MakeIndex) -> None:
    make_index("live", [{"id": 1, "title": "old"}])
    make_index("staging", [{"id": 1, "title": "new"}, {"id": 2, "title": "extra"}])
    info = client.swap_indexes([{"indexes": ["live", "staging"]}])
    assert info.type == "indexSwap"
    assert info.index_uid is None
    done = client.wait_for_task(info.task_uid)
    assert done.status == "succeeded"
    assert done.details is not None
    assert done.details["swaps"][0]["indexes"] == ["live", "staging"]
    assert dict(client.index("live").get_document(1))["title"] == "new"
    assert client.index("staging").get_stats().number_of_documents == 1


def test_compact_an_index(client: meilisearch.Client, make_index: Callable[..., Index]) -> None:
    index = make_index("compacted", [{"id": 1, "title": "a"}])
    task = wait_for(client, index.compact())
    assert (task.status, task.type, task.index_uid) == ("succeeded", "indexCompaction", "compacted")
    assert set(task.details or {}) == {"preCompactionSize", "postCompactionSize"}
    # Meilisearch writes these sizes with the largest unit they reach, binary or decimal.
    assert re.match(r"^\d+(\.\d+)? (B|[KMGTPE]i?B)$", (task.details or {})["preCompactionSize"])
    missing = wait_for(client, client.index("nowhere").compact())
    assert missing.status == "failed"
    assert (missing.error or {})["code"] == "index_not_found"


def test_list_index_fields(make_index: Callable[..., Index], api: ApiCall) -> None:
    index = make_index(
        "fielded",
        [{"id": 1, "title": "a", "genre": "x", "meta": {"year": 2000}}, {"id": 2, "price": 3}],
        settings={
            "filterableAttributes": [
                "genre",
                {"attributePatterns": ["meta.*"], "features": {"facetSearch": True}},
            ],
            "sortableAttributes": ["price"],
            "displayedAttributes": ["id", "title", "genre", "meta"],
            "searchableAttributes": ["title"],
            "rankingRules": ["words", "price:desc"],
            "distinctAttribute": "genre",
            "faceting": {"sortFacetValuesBy": {"genre": "count"}},
        },
    )
    fields = index.get_fields()
    assert [f["name"] for f in fields.results] == ["id", "title", "genre", "meta", "price"]
    by_name = {f["name"]: f for f in fields.results}
    assert by_name["genre"] == {
        "name": "genre",
        "displayed": {"enabled": True},
        "searchable": {"enabled": False},
        "sortable": {"enabled": False},
        "distinct": {"enabled": True},
        "rankingRule": {"enabled": False},
        "filterable": {
            "enabled": True,
            "sortBy": "count",
            "facetSearch": True,
            "equality": True,
            "comparison": True,
        },
        "localized": {"locales": []},
    }
    assert by_name["price"]["rankingRule"] == {"enabled": True, "order": "desc"}
    assert by_name["price"]["displayed"] == {"enabled": False}
    assert by_name["title"]["searchable"] == {"enabled": True}
    assert by_name["meta"]["filterable"]["enabled"] is False  # `meta.*` matches below it
    page = index.get_fields(offset=1, limit=2, filter={"displayed": True})
    assert ([f["name"] for f in page.results], page.total) == (["title", "genre"], 4)
    patterns = index.get_fields(filter={"attributePatterns": ["t*", "p*"]})
    assert [f["name"] for f in patterns.results] == ["title", "price"]
    bad = api("POST", "/indexes/fielded/fields", json={"filter": {"displayed": "yes"}})
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_index_fields_filter_displayed")
    bad = api("POST", "/indexes/fielded/fields", json={"filter": {"nope": True}})
    assert bad.json()["code"] == "invalid_index_fields_filter"
    missing = api("POST", "/indexes/nowhere/fields", json={})
    assert (missing.status_code, missing.json()["code"]) == (404, "index_not_found")
