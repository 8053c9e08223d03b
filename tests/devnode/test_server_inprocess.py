"""The devnode app in-process (aiohttp test server on loopback): task lifecycle, durability
across restarts, error shapes, task cancel/delete, settings routes and fault injection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from miroir_devnode.app import make_app, render_size
from miroir_devnode.config import NodeConfig, parse_config, parse_size
from miroir_devnode.node import NODE_KEY

JSON = {"Content-Type": "application/json"}


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def node(
    tmp_path: Path, **options: Any
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with serve(make_app(NodeConfig(db_path=tmp_path / "db", **options))) as client:
        yield client


async def call(
    client: TestClient[web.Request, web.Application],
    method: str,
    path: str,
    body: Any = None,
    **kw: Any,
) -> tuple[int, Any]:
    if body is not None:
        kw.setdefault("data", orjson.dumps(body))
        kw.setdefault("headers", JSON)
    async with client.request(method, path, **kw) as response:
        raw = await response.read()
        return response.status, orjson.loads(raw) if raw else None


async def wait(client: TestClient[web.Request, web.Application], uid: int) -> dict[str, Any]:
    for _ in range(2000):
        status, task = await call(client, "GET", f"/tasks/{uid}")
        assert status == 200
        if task["status"] in ("succeeded", "failed", "canceled"):
            return dict(task)
        await asyncio.sleep(0.005)
    raise AssertionError(f"task {uid} never finished")


async def run(
    client: TestClient[web.Request, web.Application],
    method: str,
    path: str,
    body: Any = None,
    **kw: Any,
) -> dict[str, Any]:
    status, summary = await call(client, method, path, body, **kw)
    assert status in (200, 202), summary
    return await wait(client, summary["taskUid"])


async def test_index_and_document_lifecycle(tmp_path: Path) -> None:
    async with node(tmp_path) as client:
        status, summary = await call(client, "POST", "/indexes", {"uid": "movies"})
        assert status == 202
        assert set(summary) == {"taskUid", "indexUid", "status", "type", "enqueuedAt"}
        assert (summary["status"], summary["type"]) == ("enqueued", "indexCreation")
        task = await wait(client, summary["taskUid"])
        assert task["status"] == "succeeded" and task["details"] == {"primaryKey": None}
        assert task["batchUid"] is not None and task["duration"].startswith("PT")
        again = await run(client, "POST", "/indexes", {"uid": "movies"})
        assert again["error"]["code"] == "index_already_exists"

        docs = [
            {"movie_id": 1, "title": "Carol", "year": 2015},
            {"movie_id": "2", "title": "Wonder"},
        ]
        added = await run(client, "POST", "/indexes/movies/documents", docs)
        assert added["details"] == {"receivedDocuments": 2, "indexedDocuments": 2}
        status, index = await call(client, "GET", "/indexes/movies")
        assert index["primaryKey"] == "movie_id"
        await run(client, "PUT", "/indexes/movies/documents", [{"movie_id": 1, "title": "Carol!"}])
        status, doc = await call(client, "GET", "/indexes/movies/documents/1?fields=title,year")
        assert (status, doc) == (200, {"title": "Carol!", "year": 2015})
        bad = await run(client, "POST", "/indexes/movies/documents", [{"movie_id": "a b"}])
        assert (bad["status"], bad["error"]["code"]) == ("failed", "invalid_document_id")
        assert bad["details"]["indexedDocuments"] == 0
        assert bad["error"]["message"].startswith('Index `movies`: Document identifier `"a b"`')

        by_filter = await run(
            client, "POST", "/indexes/movies/documents/delete", {"filter": "year = 2015"}
        )
        assert by_filter["error"]["code"] == "invalid_document_filter"
        assert by_filter["details"]["originalFilter"] == '"year = 2015"'
        await run(client, "PUT", "/indexes/movies/settings/filterable-attributes", ["year"])
        by_filter = await run(
            client, "POST", "/indexes/movies/documents/delete", {"filter": "year = 2015"}
        )
        assert by_filter["details"]["deletedDocuments"] == 1
        gone = await run(client, "DELETE", "/indexes/movies/documents/2")
        assert gone["details"] == {"providedIds": 1, "deletedDocuments": 1, "originalFilter": None}
        status, stats = await call(client, "GET", "/indexes/movies/stats")
        assert stats["numberOfDocuments"] == 0

        missing = await run(client, "DELETE", "/indexes/nope")
        assert missing["error"]["code"] == "index_not_found"
        assert missing["error"]["message"] == "Index `nope` not found."


async def test_csv_ndjson_and_auto_created_index(tmp_path: Path) -> None:
    async with node(tmp_path) as client:
        csv = b"sku,price:number\nA1,3.5\nB2,4\n"
        headers = {"Content-Type": "text/csv"}
        task = await run(
            client, "POST", "/indexes/shop/documents?primaryKey=sku", data=csv, headers=headers
        )
        assert task["details"]["indexedDocuments"] == 2
        ndjson = b'{"sku": "C3", "price": 1}\n{"sku": "A1", "price": 9}\n'
        await run(
            client,
            "POST",
            "/indexes/shop/documents",
            data=ndjson,
            headers={"Content-Type": "application/x-ndjson"},
        )
        _, page = await call(client, "POST", "/indexes/shop/documents/fetch", {"limit": 10})
        assert page["total"] == 3
        assert {d["sku"]: d["price"] for d in page["results"]} == {"A1": 9, "B2": 4, "C3": 1}


async def test_restart_keeps_everything(tmp_path: Path) -> None:
    async with node(tmp_path) as client:
        await run(client, "POST", "/indexes", {"uid": "books", "primaryKey": "isbn"})
        await run(
            client,
            "POST",
            "/indexes/books/documents",
            [{"isbn": i, "t": f"b{i}"} for i in range(50)],
        )
        await run(client, "PATCH", "/indexes/books/settings", {"sortableAttributes": ["t"]})
        status, hook = await call(client, "POST", "/webhooks", {"url": "http://example.com/h"})
        assert status == 201
        await call(client, "PATCH", "/experimental-features", {"containsFilter": True})
    async with node(tmp_path) as client:
        status, stats = await call(client, "GET", "/indexes/books/stats")
        assert stats["numberOfDocuments"] == 50
        status, doc = await call(client, "GET", "/indexes/books/documents/7")
        assert doc == {"isbn": 7, "t": "b7"}
        status, sortable = await call(client, "GET", "/indexes/books/settings/sortable-attributes")
        assert sortable == ["t"]
        status, tasks = await call(client, "GET", "/tasks")
        assert [t["type"] for t in tasks["results"]] == [
            "settingsUpdate",
            "documentAdditionOrUpdate",
            "indexCreation",
        ]
        status, hooks = await call(client, "GET", "/webhooks")
        assert hooks["results"] == [hook]
        status, features = await call(client, "GET", "/experimental-features")
        assert features["containsFilter"] is True
        added = await run(client, "POST", "/indexes", {"uid": "second"})
        assert added["uid"] == 3


async def test_an_accepted_task_survives_a_crash(tmp_path: Path) -> None:
    config = NodeConfig(db_path=tmp_path / "db")
    crashed = make_app(config)
    # The worker only starts with the server: this task is accepted but never processed,
    # and the app is dropped without its cleanup (as after kill -9).
    crashed[NODE_KEY].queue.enqueue(
        "documentAdditionOrUpdate", "late", {"receivedDocuments": 1, "indexedDocuments": None},
        {"documents": [{"id": 1}], "primaryKey": None, "merge": False},
    )  # fmt: skip
    crashed[NODE_KEY].close()
    async with serve(make_app(config)) as client:
        task = await wait(client, 0)
        assert task["status"] == "succeeded"
        status, doc = await call(client, "GET", "/indexes/late/documents/1")
        assert (status, doc) == (200, {"id": 1})


async def test_cancel_runs_before_the_tasks_it_cancels(tmp_path: Path) -> None:
    app = make_app(NodeConfig(db_path=tmp_path / "db"))
    queue = app[NODE_KEY].queue
    for uid in ("a", "b", "c"):
        queue.enqueue("indexCreation", uid, {"primaryKey": None}, {"primaryKey": None})
    details = {"matchedTasks": 2, "canceledTasks": None, "originalFilter": "?uids=1,2"}
    queue.enqueue("taskCancelation", None, details, {"uids": [1, 2]})
    async with serve(app) as client:
        cancel = await wait(client, 3)
        assert cancel["details"] == {
            "matchedTasks": 2,
            "canceledTasks": 2,
            "originalFilter": "?uids=1,2",
        }
        canceled = await wait(client, 1)
        assert (canceled["status"], canceled["canceledBy"]) == ("canceled", 3)
        assert canceled["batchUid"] == cancel["batchUid"]
        assert (await wait(client, 0))["status"] == "succeeded"
        status, page = await call(client, "GET", "/tasks?statuses=canceled&limit=1")
        assert (page["total"], page["next"], page["results"][0]["uid"]) == (2, 1, 2)

        status, summary = await call(
            client, "POST", "/tasks/cancel?uids=0,1&statuses=enqueued,succeeded"
        )
        assert (status, summary["type"], summary["indexUid"]) == (200, "taskCancelation", None)
        again = await wait(client, summary["taskUid"])
        assert again["details"]["matchedTasks"] == 1 and again["details"]["canceledTasks"] == 0

        status, err = await call(client, "DELETE", "/tasks")
        assert (status, err["code"]) == (400, "missing_task_filters")
        deletion = await run(client, "DELETE", "/tasks?statuses=canceled")
        assert deletion["details"]["deletedTasks"] == 2
        status, err = await call(client, "GET", "/tasks/1")
        assert (status, err["code"], err["message"]) == (
            404,
            "task_not_found",
            "Task `1` not found.",
        )
        status, batches = await call(client, "GET", "/batches?limit=1")
        assert batches["results"][0]["stats"]["types"] == {"taskDeletion": 1}


async def test_error_shapes(tmp_path: Path) -> None:
    async with node(tmp_path, payload_limit_bytes=1024) as client:
        status, err = await call(
            client, "POST", "/indexes", data=b'{"uid": "x"}', skip_auto_headers=["Content-Type"]
        )
        assert (status, err["code"]) == (415, "missing_content_type")
        status, err = await call(
            client,
            "POST",
            "/indexes/x/documents",
            data=b"[]",
            headers={"Content-Type": "text/plain"},
        )
        assert (status, err["code"]) == (415, "invalid_content_type")
        status, err = await call(client, "POST", "/indexes", data=b'{"uid": ', headers=JSON)
        assert (status, err["code"]) == (400, "malformed_payload")
        status, err = await call(
            client,
            "POST",
            "/indexes/x/documents",
            data=b"[" + b'{"a": 1},' * 200 + b"{}]",
            headers=JSON,
        )
        assert (status, err["code"], err["type"]) == (413, "payload_too_large", "invalid_request")
        assert (
            err["message"]
            == "The provided payload reached the size limit. The maximum accepted payload size "
            "is 1 KiB."
        )
        status, err = await call(client, "GET", "/indexes/nope")
        assert (status, err) == (
            404,
            {
                "message": "Index `nope` not found.",
                "code": "index_not_found",
                "type": "invalid_request",
                "link": "https://docs.meilisearch.com/errors#index_not_found",
            },
        )
        status, err = await call(client, "GET", "/indexes?offset=1&page=2")
        assert (status, err["code"]) == (400, "bad_request")
        assert err["message"].startswith("Unknown parameter `page`")
        status, err = await call(client, "GET", "/indexes?limit=abc")
        assert (status, err["code"]) == (400, "invalid_index_limit")
        status, err = await call(client, "POST", "/indexes", {"uid": "bad uid"})
        assert (status, err["code"]) == (400, "invalid_index_uid")
        status, err = await call(client, "POST", "/indexes", {"primaryKey": "id"})
        assert (status, err["code"]) == (400, "missing_index_uid")
        status, err = await call(client, "GET", "/no/such/route")
        assert status == 404 and set(err) == {"message", "code", "type", "link"}
        status, err = await call(client, "PATCH", "/indexes/x/settings/stop-words", ["a"])
        assert status == 405
        status, err = await call(client, "GET", "/tasks/abc")
        assert (status, err["code"], err["message"]) == (
            400,
            "invalid_task_uids",
            "Task uid `abc` is invalid. It should only contain numeric characters.",
        )
        status, err = await call(client, "GET", "/metrics")
        assert (status, err["code"]) == (400, "feature_not_enabled")
        status, err = await call(client, "POST", "/indexes/x/documents/delete", {"filter": []})
        assert (status, err["message"]) == (400, "Sending an empty filter is forbidden.")


async def test_settings_routes(tmp_path: Path) -> None:
    async with node(tmp_path) as client:
        task = await run(
            client,
            "PATCH",
            "/indexes/s/settings",
            {"rankingRules": ["words", "year:desc"], "distinctAttribute": "sku"},
        )
        assert task["details"] == {
            "rankingRules": ["words", "year:desc"],
            "distinctAttribute": "sku",
        }
        status, settings = await call(client, "GET", "/indexes/s/settings")
        assert len(settings) == 20 and settings["rankingRules"] == ["words", "year:desc"]
        await run(
            client,
            "PATCH",
            "/indexes/s/settings/typo-tolerance",
            {"minWordSizeForTypos": {"oneTypo": 3}},
        )
        status, typo = await call(client, "GET", "/indexes/s/settings/typo-tolerance")
        assert typo["minWordSizeForTypos"] == {"oneTypo": 3, "twoTypos": 9}
        reset = await run(client, "DELETE", "/indexes/s/settings/ranking-rules")
        assert reset["details"] == {"rankingRules": None}
        failed = await run(
            client,
            "PATCH",
            "/indexes/s/settings/typo-tolerance",
            {"minWordSizeForTypos": {"oneTypo": 10}},
        )
        assert failed["error"]["code"] == "invalid_settings_typo_tolerance"
        everything = await run(client, "DELETE", "/indexes/s/settings")
        assert all(value is None for value in everything["details"].values())
        status, settings = await call(client, "GET", "/indexes/s/settings")
        assert (
            settings["distinctAttribute"] is None
            and settings["typoTolerance"]["minWordSizeForTypos"]["oneTypo"] == 5
        )
        status, err = await call(
            client, "PUT", "/indexes/s/settings/displayed-attributes", {"a": 1}
        )
        assert (status, err["code"]) == (400, "invalid_settings_displayed_attributes")


async def test_swap_and_rename(tmp_path: Path) -> None:
    async with node(tmp_path) as client:
        await run(client, "POST", "/indexes/a/documents", [{"id": 1, "side": "a"}])
        await run(client, "POST", "/indexes/b/documents", [{"id": 1, "side": "b"}])
        swap = await run(client, "POST", "/swap-indexes", [{"indexes": ["a", "b"]}])
        assert swap["details"] == {"swaps": [{"indexes": ["a", "b"], "rename": False}]}
        status, doc = await call(client, "GET", "/indexes/a/documents/1")
        assert doc["side"] == "b"
        await run(client, "PATCH", "/indexes/a", {"uid": "c"})
        status, listing = await call(client, "GET", "/indexes")
        assert [i["uid"] for i in listing["results"]] == ["b", "c"]
        status, err = await call(client, "POST", "/swap-indexes", [{"indexes": ["b"]}])
        assert (status, err["code"]) == (400, "invalid_swap_indexes")
        failed = await run(
            client, "POST", "/swap-indexes", [{"indexes": ["zz", "b"]}, {"indexes": ["yy", "c"]}]
        )
        assert failed["error"]["code"] == "index_not_found"
        assert failed["error"]["message"] == "Indexes `yy`, `zz` not found."


async def test_fault_injection(tmp_path: Path) -> None:
    async with node(tmp_path) as client:
        status, _ = await call(client, "GET", "/_devnode/faults")
        assert status == 404
    async with node(tmp_path, enable_fault_injection=True, master_key="k" * 16) as client:
        auth = {"Authorization": "Bearer " + "k" * 16}
        status, _ = await call(client, "GET", "/_devnode/faults")
        assert status == 403
        status, faults = await call(
            client, "PUT", "/_devnode/faults", {"errorRate": 1.0}, headers={**JSON, **auth}
        )
        assert faults == {"delayMs": 0, "errorRate": 1.0, "paused": False, "maxConcurrent": None}
        status, err = await call(client, "GET", "/health")
        assert (status, err["code"]) == (500, "internal")
        await call(
            client,
            "PUT",
            "/_devnode/faults",
            {"errorRate": 0, "paused": True},
            headers={**JSON, **auth},
        )
        pending = asyncio.ensure_future(call(client, "GET", "/health"))
        done, _ = await asyncio.wait({pending}, timeout=0.1)
        assert not done
        await call(client, "PUT", "/_devnode/faults", {"paused": False}, headers={**JSON, **auth})
        assert await pending == (200, {"status": "available"})


def test_configuration_from_flags_and_environment() -> None:
    env = {
        "MEILI_HTTP_ADDR": "127.0.0.1:7001",
        "MEILI_MASTER_KEY": "env-key",
        "MIROIR_DEVNODE_FAULTS": "1",
    }
    config = parse_config(["--master-key", "flag-key", "--http-payload-size-limit", "10 MiB"], env)
    assert (config.host, config.port, config.master_key) == ("127.0.0.1", 7001, "flag-key")
    assert config.enable_fault_injection and config.payload_limit_bytes == 10 * 1024 * 1024
    assert parse_config(["--no-analytics", "--env", "development"], {}).port == 7700
    assert parse_size("100 MB") == 100_000_000
    # Meilisearch renders the default 100 MB limit in binary units, exactly.
    assert render_size(100_000_000) == "95.367431640625 MiB"
    assert render_size(10 * 1024 * 1024) == "10 MiB"
