"""API keys and authorization through the official SDK: CRUD, the key derivation, the
401/403 matrix, a search-only key, scoped keys and tenant tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import meilisearch
import pytest
import requests
from meilisearch.errors import MeilisearchApiError
from meilisearch.index import Index
from meilisearch.models.key import Key

from miroir_proxy.cli.processes import NodeProcess, poll_until

MakeIndex = Callable[..., Index]
ApiCall = Callable[..., requests.Response]

MOVIES = [
    {"id": 1, "title": "Superbad", "genre": "comedy", "year": 2007},
    {"id": 2, "title": "Heat", "genre": "crime", "year": 1995},
    {"id": 3, "title": "Airplane", "genre": "comedy", "year": 1980},
    {"id": 4, "title": "Booksmart", "genre": "comedy", "year": 2019},
]


@pytest.fixture
def movies(make_index: MakeIndex) -> Index:
    make_index("books", [{"id": 1, "title": "Dune"}])
    return make_index("movies", MOVIES, settings={"filterableAttributes": ["genre", "year"]})


def new_key(
    client: meilisearch.Client, actions: list[str], indexes: list[str], **extra: Any
) -> Key:
    return client.create_key({"actions": actions, "indexes": indexes, "expiresAt": None, **extra})


def test_default_keys_exist(client: meilisearch.Client) -> None:
    names = {key.name: key for key in client.get_keys().results}
    assert names["Default Search API Key"].actions == ["search"]
    assert names["Default Admin API Key"].actions == ["*"]
    assert names["Default Search API Key"].indexes == ["*"]
    assert names["Default Admin API Key"].expires_at is None


def test_key_crud(client: meilisearch.Client, master_key: str) -> None:
    uid = "0b6f1b2a-5b0e-4b7e-9f4c-2c1d3e4f5a6b"
    created = client.create_key(
        {
            "uid": uid,
            "name": "indexer",
            "description": "adds books",
            "actions": ["documents.add", "indexes.get"],
            "indexes": ["books", "mov*"],
            # A fractional part, so the SDK can parse the echo from any server.
            "expiresAt": "2099-01-01T00:00:00.5Z",
        }
    )
    assert created.uid == uid
    assert created.key == hmac.new(master_key.encode(), uid.encode(), hashlib.sha256).hexdigest()
    assert created.actions == ["documents.add", "indexes.get"]
    assert created.indexes == ["books", "mov*"]
    assert created.expires_at == datetime(2099, 1, 1, 0, 0, 0, 500_000)

    assert client.get_key(uid).key == created.key
    assert client.get_key(created.key).uid == uid
    listed = client.get_keys()
    assert listed.results[0].uid == uid  # newest first
    assert listed.total == len(listed.results)

    updated = client.update_key(uid, {"name": "renamed", "description": None})
    assert updated.name == "renamed"
    assert updated.description is None
    assert updated.actions == created.actions

    with pytest.raises(MeilisearchApiError) as err:
        client.update_key(uid, {"actions": ["*"]})
    assert err.value.code == "immutable_api_key_actions"

    assert client.delete_key(uid) == 204
    with pytest.raises(MeilisearchApiError) as err:
        client.get_key(uid)
    assert err.value.code == "api_key_not_found"
    assert err.value.status_code == 404


def test_key_creation_requires_fields(client: meilisearch.Client) -> None:
    with pytest.raises(MeilisearchApiError) as err:
        client.create_key({"indexes": ["*"], "expiresAt": None})
    assert err.value.code == "missing_api_key_actions"
    with pytest.raises(MeilisearchApiError) as err:
        client.create_key({"actions": ["search"], "expiresAt": None})
    assert err.value.code == "missing_api_key_indexes"


def test_key_expiry(client: meilisearch.Client, movies: Index, api: ApiCall) -> None:
    with pytest.raises(MeilisearchApiError) as err:
        client.create_key({"actions": ["search"], "indexes": ["*"], "expiresAt": "2001-01-01"})
    assert err.value.code == "invalid_api_key_expires_at"

    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    key = client.create_key({"actions": ["search"], "indexes": ["*"], "expiresAt": soon}).key
    assert api("POST", "/indexes/movies/search", key=key, json={}).status_code == 200
    poll_until(
        lambda: api("POST", "/indexes/movies/search", key=key, json={}).status_code == 403,
        timeout_s=5.0,
        what="key expiry",
    )


def test_authorization_matrix(
    client: meilisearch.Client, movies: Index, api: ApiCall, master_key: str
) -> None:
    search_key = new_key(client, ["search"], ["*"]).key
    admin_key = next(k.key for k in client.get_keys().results if k.actions == ["*"])

    def status(method: str, path: str, key: str | None, **kw: Any) -> tuple[int, str | None]:
        response = api(method, path, key=key, **kw)
        code = response.json().get("code") if response.content else None
        return response.status_code, code

    assert status("GET", "/health", None) == (200, None)
    assert status("GET", "/indexes", None) == (401, "missing_authorization_header")
    assert status("GET", "/indexes", None, headers={"Authorization": f"Basic {master_key}"}) == (
        401,
        "missing_authorization_header",
    )
    assert status("GET", "/indexes", "not-a-key") == (403, "invalid_api_key")
    assert status("GET", "/indexes", master_key)[0] == 200
    assert status("GET", "/keys", admin_key)[0] == 200

    assert status("POST", "/indexes/movies/search", search_key, json={"q": "heat"})[0] == 200
    assert status("GET", "/indexes/movies/search?q=heat", search_key)[0] == 200
    assert status("POST", "/indexes", search_key, json={"uid": "x"}) == (403, "invalid_api_key")
    assert status("GET", "/keys", search_key) == (403, "invalid_api_key")
    assert status("GET", "/indexes/movies/documents", search_key) == (403, "invalid_api_key")
    assert status("GET", "/tasks", search_key) == (403, "invalid_api_key")


def test_sdk_without_a_key_is_refused(devnode: NodeProcess) -> None:
    # The SDK then sends `Authorization: Bearer None`: a wrong key, not a missing header.
    with pytest.raises(MeilisearchApiError) as err:
        meilisearch.Client(devnode.url).get_indexes()
    assert err.value.status_code == 403
    assert err.value.code == "invalid_api_key"


def test_key_scoped_to_indexes_and_actions(
    client: meilisearch.Client, movies: Index, api: ApiCall
) -> None:
    reader = new_key(client, ["documents.get"], ["mov*"]).key
    assert api("GET", "/indexes/movies/documents", key=reader).status_code == 200
    assert api("GET", "/indexes/books/documents", key=reader).status_code == 403
    assert api("POST", "/indexes/movies/search", key=reader, json={}).status_code == 403

    key_reader = new_key(client, ["keys.get"], ["*"]).key
    assert api("GET", "/keys", key=key_reader).status_code == 200
    created = api("POST", "/keys", key=key_reader, json={"actions": ["*"], "indexes": ["*"]})
    assert created.status_code == 403

    writer = new_key(client, ["documents.*"], ["movies"]).key
    added = api("POST", "/indexes/movies/documents", key=writer, json=[{"id": 9, "title": "Up"}])
    assert added.status_code == 202
    assert added.json()["taskUid"] >= 0


def test_search_only_key_through_the_sdk(
    client: meilisearch.Client, movies: Index, devnode: NodeProcess
) -> None:
    search_key = new_key(client, ["search"], ["movies"]).key
    searcher = meilisearch.Client(devnode.url, search_key)
    assert len(searcher.index("movies").search("")["hits"]) == 4
    with pytest.raises(MeilisearchApiError) as err:
        searcher.index("books").search("")
    assert err.value.code == "invalid_api_key"
    with pytest.raises(MeilisearchApiError) as err:
        searcher.index("movies").add_documents([{"id": 5}])
    assert err.value.status_code == 403


def test_tenant_token_search_rules_restrict_results(
    client: meilisearch.Client, movies: Index, devnode: NodeProcess, master_key: str
) -> None:
    parent = new_key(client, ["search"], ["*"])
    token = client.generate_tenant_token(
        parent.uid, {"movies": {"filter": "genre = comedy"}}, api_key=parent.key
    )
    assert json.loads(_b64decode(token.split(".")[1]))["exp"] is None
    tenant = meilisearch.Client(devnode.url, token)

    hits = tenant.index("movies").search("")["hits"]
    assert sorted(hit["id"] for hit in hits) == [1, 3, 4]
    narrowed = tenant.index("movies").search("", {"filter": "year > 2000"})["hits"]
    assert sorted(hit["id"] for hit in narrowed) == [1, 4]

    with pytest.raises(MeilisearchApiError) as err:
        tenant.index("books").search("")
    assert err.value.code == "invalid_api_key"
    with pytest.raises(MeilisearchApiError) as err:
        tenant.index("movies").get_documents()
    assert err.value.status_code == 403

    everything = client.generate_tenant_token(
        parent.uid, ["*"], api_key=parent.key, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    assert len(meilisearch.Client(devnode.url, everything).index("books").search("")["hits"]) == 1

    by_master = client.generate_tenant_token(parent.uid, ["*"], api_key=master_key)
    with pytest.raises(MeilisearchApiError) as err:
        meilisearch.Client(devnode.url, by_master).index("movies").search("")
    assert err.value.code == "invalid_api_key"


def test_expired_tenant_token_is_rejected(
    client: meilisearch.Client, movies: Index, api: ApiCall
) -> None:
    parent = new_key(client, ["search"], ["*"])
    expired = _sign(
        {"apiKeyUid": parent.uid, "searchRules": ["*"], "exp": int(time.time()) - 60}, parent.key
    )
    response = api("POST", "/indexes/movies/search", key=expired, json={})
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_api_key"
    assert response.json()["message"].startswith("Tenant token expired.")


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _sign(payload: dict[str, Any], secret: str) -> str:
    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = encode(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
    body = encode(json.dumps(payload).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{encode(signature)}"
