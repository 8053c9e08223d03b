"""The lease demo of the scaffold plugin (`scaffold/leases.py`), through two proxy apps
("pods") sharing one state file.

The multi-process proof (kill -9 of the holder) is in `tests/proxy/multipod/`; this checks
the hook itself: one holder, the phase machine run once, a clean hand-over on leave.
"""

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .podkit import ADMIN, Client, two_pods

DEADLINE_S = 5.0
DEMO = "/_miroir/scaffold/leases/rebalance"


@pytest.fixture
async def pods(tmp_path: Path) -> AsyncIterator[list[Client]]:
    async with two_pods(tmp_path, {"lease_ttl_ms": 400, "lease_renew_ms": 100}) as clients:
        yield clients


async def view(client: Client) -> Any:
    response = await client.get(DEMO, headers=ADMIN)
    assert response.status == 200, await response.text()
    return await response.json()


async def views_until(pods: list[Client], check: Any, what: str) -> list[Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        views = [await view(pod) for pod in pods]
        if check(views):
            return views
        assert time.monotonic() < deadline, f"{what}: {views}"


async def test_one_pod_leads_runs_the_phases_once_and_hands_over_on_leave(
    pods: list[Client],
) -> None:
    body = {"operation": "op-1", "phases": 3, "stepMs": 10}
    for pod in pods:
        response = await pod.post(DEMO, json=body, headers=ADMIN)
        assert response.status == 202
        assert await response.json() == {"name": "rebalance", "joined": True}
    again = await pods[0].post(DEMO, json=body, headers=ADMIN)
    assert (await again.json())["joined"] is False

    views = await views_until(pods, lambda vs: any(v["finished"] for v in vs), "no pod finished")
    (leader,) = [i for i, v in enumerate(views) if v["finished"]]
    assert [v["held"] for v in views].count(True) <= 1
    state = views[leader]["state"]
    assert state["phase"] == "done"
    assert [r["phase"] for r in state["data"]["ran"]] == ["p0", "p1", "p2"]
    assert {r["by"] for r in state["data"]["ran"]} == {views[leader]["token"]}
    assert views[leader]["startedFrom"] == [None]

    left = await pods[leader].delete(DEMO, headers=ADMIN)
    assert await left.json() == {"left": True}
    follower = pods[1 - leader]
    # Released, not expired: the follower leads at its next attempt and finds the work done.
    (after,) = await views_until([follower], lambda vs: vs[0]["finished"], "no hand-over")
    assert after["startedFrom"] == ["done"]
    assert after["state"]["data"] == state["data"]
    missing = await pods[leader].get(DEMO, headers=ADMIN)
    assert missing.status == 404
    assert await (await follower.delete(DEMO, headers=ADMIN)).json() == {"left": True}


async def test_demo_routes_validate_and_need_the_admin_key(pods: list[Client]) -> None:
    assert (
        await pods[0].post(DEMO, json={"operation": "x", "phases": 1, "stepMs": 1})
    ).status == 401
    bad = await pods[0].post(DEMO, json={"operation": "", "phases": 1, "stepMs": 1}, headers=ADMIN)
    assert bad.status == 400
    bad = await pods[0].post(DEMO, json={"operation": "x", "phases": 0, "stepMs": 1}, headers=ADMIN)
    assert bad.status == 400
    left = await pods[0].delete(DEMO, headers=ADMIN)
    assert await left.json() == {"left": False}
