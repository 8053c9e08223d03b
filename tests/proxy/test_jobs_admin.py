"""The coordination admin routes, through two proxy apps ("pods") sharing one state file;
jobs are queued through the scaffold plugin's routes (`scaffold/jobs.py`)."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .podkit import ADMIN, Client, two_pods

DEADLINE_S = 5.0


@pytest.fixture
async def pods(tmp_path: Path) -> AsyncIterator[list[Client]]:
    async with two_pods(tmp_path, {"peer_heartbeat_ms": 20, "job_claim_ttl_ms": 300}) as clients:
        yield clients


async def get_json(client: Client, path: str) -> Any:
    response = await client.get(path, headers=ADMIN)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_demo_job_queued_on_one_pod_is_shared_and_reported_by_the_other(
    pods: list[Client],
) -> None:
    first, second = pods
    async with asyncio.timeout(DEADLINE_S):
        while (await get_json(second, "/_miroir/coordination"))["livePeers"] != ["pod-1", "pod-2"]:
            await asyncio.sleep(0.01)
    job = {"kind": "sleep-chunks", "jobId": "demo", "chunks": 8, "steps": 2, "stepMs": 5}
    response = await first.post("/_miroir/scaffold/jobs", json=job, headers=ADMIN)
    assert response.status == 202
    assert await response.json() == {"jobId": "demo", "created": True}
    again = await first.post("/_miroir/scaffold/jobs", json=job, headers=ADMIN)
    assert (await again.json())["created"] is False

    async with asyncio.timeout(DEADLINE_S):
        while not (progress := await get_json(second, "/_miroir/scaffold/jobs/demo"))["finished"]:
            await asyncio.sleep(0.01)
    assert (progress["total"], progress["done"], progress["claimed"]) == (8, 8, 0)
    assert progress["duplicated"] is False
    assert await get_json(first, "/_miroir/jobs/demo") == {
        key: progress[key] for key in ("jobId", "total", "done", "claimed", "finished")
    }
    workers = {token for record in progress["chunks"] for token in record["done_by"]}
    assert {token.split("/")[0] for token in workers} <= {"pod-1", "pod-2"}
    assert all(record["next"] == 2 for record in progress["chunks"])
    status = await get_json(first, "/_miroir/coordination")
    assert (status["podId"], status["queueDepth"], status["jobsInProgress"]) == ("pod-1", 0, 0)
    metrics = await (await first.get("/_miroir/metrics", headers=ADMIN)).text()
    assert "miroir_background_queue_depth " in metrics
    assert "miroir_jobs_in_progress 0.0" in metrics


async def test_job_routes_validate_and_need_the_admin_key(pods: list[Client]) -> None:
    client = pods[0]
    assert (await client.get("/_miroir/coordination")).status == 401
    missing = await client.get("/_miroir/jobs/nope", headers=ADMIN)
    assert missing.status == 404
    assert (await missing.json())["code"] == "miroir_job_not_found"
    for body in (
        {"kind": "reshard", "jobId": "x", "chunks": 1, "steps": 1, "stepMs": 0},
        {"kind": "sleep-chunks", "jobId": "", "chunks": 1, "steps": 1, "stepMs": 0},
        {"kind": "sleep-chunks", "jobId": "x", "chunks": 0, "steps": 1, "stepMs": 0},
        {"kind": "sleep-chunks", "jobId": "x", "chunks": 1, "steps": True, "stepMs": 0},
    ):
        response = await client.post("/_miroir/scaffold/jobs", json=body, headers=ADMIN)
        assert response.status == 400, body
        assert (await response.json())["code"] == "bad_request"
