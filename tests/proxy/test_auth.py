"""Keys and auth through the proxy over real devnodes: keys identical on every node and
usable through Miroir by the value the clients' master key derives, Meilisearch's 401/403
answers, tenant tokens on search only."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from miroir_proxy.cli.processes import LocalNodes
from miroir_proxy.core.tokens import encode

from .devfleet import (
    MASTER,
    MASTER_HEADERS,
    NODE_KEY,
    ProxyClient,
    StartProxy,
    devnodes,
    eventually,
    fresh_uid,
    node_call,
    start,
    wait_task,
)

__all__ = ["devnodes", "start"]

NO_KEY = {"Authorization": ""}


def derived(master_key: str, uid: str) -> str:
    """Meilisearch's key value: hex HMAC-SHA256 of the uid, keyed by the master key."""
    return hmac.new(master_key.encode(), uid.encode(), hashlib.sha256).hexdigest()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def code_of(response: Any) -> tuple[int, str | None]:
    body = await response.json() if response.content_type == "application/json" else {}
    return response.status, body.get("code")


async def make_key(proxy: ProxyClient, **body: Any) -> dict[str, Any]:
    response = await proxy.post("/keys", json={"expiresAt": None, **body})
    assert response.status == 201, await response.text()
    key: dict[str, Any] = await response.json()
    return key


async def test_keys_exist_identically_on_every_node(
    start: StartProxy, devnodes: LocalNodes
) -> None:
    async with start() as proxy:
        key = await make_key(proxy, actions=["indexes.get"], indexes=["*"], name="reader")
        # Each side derives the value from its own master key, as one Meilisearch does.
        assert key["key"] == derived(MASTER, key["uid"]) != derived(NODE_KEY, key["uid"])
        for url in devnodes.urls:
            status, on_node = await node_call(url, "GET", f"/keys/{key['uid']}")
            assert status == 200
            assert (on_node["key"], on_node["name"]) == (derived(NODE_KEY, key["uid"]), "reader")
        assert (await (await proxy.get(f"/keys/{key['key']}")).json())["uid"] == key["uid"]
        chosen = await make_key(proxy, actions=["search"], indexes=["*"], uid=_UID)
        assert chosen["uid"] == _UID
        listed = await (await proxy.get("/keys", params={"limit": "100"})).json()
        assert {key["uid"], _UID} <= {k["uid"] for k in listed["results"]}
        renamed = await proxy.patch(f"/keys/{key['key']}", json={"name": "renamed"})
        assert renamed.status == 200 and (await renamed.json())["name"] == "renamed"
        for url in devnodes.urls:
            assert (await node_call(url, "GET", f"/keys/{key['uid']}"))[1]["name"] == "renamed"
        duplicate = await proxy.post(
            "/keys", json={"actions": ["search"], "indexes": ["*"], "expiresAt": None, "uid": _UID}
        )
        assert await code_of(duplicate) == (409, "api_key_already_exists")
        for uid in (key["uid"], _UID):
            assert (await proxy.delete(f"/keys/{uid}")).status == 204
            for url in devnodes.urls:
                assert (await node_call(url, "GET", f"/keys/{uid}"))[0] == 404
        assert await code_of(await proxy.get(f"/keys/{_UID}")) == (404, "api_key_not_found")


_UID = "01b4bc42-eb33-4041-b481-254d00cce834"


async def test_401_403_matrix(start: StartProxy) -> None:
    async with start() as proxy:
        movies, books = fresh_uid("movies"), fresh_uid("books")
        for uid in (movies, books):
            assert (await wait_task(proxy, await proxy.post("/indexes", json={"uid": uid})))[
                "status"
            ] == "succeeded"
        key = await make_key(proxy, actions=["indexes.get", "search"], indexes=["movies*"])
        scoped = bearer(key["key"])
        assert (await proxy.get("/health", headers=NO_KEY)).status == 200
        assert await code_of(await proxy.get("/indexes", headers=NO_KEY)) == (
            401,
            "missing_authorization_header",
        )
        basic = {"Authorization": f"Basic {key['key']}"}
        assert await code_of(await proxy.get("/indexes", headers=basic)) == (
            401,
            "missing_authorization_header",
        )
        wrong = bearer("not-a-key")
        assert await code_of(await proxy.get("/indexes", headers=wrong)) == (403, "invalid_api_key")
        assert (await proxy.get(f"/indexes/{movies}", headers=scoped)).status == 200
        assert await code_of(await proxy.get(f"/indexes/{books}", headers=scoped)) == (
            403,
            "invalid_api_key",
        )
        listed = await (
            await proxy.get("/indexes", headers=scoped, params={"limit": "1000"})
        ).json()
        assert movies in {i["uid"] for i in listed["results"]}
        assert books not in {i["uid"] for i in listed["results"]}
        for method, path in (
            ("POST", "/indexes"),
            ("GET", "/keys"),
            ("DELETE", f"/indexes/{movies}"),
        ):
            response = await proxy.request(method, path, headers=scoped, json={"uid": "x"})
            assert await code_of(response) == (403, "invalid_api_key"), (method, path)
        assert (await proxy.get("/_miroir/topology", headers=scoped)).status == 403
        assert (await proxy.get("/indexes", headers=MASTER_HEADERS)).status == 200


async def test_new_and_deleted_keys_are_seen_at_once(start: StartProxy) -> None:
    async with start() as proxy:
        uid = fresh_uid("fresh")
        await wait_task(proxy, await proxy.post("/indexes", json={"uid": uid}))
        key = await make_key(proxy, actions=["*"], indexes=["*"])
        assert (await proxy.get(f"/indexes/{uid}", headers=bearer(key["key"]))).status == 200
        assert (await proxy.delete(f"/keys/{key['uid']}")).status == 204
        response = await proxy.get(f"/indexes/{uid}", headers=bearer(key["key"]))
        assert await code_of(response) == (403, "invalid_api_key")


async def test_tenant_tokens_only_on_search(start: StartProxy) -> None:
    async with start() as proxy:
        movies, books = fresh_uid("movies"), fresh_uid("books")
        for uid in (movies, books):
            await wait_task(
                proxy, await proxy.post("/indexes", json={"uid": uid, "primaryKey": "id"})
            )
        rules = {"searchRules": {movies: {"filter": "genre = horror"}}}
        await wait_task(
            proxy,
            await proxy.patch(
                f"/indexes/{movies}/settings", json={"filterableAttributes": ["genre"]}
            ),
        )
        docs = [{"id": i, "genre": "horror" if i % 2 else "comedy"} for i in range(10)]
        added = await wait_task(proxy, await proxy.post(f"/indexes/{movies}/documents", json=docs))
        assert added["status"] == "succeeded", added
        parent = await make_key(proxy, actions=["search"], indexes=["*"])
        token = encode({"apiKeyUid": parent["uid"], "exp": None, **rules}, parent["key"])
        tenant = bearer(token)

        async def only_horror() -> bool:
            # A write succeeds at quorum; the other group may still be indexing.
            response = await proxy.post(
                f"/indexes/{movies}/search", json={"limit": 50}, headers=tenant
            )
            assert response.status == 200, await response.text()
            hits = (await response.json())["hits"]
            return sorted(h["id"] for h in hits) == [1, 3, 5, 7, 9]

        await eventually(only_horror, "the tenant token's filter applies")
        other = await proxy.post(f"/indexes/{books}/search", json={}, headers=tenant)
        assert await code_of(other) == (403, "invalid_api_key")
        assert await code_of(await proxy.get(f"/indexes/{movies}", headers=tenant)) == (
            403,
            "invalid_api_key",
        )
        forged = bearer(encode({"apiKeyUid": parent["uid"], **rules}, "wrong-secret"))
        response = await proxy.post(f"/indexes/{movies}/search", json={}, headers=forged)
        assert await code_of(response) == (403, "invalid_api_key")


async def test_without_a_master_key_only_keys_are_closed(start: StartProxy) -> None:
    async with start(master_key=None) as proxy:
        response = await proxy.get("/indexes", headers=NO_KEY)
        assert response.status == 200
        assert await code_of(await proxy.get("/keys", headers=NO_KEY)) == (
            401,
            "missing_master_key",
        )
        assert await code_of(await proxy.post("/keys", json={}, headers=NO_KEY)) == (
            401,
            "missing_master_key",
        )

        async def open_search() -> bool:
            return (await proxy.get("/stats", headers=NO_KEY)).status == 200

        await eventually(open_search, "stats answer without a key")
