"""What the parity harness (`test_sdk_parity.py`) once listed as known differences, each
asked through the HTTP API of the proxy and of one devnode and compared (issue 12 §5).
"""

from __future__ import annotations

from typing import Any

import pytest

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .conftest import MASTER_KEY, http

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
