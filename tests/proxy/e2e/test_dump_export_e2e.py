"""`POST /dumps` through a real `miroir-proxy` process over six nodes (RG=2, RF=2, S=16),
driven by the official SDK: the downloaded dump follows MEILI_DUMP.md and holds exactly
what the cluster holds."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from ..dumpcheck import assert_same_contents, cluster_contents, read_v6_dump
from .conftest import MASTER_KEY, StartClusters, http, sdk, wait_done

DUMP_UID = re.compile(r"^[0-9]{8}-[0-9]{9}$")


def _load(client: Any) -> None:
    movies = [{"id": i, "title": f"movie {i}", "year": 1950 + i % 70} for i in range(1_200)]
    people = [{"pid": f"p-{i}", "name": f"person {i}", "born": 1900 + i % 99} for i in range(300)]
    wait_done(client, client.create_index("movies", {"primaryKey": "id"}).task_uid)
    movies_index = client.index("movies")
    wait_done(client, movies_index.update_filterable_attributes(["year"]).task_uid)
    wait_done(client, movies_index.update_sortable_attributes(["year"]).task_uid)
    wait_done(client, movies_index.add_documents(movies).task_uid)
    people_index = client.index("people")
    wait_done(client, people_index.add_documents(people, primary_key="pid").task_uid)
    wait_done(client, people_index.update_distinct_attribute("born").task_uid)
    client.create_key({"actions": ["search"], "indexes": ["movies"], "expiresAt": None})


async def test_a_dump_made_through_the_proxy_process_is_the_cluster(
    clusters: StartClusters,
) -> None:
    (cluster,) = clusters(1)
    client = sdk(cluster.url)
    _load(client)
    task = wait_done(client, client.create_dump().task_uid)
    assert task.status == "succeeded", task
    uid = task.details["dumpUid"]
    assert DUMP_UID.match(uid), task.details

    response = http("GET", f"{cluster.url}/_miroir/dumps/{uid}")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/gzip"
    parsed = read_v6_dump(response.content)
    assert set(parsed.indexes) == {"movies", "people"}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    async with aiohttp.ClientSession(base_url=cluster.url, headers=headers) as session:
        contents = await cluster_contents(session)
    assert_same_contents(parsed, contents)
    movies = parsed.indexes["movies"].documents or []
    assert len(movies) == 1_200 and {d["id"] for d in movies} == set(range(1_200))
