"""The common client errors look the same through the proxy as from one node: the same HTTP
status, `code` and `type` (messages may name Miroir's internals, so they are not compared).

Errors Meilisearch reports asynchronously (a bad document fails its task) are compared on
the failed task's error, after checking both sides accepted the request the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import meilisearch
import pytest

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .conftest import MASTER_KEY, http, sdk, wait_done

UID = "e2e_errors"
MISSING = "e2e_no_such_index"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    json: Any = None
    data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = MASTER_KEY
    expected: tuple[int, str] = (400, "")


CASES = {
    "index_not_found": Case("GET", f"/indexes/{MISSING}", expected=(404, "index_not_found")),
    "index_not_found-search": Case(
        "POST", f"/indexes/{MISSING}/search", json={}, expected=(404, "index_not_found")
    ),
    "index_not_found-document": Case(
        "GET", f"/indexes/{MISSING}/documents/1", expected=(404, "index_not_found")
    ),
    "index_not_found-settings": Case(
        "GET", f"/indexes/{MISSING}/settings", expected=(404, "index_not_found")
    ),
    "document_not_found": Case(
        "GET", f"/indexes/{UID}/documents/424242", expected=(404, "document_not_found")
    ),
    "invalid_search_filter-syntax": Case(
        "POST", f"/indexes/{UID}/search", json={"filter": "color ="},
        expected=(400, "invalid_search_filter"),
    ),
    "invalid_search_filter-not-filterable": Case(
        "POST", f"/indexes/{UID}/search", json={"filter": "title = x"},
        expected=(400, "invalid_search_filter"),
    ),
    "invalid_search_filter-get": Case(
        "GET", f"/indexes/{UID}/search?filter=color%20%3D", expected=(400, "invalid_search_filter")
    ),
    "invalid_search_sort": Case(
        "POST", f"/indexes/{UID}/search", json={"sort": ["title:asc"]},
        expected=(400, "invalid_search_sort"),
    ),
    "invalid_search_limit": Case(
        "POST", f"/indexes/{UID}/search", json={"limit": "ten"},
        expected=(400, "invalid_search_limit"),
    ),
    "bad_request-unknown-search-field": Case(
        "POST", f"/indexes/{UID}/search", json={"nope": 1}, expected=(400, "bad_request")
    ),
    "invalid_index_uid": Case(
        "POST", "/indexes", json={"uid": "bad uid!"}, expected=(400, "invalid_index_uid")
    ),
    "missing_payload": Case(
        "POST", f"/indexes/{UID}/documents", data=b"", headers=JSON,
        expected=(400, "missing_payload"),
    ),
    "malformed_payload": Case(
        "POST", f"/indexes/{UID}/documents", data=b"[{nope", headers=JSON,
        expected=(400, "malformed_payload"),
    ),
    "missing_content_type": Case(
        "POST", f"/indexes/{UID}/documents", data=b"[]", expected=(415, "missing_content_type")
    ),
    "invalid_content_type": Case(
        "POST", f"/indexes/{UID}/documents", data=b"[]", headers={"Content-Type": "text/plain"},
        expected=(415, "invalid_content_type"),
    ),
    "invalid_api_key": Case("GET", "/indexes", key="wrong-key", expected=(403, "invalid_api_key")),
    "missing_authorization_header": Case(
        "GET", "/indexes", key=None, expected=(401, "missing_authorization_header")
    ),
    "task_not_found": Case("GET", "/tasks/987654321", expected=(404, "task_not_found")),
    "invalid_task_statuses": Case(
        "GET", "/tasks?statuses=bogus", expected=(400, "invalid_task_statuses")
    ),
    "api_key_not_found": Case(
        "GET", "/keys/01234567-89ab-cdef-0123-456789abcdef", expected=(404, "api_key_not_found")
    ),
    "invalid_settings_filterable_attributes": Case(
        "PATCH", f"/indexes/{UID}/settings", json={"filterableAttributes": "color"},
        expected=(400, "invalid_settings_filterable_attributes"),
    ),
    "malformed_payload-settings-subroute": Case(
        "PUT", f"/indexes/{UID}/settings/ranking-rules", data=b"nul", headers=JSON,
        expected=(400, "malformed_payload"),
    ),
    "missing_content_type-settings-null": Case(
        "PUT", f"/indexes/{UID}/settings/ranking-rules", data=b"null",
        expected=(415, "missing_content_type"),
    ),
    "invalid_settings_ranking_rules-subroute": Case(
        "PUT", f"/indexes/{UID}/settings/ranking-rules", json=["nope"],
        expected=(400, "invalid_settings_ranking_rules"),
    ),
    "invalid_api_key-bearer-without-token": Case(
        "GET", "/indexes", key=None, headers={"Authorization": "Bearer"},
        expected=(403, "invalid_api_key"),
    ),
    "missing_authorization_header-other-scheme": Case(
        "GET", "/indexes", key=None, headers={"Authorization": "Basic abc"},
        expected=(401, "missing_authorization_header"),
    ),
    "missing_task_filters-delete": Case("DELETE", "/tasks", expected=(400, "missing_task_filters")),
    "invalid_task_uids-delete": Case(
        "DELETE", "/tasks?uids=x", expected=(400, "invalid_task_uids")
    ),
}  # fmt: skip

# Meilisearch accepts these (202) and fails the task with the code.
ASYNC_CASES = {
    "invalid_document_id": [{"id": "bad id!"}],
    "missing_document_id": [{"title": "no id"}],
}


@pytest.fixture(scope="module")
def urls(e2e_cluster: DevCluster, devnode: NodeProcess) -> dict[str, str]:
    found = {"proxy": e2e_cluster.url, "node": devnode.url}
    for url in found.values():
        client = sdk(url)
        tasks = [
            client.create_index(UID, {"primaryKey": "id"}),
            client.index(UID).update_filterable_attributes(["color"]),
            client.index(UID).add_documents([{"id": 1, "title": "one", "color": "red"}]),
        ]
        for task in tasks:
            assert wait_done(client, task.task_uid).status == "succeeded"
    return found


def ask(url: str, case: Case) -> tuple[int, Any]:
    answer = http(
        case.method,
        url + case.path,
        key=case.key,
        json=case.json,
        data=case.data,
        headers=case.headers,
    )
    return answer.status_code, answer.json()


@pytest.mark.parametrize("name", list(CASES))
def test_error_status_code_and_type_match_one_node(urls: dict[str, str], name: str) -> None:
    case = CASES[name]
    (p_status, p_body), (n_status, n_body) = (ask(urls[t], case) for t in ("proxy", "node"))
    assert (n_status, n_body["code"]) == case.expected, n_body
    assert (p_status, p_body.get("code"), p_body.get("type")) == (
        n_status,
        n_body["code"],
        n_body["type"],
    ), p_body
    assert set(p_body) == set(n_body)


@pytest.mark.parametrize("code", list(ASYNC_CASES))
def test_bad_documents_fail_like_one_node(urls: dict[str, str], code: str) -> None:
    outcomes = []
    for target in ("proxy", "node"):
        status, body = ask(
            urls[target], Case("POST", f"/indexes/{UID}/documents", ASYNC_CASES[code])
        )
        if status != 202:
            outcomes.append((status, body.get("code"), body.get("type")))
            continue
        task = wait_done(sdk(urls[target]), body["taskUid"])
        assert task.status == "failed", task
        outcomes.append((status, task.error["code"], task.error["type"]))
    proxy, node = outcomes
    assert node == (202, code, "invalid_request")
    assert proxy == node


def test_an_existing_index_fails_its_creation_task_like_one_node(urls: dict[str, str]) -> None:
    errors = []
    for url in urls.values():
        client: meilisearch.Client = sdk(url)
        task = wait_done(client, client.create_index(UID).task_uid)
        errors.append((task.status, task.error["code"], task.error["type"]))
    assert errors == [("failed", "index_already_exists", "invalid_request")] * 2
