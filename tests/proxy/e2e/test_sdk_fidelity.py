"""What the parity harness (`test_sdk_parity.py`) once listed as known differences, each
asked through the HTTP API of the proxy and of one devnode and compared (issue 12 §5).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import meilisearch
import pytest

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .conftest import MASTER_KEY, http, sdk, strip, wait_done
from .parity_data import Targets, both, error_of, load, make_documents

DOCUMENTS = make_documents(30)
SHARED = "e2e_fidelity"
DUMP_UID = re.compile(r"^\d{8}-\d{9}$")
# A task's size as Meilisearch writes it: `12 KiB`, `1.01 KB`, `512 B`.
TASK_SIZE = re.compile(r"^\d+(\.\d+)? (B|[KMGTPE]i?B)$")
FEATURE_DOC = "https://docs.meilisearch.com/errors#feature_not_enabled"

# Routes of features a fresh Meilisearch refuses until an experimental flag is set, with
# the start of Meilisearch's message (the action it names) and the feature's name.
REFUSED: list[tuple[str, str, Any, str, str]] = [
    ("GET", "/network", None, "Using the /network route", "network"),
    ("PATCH", "/network", {}, "Using the /network route", "network"),
    ("GET", "/chats", None, "listing the chats", "chat completions"),
    ("GET", "/chats/w", None, "displaying a chat", "chat completions"),
    ("DELETE", "/chats/w", None, "deleting a chat", "chat completions"),
    ("GET", "/chats/w/settings", None, "using the /chats/settings route", "chat completions"),
    (
        "PATCH",
        "/chats/w/settings",
        {"source": "openAi"},
        "using the /chats/settings route",
        "chat completions",
    ),
    (
        "POST",
        "/chats/w/chat/completions",
        {"model": "m", "messages": []},
        "using the /chats chat completions route",
        "chat completions",
    ),
    (
        "POST",
        "/dynamic-search-rules",
        {},
        "Using the `/dynamic-search-rules` routes",
        "dynamic search rules",
    ),
    (
        "GET",
        "/dynamic-search-rules/r",
        None,
        "Using the `/dynamic-search-rules` routes",
        "dynamic search rules",
    ),
    (
        "PATCH",
        "/dynamic-search-rules/r",
        {},
        "Using the `/dynamic-search-rules` routes",
        "dynamic search rules",
    ),
    (
        "DELETE",
        "/dynamic-search-rules/r",
        None,
        "Using the `/dynamic-search-rules` routes",
        "dynamic search rules",
    ),
    ("POST", "/render-template", {"id": "t"}, "calling the /render-template route", "render_route"),
    (
        "POST",
        "/indexes/books/documents/edit",
        {"function": "doc.n = 1"},
        "Using the documents edit route",
        "edit documents by function",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "action", "feature"),
    REFUSED,
    ids=[f"{m} {p}" for m, p, *_ in REFUSED],
)
def test_experimental_routes_are_refused_as_one_node_refuses_them(
    e2e_cluster: DevCluster,
    devnode: NodeProcess,
    method: str,
    path: str,
    body: Any,
    action: str,
    feature: str,
) -> None:
    answers = [
        http(method, base + path, key=MASTER_KEY, json=body)
        for base in (e2e_cluster.url, devnode.url)
    ]
    proxy, node = ((a.status_code, a.json()) for a in answers)
    assert node[0] == 400
    assert node[1]["code"] == "feature_not_enabled" and node[1]["link"] == FEATURE_DOC
    assert node[1]["message"].startswith(f"{action} requires enabling the `{feature}` ")
    assert proxy == node


def test_a_key_with_the_action_gets_the_refusal_not_a_403(
    e2e_cluster: DevCluster, devnode: NodeProcess
) -> None:
    """The key check comes first and knows these routes' actions (`network.get`)."""
    spec = {"actions": ["network.get"], "indexes": ["*"], "expiresAt": None}
    found = []
    for base in (e2e_cluster.url, devnode.url):
        key = http("POST", base + "/keys", json=spec).json()
        try:
            allowed = http("GET", base + "/network", key=key["key"])
            denied = http("GET", base + "/chats", key=key["key"])
            found.append((allowed.status_code, allowed.json()["code"], denied.status_code))
        finally:
            http("DELETE", f"{base}/keys/{key['uid']}")
    assert found[1] == (400, "feature_not_enabled", 403)
    assert found[0] == found[1]


@pytest.fixture(scope="module")
def targets(e2e_cluster: DevCluster, devnode: NodeProcess) -> Targets:
    pair = {"proxy": sdk(e2e_cluster.url, MASTER_KEY), "node": sdk(devnode.url, MASTER_KEY)}
    both(pair, lambda client: load(client, SHARED, DOCUMENTS))
    return pair


def test_a_dump_task_names_its_dump(targets: Targets) -> None:
    def ask(client: meilisearch.Client) -> Any:
        done = wait_done(client, client.create_dump().task_uid)
        return done.status, done.details

    proxy, node = both(targets, ask)
    for status, details in (proxy, node):
        assert status == "succeeded"
        assert DUMP_UID.match(details["dumpUid"]), details


def test_a_compaction_reports_the_sizes_before_and_after(targets: Targets) -> None:
    def ask(client: meilisearch.Client) -> Any:
        load(client, "e2e_fidelity_compact", DOCUMENTS[:20])
        index = client.index("e2e_fidelity_compact")
        done = wait_done(client, index.compact().task_uid)
        wait_done(client, index.delete().task_uid)
        return done.status, done.details

    proxy, node = both(targets, ask)
    for status, details in (proxy, node):
        assert status == "succeeded"
        assert sorted(details) == ["postCompactionSize", "preCompactionSize"]
        assert all(TASK_SIZE.match(size) for size in details.values()), details


def test_a_rename_alone_reports_the_requested_primary_key(targets: Targets) -> None:
    """Meilisearch's `indexUpdate` details echo the request's `primaryKey`: null when only
    the uid changes, even though the index has one."""

    def ask(client: meilisearch.Client) -> Any:
        wait_done(client, client.create_index("e2e_fidelity_old", {"primaryKey": "id"}).task_uid)
        renamed = client.index("e2e_fidelity_old").update(new_uid="e2e_fidelity_new")
        done = wait_done(client, renamed.task_uid)
        key = client.get_index("e2e_fidelity_new").primary_key
        wait_done(client, client.delete_index("e2e_fidelity_new").task_uid)
        return done.details, key

    proxy, node = both(targets, ask)
    expected = {"primaryKey": None, "oldIndexUid": "e2e_fidelity_old"}
    expected |= {"newIndexUid": "e2e_fidelity_new"}
    assert node == (expected, "id")
    assert proxy == node


def test_an_index_deletion_counts_each_document_once(targets: Targets) -> None:
    """RG=2 x RF=2: every document is stored four times, and deleted once."""

    def ask(client: meilisearch.Client) -> Any:
        load(client, "e2e_fidelity_deleted", DOCUMENTS)
        done = wait_done(client, client.delete_index("e2e_fidelity_deleted").task_uid)
        return done.status, done.details

    proxy, node = both(targets, ask)
    assert node == ("succeeded", {"deletedDocuments": len(DOCUMENTS)})
    assert proxy == node


def test_federated_totals_count_a_document_two_queries_match_once(targets: Targets) -> None:
    """ "amber" also matches "ember" (one typo): many documents match both queries."""
    queries = [
        {"indexUid": SHARED, "q": "amber", "sort": ["rank:asc"]},
        {"indexUid": SHARED, "q": "delta", "sort": ["rank:asc"]},
        {"indexUid": SHARED, "q": "fjord", "filter": "color = red", "sort": ["rank:desc"]},
    ]

    def ask(client: meilisearch.Client) -> Any:
        found = []
        for federation in ({"limit": 4}, {"limit": 100}, {"page": 2, "hitsPerPage": 3}):
            answer = client.multi_search(queries, federation)
            counts = {k: answer.get(k) for k in ("estimatedTotalHits", "totalHits", "totalPages")}
            found.append((counts, [hit["id"] for hit in answer["hits"]]))
        # Hits that do not show the primary key are told apart by it all the same.
        shown = {"attributesToRetrieve": ["title"], "attributesToHighlight": ["title"]}
        answer = client.multi_search([{**q, **shown} for q in queries], {"limit": 100})
        found.append((answer["estimatedTotalHits"], [strip(hit) for hit in answer["hits"]]))
        return found

    proxy, node = both(targets, ask)
    matched = node[1][0]["estimatedTotalHits"]
    assert len(node[1][1]) == matched < len(DOCUMENTS)
    assert proxy == node


def test_a_key_has_the_value_one_node_with_the_same_master_key_gives_it(
    targets: Targets,
) -> None:
    """The nodes behind Miroir have a master key of their own; clients see the value the
    clients' master key derives, and use it like one node's key."""
    uid = "7d1fbb1c-26a8-4a7b-9a0e-4c3c8d2f5e61"
    spec = {"uid": uid, "actions": ["search", "documents.get"], "indexes": [SHARED]}

    def ask(client: meilisearch.Client) -> Any:
        created = client.create_key({**spec, "expiresAt": None})
        try:
            by_value = client.http.get(f"keys/{created.key}")
            renamed = client.http.patch(f"keys/{created.key}", {"name": "renamed"})
            reader = sdk(client.config.url, created.key).index(SHARED)
            token = client.generate_tenant_token(
                uid, {SHARED: {"filter": "color = red"}}, api_key=created.key
            )
            tenant = sdk(client.config.url, token).index(SHARED)
            found = (
                created.key,
                (by_value["uid"], by_value["key"], renamed["name"], renamed["key"]),
                dict(reader.get_document(3)),
                [hit["id"] for hit in tenant.search("", {"sort": ["rank:asc"]})["hits"]],
            )
        finally:
            client.delete_key(created.key)
        return found, error_of(lambda: client.get_key(uid))

    proxy, node = both(targets, ask)
    value = node[0][0]
    assert value == hmac.new(MASTER_KEY.encode(), uid.encode(), hashlib.sha256).hexdigest()
    assert node[0][1] == (uid, value, "renamed", value)
    assert node[0][3] and all(DOCUMENTS[i]["color"] == "red" for i in node[0][3])
    assert node[1] == (404, "api_key_not_found", "invalid_request")
    assert proxy == node
