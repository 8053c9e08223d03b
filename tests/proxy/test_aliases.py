"""Atomic aliases through two in-process pods sharing one SQLite store: every client route
accepts an alias, a flip answers once both pods route with it, and the names stay apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import Fleet, ProxyClient
from .searchfleet import create_index, proxy_app, search_fleet

ALIASES = "/_miroir/aliases"


def _config(fleet: Fleet, tmp_path: Path, pod_id: str) -> dict[str, Any]:
    return fleet.config(
        tmp_path, coordination={"pod_id": pod_id, "topology_poll_ms": 100, "peer_heartbeat_ms": 100}
    )


async def _ids(client: ProxyClient, index: str) -> list[int]:
    response = await client.post(f"/indexes/{index}/search", json={"q": ""})
    assert response.status == 200, await response.text()
    return sorted(hit["id"] for hit in (await response.json())["hits"])


async def _error(response: Any, status: int, code: str) -> str:
    body = await response.json()
    assert response.status == status, body
    assert body["code"] == code and set(body) == {"message", "code", "type", "link"}
    return str(body["message"])


async def test_an_alias_serves_every_route_and_flips_on_every_pod_at_once(
    tmp_path: Path,
) -> None:
    async with search_fleet(groups=1, nodes_per_group=2) as fleet:
        configs = [_config(fleet, tmp_path, pod) for pod in ("pod-a", "pod-b")]
        async with proxy_app(configs[0]) as a, proxy_app(configs[1]) as b:
            for uid, doc in (("v1", 1), ("v2", 2)):
                await create_index(a, uid)
                write = await a.post(f"/indexes/{uid}/documents", json=[{"id": doc}])
                assert write.status == 202

            created = await a.post(ALIASES, json={"name": "books", "target": "v1"})
            assert created.status == 201, await created.text()
            assert (await created.json())["target"] == "v1"
            assert await _ids(b, "books") == [1]
            # A write through the alias lands in its target.
            write = await b.post("/indexes/books/documents", json=[{"id": 3}])
            assert write.status == 202
            assert (await write.json())["indexUid"] == "v1"
            assert await _ids(a, "v1") == [1, 3]

            # The flip answers once both pods route with it: the next search anywhere
            # follows it.
            flipped = await a.put(f"{ALIASES}/books", json={"target": "v2"})
            assert flipped.status == 200, await flipped.text()
            assert await _ids(b, "books") == [2]
            document = await b.get("/indexes/books/documents/2")
            assert document.status == 200 and (await document.json())["id"] == 2
            tasks = await b.get("/tasks", params={"indexUids": "books"})
            assert {t["indexUid"] for t in (await tasks.json())["results"]} == {"v2"}
            view = await (await b.get(f"{ALIASES}/books")).json()
            assert [(f["previous"], f["target"]) for f in view["history"]] == [
                (None, "v1"),
                ("v1", "v2"),
            ]

            # Names stay apart, targets must exist, an alias names an index.
            conflict = await a.post(ALIASES, json={"name": "v1", "target": "v2"})
            await _error(conflict, 409, "miroir_alias_conflict")
            await _error(
                await a.post("/indexes", json={"uid": "books"}), 409, "miroir_alias_conflict"
            )
            missing = await a.put(f"{ALIASES}/other", json={"target": "nope"})
            await _error(missing, 404, "index_not_found")
            chained = await a.put(f"{ALIASES}/other", json={"target": "books"})
            await _error(chained, 404, "index_not_found")
            await _error(await a.get(f"{ALIASES}/nope"), 404, "miroir_alias_not_found")
            bad = await a.put(f"{ALIASES}/b%20ad", json={"target": "v1"})
            await _error(bad, 400, "invalid_index_uid")

            removed = await a.delete(f"{ALIASES}/books")
            assert removed.status == 200
            gone = await b.post("/indexes/books/search", json={"q": ""})
            await _error(gone, 404, "index_not_found")
            assert (await (await b.get(ALIASES)).json())["results"] == []
