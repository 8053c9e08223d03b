"""API keys: derivation, the store's persistence and default keys, and the `/keys` routes
with Meilisearch's validation codes and messages."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from miroir_devnode.auth import KEY_STORE, make_auth_middleware
from miroir_devnode.errors import MeiliError
from miroir_devnode.keys import ApiKey, KeyStore, derive_key, expand_actions, parse_uuid
from miroir_devnode.routes.keys import parse_expiration, routes

MASTER = "MASTER_KEY"
NIL = "00000000-0000-0000-0000-000000000000"
AUTH = {"Authorization": f"Bearer {MASTER}"}


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    yield connection
    connection.close()


@web.middleware
async def render_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except MeiliError as e:
        return web.json_response(e.to_dict(), status=e.status)


def make_app(store: KeyStore) -> web.Application:
    app = web.Application(middlewares=[render_errors, make_auth_middleware(store)])
    app[KEY_STORE] = store
    app.add_routes(routes)
    return app


@pytest.fixture
async def client(
    conn: sqlite3.Connection,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app(KeyStore(conn, MASTER)))) as test_client:
        yield test_client


def test_key_value_is_hmac_sha256_of_the_uid_under_the_master_key() -> None:
    expected = hmac.new(b"MASTER_KEY", NIL.encode(), hashlib.sha256).hexdigest()
    assert derive_key(MASTER, NIL) == expected
    # The value Meilisearch's own test suite shows for this uid and master key.
    assert expected == "aeb94973e0b6e912d94165430bbe87dee91a7c4f891ce19050c3910ec96977e9"


def test_default_keys_are_created_once(conn: sqlite3.Connection) -> None:
    store = KeyStore(conn, MASTER)
    by_name = {k.name: k for k in store.list()}
    assert {name: (k.actions, k.indexes, k.expires_at) for name, k in by_name.items()} == {
        "Default Search API Key": (("search",), ("*",), None),
        "Default Admin API Key": (("*",), ("*",), None),
        "Default Read-Only Admin API Key": (("*.get", "keys.get"), ("*",), None),
        "Default Chat API Key": (("chatCompletions", "search"), ("*",), None),
    }
    again = KeyStore(conn, MASTER)
    assert sorted(k.uid for k in again.list()) == sorted(k.uid for k in by_name.values())
    admin = by_name["Default Admin API Key"]
    assert again.uid_for_value(derive_key(MASTER, admin.uid)) == admin.uid


def test_no_default_keys_without_a_master_key(conn: sqlite3.Connection) -> None:
    assert KeyStore(conn, None).list() == []


def test_keys_survive_a_reopened_database(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite3"
    first = sqlite3.connect(path)  # default (transactional) mode: the store must commit
    store = KeyStore(first, MASTER)
    moment = datetime.now(UTC)
    created = store.create(ApiKey(NIL, "n", None, ("search",), ("dog*",), None, moment, moment))
    store.update(created, name="renamed", description="d")
    admin = next(k for k in store.list() if k.name == "Default Admin API Key")
    store.delete(admin)
    remaining = {k.uid for k in store.list()}
    assert admin.uid not in remaining and len(remaining) == 4
    first.close()

    reopened = KeyStore(sqlite3.connect(path), MASTER)
    assert {k.uid for k in reopened.list()} == remaining
    key = reopened.find(derive_key(MASTER, NIL))
    assert (key.name, key.description, key.indexes) == ("renamed", "d", ("dog*",))


def test_action_wildcards_expand_like_meilisearch() -> None:
    everything = expand_actions(("*",))
    assert "keys.get" in everything and "documents.*" in everything
    assert "*.get" not in everything
    reads = expand_actions(("*.get",))
    assert {"search", "documents.get", "tasks.get", "version", "webhooks.get"} <= reads
    assert reads.isdisjoint({"keys.get", "chatCompletions", "documents.add", "tasks.delete"})
    assert expand_actions(("documents.*",)) == {
        "documents.*",
        "documents.add",
        "documents.get",
        "documents.delete",
    }
    assert expand_actions(("tasks.*",)) >= {"tasks.cancel", "tasks.delete", "tasks.get"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NIL, NIL),
        ("00000000000000000000000000000000", NIL),
        ("{01B4BC42-EB33-4041-B481-254D00CCE834}", "01b4bc42-eb33-4041-b481-254d00cce834"),
        ("urn:uuid:01b4bc42-eb33-4041-b481-254d00cce834", "01b4bc42-eb33-4041-b481-254d00cce834"),
    ],
)
def test_uuid_forms(text: str, expected: str) -> None:
    assert parse_uuid(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("doggo", "invalid character: found `o` at 1"),
        ("abc", "invalid length: expected length 32 for simple format, found 3"),
        ("0-0-0", "invalid group count: expected 5, found 3"),
        (
            "0000000-0000-0000-0000-000000000000",
            "invalid group length in group 0: expected 8, found 7",
        ),
    ],
)
def test_uuid_errors_use_the_uuid_crate_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("`", ".") + "$"):
        parse_uuid(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2099-01-02", datetime(2099, 1, 2, tzinfo=UTC)),
        ("2099-01-02 03:04:05", datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2099-01-02T03:04:05", datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2099-01-02T03:04:05.123456789Z", datetime(2099, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2099-01-02T03:04:05+02:00", datetime(2099, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2099-13-02", None),
        ("tomorrow", None),
    ],
)
def test_expiration_formats(text: str, expected: datetime | None) -> None:
    assert parse_expiration(text) == expected


async def test_create_get_list_update_delete(client: TestClient[Any, Any]) -> None:
    body = {"uid": NIL, "actions": ["search"], "indexes": ["dog"], "expiresAt": "2099-01-02"}
    created = await client.post("/keys", json=body, headers=AUTH)
    assert created.status == 201
    key = await created.json()
    assert key.pop("createdAt").endswith("Z") and key.pop("updatedAt").endswith("Z")
    assert key == {
        "name": None,
        "description": None,
        "key": "aeb94973e0b6e912d94165430bbe87dee91a7c4f891ce19050c3910ec96977e9",
        "uid": NIL,
        "actions": ["search"],
        "indexes": ["dog"],
        "expiresAt": "2099-01-02T00:00:00.000000Z",
    }
    by_uid = await (await client.get(f"/keys/{NIL}", headers=AUTH)).json()
    by_value = await (await client.get(f"/keys/{by_uid['key']}", headers=AUTH)).json()
    assert by_uid == by_value and by_uid["uid"] == NIL

    listing = await (await client.get("/keys?limit=2&offset=0", headers=AUTH)).json()
    assert (listing["total"], listing["limit"], listing["offset"]) == (5, 2, 0)
    assert listing["results"][0]["uid"] == NIL  # newest first
    created_at = [
        k["createdAt"] for k in (await (await client.get("/keys", headers=AUTH)).json())["results"]
    ]
    assert created_at == sorted(created_at, reverse=True)

    patched = await client.patch(
        f"/keys/{NIL}", json={"name": "dogs", "description": "d"}, headers=AUTH
    )
    assert (await patched.json())["name"] == "dogs"
    cleared = await (
        await client.patch(f"/keys/{NIL}", json={"description": None}, headers=AUTH)
    ).json()
    assert (cleared["name"], cleared["description"]) == ("dogs", None)
    assert cleared["updatedAt"] >= cleared["createdAt"]

    deleted = await client.delete(f"/keys/{NIL}", headers=AUTH)
    assert deleted.status == 204 and await deleted.read() == b""
    missing = await client.get(f"/keys/{NIL}", headers=AUTH)
    assert missing.status == 404
    assert (await missing.json())["message"] == f"API key `{NIL}` not found."
    by_bad_value = await (await client.get("/keys/nope", headers=AUTH)).json()
    assert (by_bad_value["code"], by_bad_value["message"]) == (
        "api_key_not_found",
        "API key `nope` not found.",
    )


async def test_generated_uid_and_duplicate_uid(client: TestClient[Any, Any]) -> None:
    body = {"actions": ["*"], "indexes": ["*"], "expiresAt": None}
    first = await (await client.post("/keys", json=body, headers=AUTH)).json()
    assert parse_uuid(first["uid"]) == first["uid"]
    assert first["key"] == derive_key(MASTER, first["uid"])
    duplicate = await client.post("/keys", json={**body, "uid": first["uid"]}, headers=AUTH)
    assert duplicate.status == 409
    assert await duplicate.json() == {
        "message": f"`uid` field value `{first['uid']}` is already an existing API key.",
        "code": "api_key_already_exists",
        "type": "invalid_request",
        "link": "https://docs.meilisearch.com/errors#api_key_already_exists",
    }


PAST_MESSAGE = (
    "Invalid value at `.expiresAt`: `2010-11-13T00:00:00Z` is not a valid date. It should follow "
    "the RFC 3339 format to represents a date or datetime in the future or specified as a null "
    "value. e.g. 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'.\n"
)
VALID = {"actions": ["search"], "indexes": ["dog"], "expiresAt": None}


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"description": ["doggo"]},
            "invalid_api_key_description",
            "Invalid value type at `.description`: expected a string, but found an array: "
            '`["doggo"]`',
        ),
        (
            {"name": ["doggo"]},
            "invalid_api_key_name",
            'Invalid value type at `.name`: expected a string, but found an array: `["doggo"]`',
        ),
        (
            {"uid": ["doggo"]},
            "invalid_api_key_uid",
            'Invalid value type at `.uid`: expected a string, but found an array: `["doggo"]`',
        ),
        (
            {"uid": "doggo"},
            "invalid_api_key_uid",
            "Invalid value at `.uid`: invalid character: found `o` at 1",
        ),
        (
            {"actions": "doggo"},
            "invalid_api_key_actions",
            'Invalid value type at `.actions`: expected an array, but found a string: `"doggo"`',
        ),
        (
            {"indexes": "doggo"},
            "invalid_api_key_indexes",
            'Invalid value type at `.indexes`: expected an array, but found a string: `"doggo"`',
        ),
        (
            {"indexes": ["good doggo"]},
            "invalid_api_key_indexes",
            "Invalid value at `.indexes[0]`: `good doggo` is not a valid index uid pattern. "
            "Index uid patterns can be an integer or a string containing only alphanumeric "
            "characters, hyphens "
            "(-), underscores (_), and optionally end with a star (*).",
        ),
        (
            {"expires_at": "doggo"},
            "bad_request",
            "Unknown field `expires_at`: did you mean `expiresAt`? expected one of `description`, "
            "`name`, `uid`, `actions`, `indexes`, `expiresAt`",
        ),
        (
            {"indexes": ["doggo"], "expiresAt": None},
            "missing_api_key_actions",
            "Missing field `actions`",
        ),
        (
            {"uid": NIL, "actions": ["*"], "expiresAt": None},
            "missing_api_key_indexes",
            "Missing field `indexes`",
        ),
        (
            {"uid": NIL, "actions": ["*"], "indexes": ["doggo"]},
            "missing_api_key_expires_at",
            "Missing field `expiresAt`",
        ),
        (
            {**VALID, "doggo": "bork"},
            "bad_request",
            "Unknown field `doggo`: expected one of `description`, `name`, `uid`, `actions`, "
            "`indexes`, `expiresAt`",
        ),
        (
            {**VALID, "expiresAt": "2010-11-13T00:00:00Z"},
            "invalid_api_key_expires_at",
            PAST_MESSAGE,
        ),
        (
            {**VALID, "expiresAt": 5},
            "invalid_api_key_expires_at",
            "Invalid value type at `.expiresAt`: expected a string, but found a positive "
            "integer: `5`",
        ),
        (
            {**VALID, "actions": [None]},
            "invalid_api_key_actions",
            "Invalid value type at `.actions[0]`: expected a string, but found null",
        ),
        ([], "bad_request", "Invalid value type: expected an object, but found an array: `[]`"),
    ],
)
async def test_create_validation(
    client: TestClient[Any, Any], body: Any, code: str, message: str
) -> None:
    response = await client.post("/keys", json=body, headers=AUTH)
    assert response.status == 400
    error = await response.json()
    assert (error["code"], error["message"]) == (code, message)


async def test_unknown_action_lists_every_action(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/keys", json={**VALID, "actions": ["search", "doggo"]}, headers=AUTH
    )
    message = (await response.json())["message"]
    assert message.startswith(
        "Unknown value `doggo` at `.actions[1]`: expected one of `*`, `search`, `documents.*`, "
    )
    assert message.endswith("`dynamicSearchRules.delete`, `dynamicSearchRules.*`")


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            {"uid": "x"},
            "immutable_api_key_uid",
            "Immutable field `uid`: expected one of `description`, `name`",
        ),
        (
            {"actions": "x"},
            "immutable_api_key_actions",
            "Immutable field `actions`: expected one of `description`, `name`",
        ),
        (
            {"indexes": "x"},
            "immutable_api_key_indexes",
            "Immutable field `indexes`: expected one of `description`, `name`",
        ),
        (
            {"expiresAt": "x"},
            "immutable_api_key_expires_at",
            "Immutable field `expiresAt`: expected one of `description`, `name`",
        ),
        (
            {"createdAt": "x"},
            "immutable_api_key_created_at",
            "Immutable field `createdAt`: expected one of `description`, `name`",
        ),
        (
            {"updatedAt": "x"},
            "immutable_api_key_updated_at",
            "Immutable field `updatedAt`: expected one of `description`, `name`",
        ),
        (
            {"doggo": "bork"},
            "bad_request",
            "Unknown field `doggo`: expected one of `description`, `name`",
        ),
        (
            {"name": ["doggo"]},
            "invalid_api_key_name",
            'Invalid value type at `.name`: expected a string, but found an array: `["doggo"]`',
        ),
    ],
)
async def test_patch_validation_comes_before_the_lookup(
    client: TestClient[Any, Any], body: Any, code: str, message: str
) -> None:
    response = await client.patch("/keys/doggo", json=body, headers=AUTH)
    error = await response.json()
    assert (response.status, error["code"], error["message"]) == (400, code, message)


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        (
            "offset=doggo",
            "invalid_api_key_offset",
            "Invalid value in parameter `offset`: could not parse `doggo` as a positive integer",
        ),
        (
            "limit=-1",
            "invalid_api_key_limit",
            "Invalid value in parameter `limit`: could not parse `-1` as a positive integer",
        ),
        (
            "doggo=no_limit",
            "bad_request",
            "Unknown parameter `doggo`: expected one of `offset`, `limit`",
        ),
    ],
)
async def test_list_parameters(
    client: TestClient[Any, Any], query: str, code: str, message: str
) -> None:
    response = await client.get(f"/keys?{query}", headers=AUTH)
    error = await response.json()
    assert (response.status, error["code"], error["message"]) == (400, code, message)


async def test_list_offset_past_the_end(client: TestClient[Any, Any]) -> None:
    page = await (await client.get("/keys?offset=10", headers=AUTH)).json()
    assert page == {"results": [], "offset": 10, "limit": 20, "total": 4}


async def test_create_requires_a_json_content_type(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/keys", data=b'{"actions":[]}', headers=AUTH, skip_auto_headers=["Content-Type"]
    )
    assert response.status == 415
    assert (await response.json())["code"] == "missing_content_type"


async def test_keys_routes_need_a_master_key(conn: sqlite3.Connection) -> None:
    async with TestClient(TestServer(make_app(KeyStore(conn, None)))) as client:
        response = await client.get("/keys")
        assert response.status == 401
        assert await response.json() == {
            "message": "Meilisearch is running without a master key. To access this API "
            "endpoint, you must have set a master key at launch.",
            "code": "missing_master_key",
            "type": "auth",
            "link": "https://docs.meilisearch.com/errors#missing_master_key",
        }


async def test_expired_key_is_listed_but_unusable(client: TestClient[Any, Any]) -> None:
    store: KeyStore = client.app[KEY_STORE]
    past = datetime.now(UTC) - timedelta(days=1)
    store.create(ApiKey(NIL, None, None, ("keys.get",), ("*",), past, past, past))
    listed = await (await client.get("/keys", headers=AUTH)).json()
    assert NIL in {k["uid"] for k in listed["results"]}
    response = await client.get(
        "/keys", headers={"Authorization": f"Bearer {derive_key(MASTER, NIL)}"}
    )
    assert response.status == 403
