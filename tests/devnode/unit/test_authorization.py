"""The auth middleware: route -> action mapping, 401 vs 403, and the action/index matrix."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from miroir_devnode.auth import (
    AUTH,
    KEY_STORE,
    MASTER_ONLY,
    PUBLIC,
    make_auth_middleware,
    required_action,
)
from miroir_devnode.errors import MeiliError
from miroir_devnode.keys import ApiKey, KeyStore
from miroir_devnode.routes.keys import routes as key_routes

MASTER = "a-master-key-of-16+bytes"
INVALID = "The provided API key is invalid."
MISSING_HEADER = "The Authorization header is missing. It must use the bearer authorization method."


@web.middleware
async def render_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except MeiliError as e:
        return web.json_response(e.to_dict(), status=e.status)


async def describe_auth(request: web.Request) -> web.Response:
    context = request[AUTH]
    return web.json_response(
        {
            "master": context.is_master,
            "dog": context.allows_index("dog"),
            "cat": context.allows_index("cat"),
            "createDog": context.allows_index_creation("dog"),
        }
    )


def make_app(store: KeyStore) -> web.Application:
    app = web.Application(middlewares=[render_errors, make_auth_middleware(store)])
    app[KEY_STORE] = store
    app.add_routes(key_routes)
    for method, path in [
        ("GET", "/health"),
        ("GET", "/indexes"),
        ("POST", "/indexes"),
        ("GET", "/indexes/{index_uid}"),
        ("GET", "/indexes/{index_uid}/documents"),
        ("POST", "/indexes/{index_uid}/documents"),
        ("POST", "/indexes/{index_uid}/search"),
        ("PUT", "/indexes/{index_uid}/settings/{setting}"),
        ("GET", "/tasks"),
        ("GET", "/version"),
        ("POST", "/dumps"),
        ("PATCH", "/experimental-features"),
        ("POST", "/multi-search"),
        ("GET", "/not-in-the-table"),
    ]:
        app.router.add_route(method, path, describe_auth)
    return app


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    yield connection
    connection.close()


@pytest.fixture
def store(conn: sqlite3.Connection) -> KeyStore:
    return KeyStore(conn, MASTER)


@pytest.fixture
async def client(store: KeyStore) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app(store))) as test_client:
        yield test_client


def add_key(
    store: KeyStore,
    actions: tuple[str, ...],
    indexes: tuple[str, ...] = ("*",),
    expires_at: datetime | None = None,
) -> str:
    moment = datetime.now(UTC)
    key = ApiKey(str(uuid.uuid4()), None, None, actions, indexes, expires_at, moment, moment)
    return store.key_value(store.create(key).uid)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "canonical", "action"),
    [
        ("GET", "/health", PUBLIC),
        ("GET", "/indexes/{index_uid}/documents", "documents.get"),
        ("HEAD", "/indexes/{uid}/documents", "documents.get"),
        ("POST", "/indexes/{index_uid}/documents/fetch", "documents.get"),
        ("PUT", "/indexes/{index_uid}/documents", "documents.add"),
        ("DELETE", "/indexes/{index_uid}/documents/{document_id}", "documents.delete"),
        ("POST", "/indexes/{index_uid}/search", "search"),
        ("GET", "/indexes/{index_uid}/search", "search"),
        ("POST", "/indexes/{index_uid}/facet-search", "search"),
        ("POST", "/multi-search", "search"),
        ("POST", "/indexes", "indexes.create"),
        ("PATCH", "/indexes/{index_uid}", "indexes.update"),
        ("POST", "/swap-indexes", "indexes.swap"),
        ("GET", "/indexes/{index_uid}/settings", "settings.get"),
        ("PATCH", "/indexes/{index_uid}/settings", "settings.update"),
        ("GET", "/indexes/{index_uid}/settings/ranking-rules", "settings.get"),
        ("DELETE", "/indexes/{index_uid}/settings/{name}", "settings.update"),
        ("GET", "/tasks", "tasks.get"),
        ("POST", "/tasks/cancel", "tasks.cancel"),
        ("DELETE", "/tasks", "tasks.delete"),
        ("GET", "/batches/{batch_uid}", "tasks.get"),
        ("POST", "/dumps", "dumps.create"),
        ("POST", "/snapshots", "snapshots.create"),
        ("GET", "/version", "version"),
        ("GET", "/stats", "stats.get"),
        ("GET", "/indexes/{index_uid}/stats", "stats.get"),
        ("PATCH", "/experimental-features/", "experimental.update"),
        ("POST", "/webhooks", "webhooks.create"),
        ("DELETE", "/webhooks/{uuid}", "webhooks.delete"),
        ("GET", "/keys/{uid_or_key}", "keys.get"),
        ("POST", "/keys", "keys.create"),
        ("GET", "/made-up", MASTER_ONLY),
    ],
)
def test_required_action(method: str, canonical: str, action: str) -> None:
    assert required_action(method, canonical) == action


async def test_without_master_key_everything_but_keys_is_open(conn: sqlite3.Connection) -> None:
    async with TestClient(TestServer(make_app(KeyStore(conn, None)))) as client:
        for path in ("/indexes/dog/documents", "/not-in-the-table", "/version"):
            response = await client.get(path)
            assert response.status == 200
            assert (await response.json())["master"] is True
        assert (await client.get("/tasks", headers=bearer("None"))).status == 200
        keys = await client.get("/keys", headers=bearer("anything"))
        assert (keys.status, (await keys.json())["code"]) == (401, "missing_master_key")
        # Meilisearch rejects a non-Bearer scheme even when it has no master key.
        basic = await client.get("/tasks", headers={"Authorization": "Basic abc"})
        assert (basic.status, (await basic.json())["code"]) == (401, "missing_authorization_header")


@pytest.mark.parametrize(
    ("headers", "status", "code", "message"),
    [
        ({}, 401, "missing_authorization_header", MISSING_HEADER),
        ({"Authorization": "Basic abc"}, 401, "missing_authorization_header", MISSING_HEADER),
        (
            {"Authorization": f"bearer {MASTER}"},
            401,
            "missing_authorization_header",
            MISSING_HEADER,
        ),
        ({"Authorization": "Bearer"}, 403, "invalid_api_key", INVALID),
        ({"Authorization": "Bearer kefir"}, 403, "invalid_api_key", INVALID),
        ({"Authorization": "Bearer "}, 403, "invalid_api_key", INVALID),
    ],
)
async def test_refusals(
    client: TestClient[Any, Any], headers: dict[str, str], status: int, code: str, message: str
) -> None:
    response = await client.get("/indexes/dog/documents", headers=headers)
    assert response.status == status
    assert await response.json() == {
        "message": message,
        "code": code,
        "type": "auth",
        "link": f"https://docs.meilisearch.com/errors#{code}",
    }


async def test_master_key_passes_everything(client: TestClient[Any, Any]) -> None:
    for method, path in [("GET", "/not-in-the-table"), ("POST", "/dumps"), ("GET", "/keys")]:
        response = await client.request(method, path, headers=bearer(MASTER))
        assert response.status == 200, path
    body = await (await client.get("/indexes", headers=bearer(MASTER))).json()
    assert body == {"master": True, "dog": True, "cat": True, "createDog": True}


async def test_public_and_unmatched_routes_need_no_key(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/health")).status == 200
    assert (await client.get("/no/such/route")).status == 404
    assert (await client.delete("/version")).status == 405


# (key actions, method, path, allowed)
MATRIX = [
    (("search",), "POST", "/indexes/dog/search", True),
    (("search",), "GET", "/indexes/dog/documents", False),
    (("documents.get",), "GET", "/indexes/dog/documents", True),
    (("documents.get",), "POST", "/indexes/dog/documents", False),
    (("documents.*",), "POST", "/indexes/dog/documents", True),
    (("documents.add",), "POST", "/indexes/dog/documents", True),
    (("settings.update",), "PUT", "/indexes/dog/settings/stop-words", True),
    (("settings.get",), "PUT", "/indexes/dog/settings/stop-words", False),
    (("*",), "POST", "/dumps", True),
    (("*",), "GET", "/keys", True),
    (("*",), "GET", "/not-in-the-table", False),
    (("*.get",), "GET", "/tasks", True),
    (("*.get",), "GET", "/version", True),
    (("*.get",), "POST", "/indexes/dog/search", True),
    (("*.get",), "GET", "/keys", False),
    (("*.get",), "POST", "/dumps", False),
    (("*.get", "keys.get"), "GET", "/keys", True),
    (("tasks.*",), "GET", "/tasks", True),
    (("indexes.create",), "POST", "/indexes", True),
    (("indexes.get",), "POST", "/indexes", False),
    (("experimental.update",), "PATCH", "/experimental-features", True),
    (("keys.create",), "GET", "/keys", False),
    (("version",), "GET", "/version", True),
    (("stats.*",), "GET", "/version", False),
]


@pytest.mark.parametrize(("actions", "method", "path", "allowed"), MATRIX)
async def test_action_matrix(
    client: TestClient[Any, Any],
    store: KeyStore,
    actions: tuple[str, ...],
    method: str,
    path: str,
    allowed: bool,
) -> None:
    token = add_key(store, actions)
    response = await client.request(method, path, headers=bearer(token))
    if allowed:
        assert response.status == 200
    else:
        assert response.status == 403
        assert (await response.json())["message"] == INVALID


@pytest.mark.parametrize(
    ("indexes", "uid", "allowed"),
    [
        (("dog",), "dog", True),
        (("dog",), "doggo", False),
        (("dog*",), "doggo", True),
        (("dog*",), "cat", False),
        (("cat", "dog"), "dog", True),
        (("*",), "anything", True),
    ],
)
async def test_index_restrictions(
    client: TestClient[Any, Any], store: KeyStore, indexes: tuple[str, ...], uid: str, allowed: bool
) -> None:
    token = add_key(store, ("search",), indexes)
    response = await client.post(f"/indexes/{uid}/search", headers=bearer(token))
    if allowed:
        assert response.status == 200
        return
    assert response.status == 403
    listed = ", ".join(f'"{i}"' for i in sorted(indexes))
    assert (await response.json())["message"] == (
        f"The API key cannot acces the index `{uid}`, authorized indexes are [{listed}]."
    )


async def test_index_is_checked_before_the_action(
    client: TestClient[Any, Any], store: KeyStore
) -> None:
    token = add_key(store, ("documents.get",), ("dog",))
    response = await client.post("/indexes/cat/search", headers=bearer(token))
    assert (await response.json())["message"].startswith("The API key cannot acces the index `cat`")


async def test_context_of_a_scoped_key(client: TestClient[Any, Any], store: KeyStore) -> None:
    reader = add_key(store, ("indexes.get",), ("dog",))
    body = await (await client.get("/indexes", headers=bearer(reader))).json()
    assert body == {"master": False, "dog": True, "cat": False, "createDog": False}
    writer = add_key(store, ("documents.add", "indexes.create"), ("dog",))
    body = await (await client.post("/indexes/dog/documents", headers=bearer(writer))).json()
    assert body["createDog"] is True
    # multi-search has no index in its path: the handler checks each query with the context.
    searcher = add_key(store, ("search",), ("dog",))
    body = await (await client.post("/multi-search", headers=bearer(searcher))).json()
    assert (body["dog"], body["cat"]) == (True, False)


async def test_expired_and_deleted_keys(client: TestClient[Any, Any], store: KeyStore) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = add_key(store, ("*",), expires_at=past)
    response = await client.get("/tasks", headers=bearer(expired))
    assert (response.status, (await response.json())["message"]) == (403, INVALID)

    future = datetime.now(UTC) + timedelta(days=1)
    live = add_key(store, ("*",), expires_at=future)
    assert (await client.get("/tasks", headers=bearer(live))).status == 200
    store.delete(store.find(live))
    assert (await client.get("/tasks", headers=bearer(live))).status == 403


async def test_key_value_lookup_accepts_upper_case_hex(
    client: TestClient[Any, Any], store: KeyStore
) -> None:
    token = add_key(store, ("tasks.get",))
    assert (await client.get("/tasks", headers=bearer(token.upper()))).status == 200


async def test_default_keys_work_as_documented(
    client: TestClient[Any, Any], store: KeyStore
) -> None:
    keys = {k.name: store.key_value(k.uid) for k in store.list()}
    search = bearer(keys["Default Search API Key"])
    assert (await client.post("/indexes/dog/search", headers=search)).status == 200
    assert (await client.get("/indexes/dog/documents", headers=search)).status == 403
    admin = bearer(keys["Default Admin API Key"])
    assert (await client.post("/keys", json={}, headers=admin)).status == 400  # past auth
    read_only = bearer(keys["Default Read-Only Admin API Key"])
    assert (await client.get("/keys", headers=read_only)).status == 200
    assert (await client.post("/dumps", headers=read_only)).status == 403
