"""The devnode's fault injection (`/_devnode/faults`): delays, error rates and a paused node
look to clients exactly like a slow, broken or hung Meilisearch."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from miroir_proxy.cli.processes import NodeProcess

FAULTS = "/_devnode/faults"


def auth(node: NodeProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.master_key}"}


def put_faults(node: NodeProcess, **faults: Any) -> dict[str, Any]:
    response = requests.put(node.url + FAULTS, json=faults, headers=auth(node), timeout=5)
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


def list_indexes(node: NodeProcess, timeout_s: float = 5.0) -> requests.Response:
    return requests.get(node.url + "/indexes", headers=auth(node), timeout=timeout_s)


def test_faults_are_off_by_default(fault_node: NodeProcess) -> None:
    response = requests.get(fault_node.url + FAULTS, headers=auth(fault_node), timeout=5)
    assert response.status_code == 200
    faults = response.json()
    assert set(faults) >= {"delayMs", "errorRate", "paused", "maxConcurrent"}
    assert faults["delayMs"] == 0
    assert faults["errorRate"] == 0
    assert faults["paused"] is False


def test_the_faults_route_needs_the_master_key(fault_node: NodeProcess) -> None:
    assert requests.get(fault_node.url + FAULTS, timeout=5).status_code in (401, 403)
    wrong = {"Authorization": "Bearer nope"}
    assert (
        requests.put(fault_node.url + FAULTS, json={}, headers=wrong, timeout=5).status_code == 403
    )


def test_delay(fault_node: NodeProcess) -> None:
    assert put_faults(fault_node, delayMs=300)["delayMs"] == 300
    started = time.monotonic()
    assert list_indexes(fault_node).status_code == 200
    assert time.monotonic() - started >= 0.3

    put_faults(fault_node, delayMs=0)
    started = time.monotonic()
    assert list_indexes(fault_node).status_code == 200
    assert time.monotonic() - started < 0.3


def test_error_rate_one_answers_a_500_error_object(fault_node: NodeProcess) -> None:
    put_faults(fault_node, errorRate=1)
    for _ in range(3):
        response = list_indexes(fault_node)
        assert response.status_code == 500
        error = response.json()
        assert set(error) == {"message", "code", "type", "link"}
        assert error["type"] == "internal"
        assert error["link"] == "https://docs.meilisearch.com/errors#" + error["code"]
    put_faults(fault_node, errorRate=0)
    assert list_indexes(fault_node).status_code == 200


def test_paused_node_accepts_but_never_answers(fault_node: NodeProcess) -> None:
    put_faults(fault_node, paused=True)
    with pytest.raises(requests.Timeout):
        list_indexes(fault_node, timeout_s=0.5)
    put_faults(fault_node, paused=False)
    assert list_indexes(fault_node).status_code == 200


def test_max_concurrent_serializes_requests(fault_node: NodeProcess) -> None:
    put_faults(fault_node, delayMs=200, maxConcurrent=1)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses = list(pool.map(lambda _: list_indexes(fault_node).status_code, range(3)))
    assert statuses == [200, 200, 200]
    assert time.monotonic() - started >= 0.6

    put_faults(fault_node, maxConcurrent=None)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(lambda _: list_indexes(fault_node).status_code, range(3))) == [200] * 3
    assert time.monotonic() - started < 0.6


def test_a_node_without_fault_injection_has_no_faults_route(devnode: NodeProcess) -> None:
    response = requests.get(devnode.url + FAULTS, headers=auth(devnode), timeout=5)
    assert response.status_code == 404
