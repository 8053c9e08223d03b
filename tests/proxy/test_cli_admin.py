"""`miroir status|group|ops` through the installed entry point, against a real proxy process
and devnodes: what a person sees, what `--json` gives a script, and the exit codes
(0 ok, 1 an API error or an operation that did not succeed, 2 usage, 3 unreachable)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from miroir_proxy.cli.processes import poll_until

from .clikit import (
    ADMIN_KEY,
    SHARDS,
    Cluster,
    frames,
    load,
    miroir,
    miroir_on_terminal,
    start_cluster,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("cli"))


def _spare_nodes(cluster: Cluster, first: int) -> list[str]:
    """`--node ID=URL` for two spare (empty) nodes; a node that served a group keeps its
    data when the group is removed, and cannot join another."""
    spare = list(enumerate(cluster.spare.nodes))[first : first + 2]
    return [arg for i, node in spare for arg in ("--node", f"s{i}={node.url}")]


def test_status_shows_groups_nodes_health_and_shards(cluster: Cluster) -> None:
    ran = miroir("status", env=cluster.env())
    assert ran.code == 0, ran
    topology = cluster.api("GET", "/_miroir/topology")
    lines = ran.stdout.splitlines()
    assert lines[0] == (
        f"{cluster.url}: epoch {topology['epoch']}, {SHARDS} shards, replication factor 2, "
        "1 replica group(s)"
    )
    assert "group g0 (active)" in lines
    for node in topology["groups"][0]["nodes"]:
        assert [node["id"], node["url"], "healthy", str(node["shards"])] in [
            line.split() for line in lines
        ], ran.stdout
    assert lines[-1] == "no running operations"


def test_status_json_is_the_admin_apis_answer(cluster: Cluster) -> None:
    ran = miroir("status", "--json", env=cluster.env())
    assert ran.code == 0, ran
    shown = ran.json()
    assert shown == {"topology": cluster.api("GET", "/_miroir/topology"), "operations": []}


def test_url_and_key_options_override_the_environment(cluster: Cluster) -> None:
    env = {**os.environ, "MIROIR_URL": "http://127.0.0.1:9", "MIROIR_ADMIN_KEY": "wrong"}
    ran = miroir("status", "--json", "--url", cluster.url, "--key", ADMIN_KEY, env=env)
    assert ran.code == 0, ran
    assert ran.json()["topology"]["shards"] == SHARDS


def test_group_add_waits_with_a_live_progress_bar_then_remove_reports_as_lines(
    cluster: Cluster,
) -> None:
    ran = miroir_on_terminal(
        "group", "add", "--id", "g1", *_spare_nodes(cluster, 0), "--wait", env=cluster.env()
    )
    assert ran.code == 0, ran.stdout
    shown = frames(ran.stdout)
    # The bar was drawn while the copy ran: the phase and the operation's count.
    assert any(
        line.startswith(("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"))
        and "group-add sync" in line
        and f"/{SHARDS} shards" in line
        for line in shown
    ), shown
    operations = cluster.api("GET", "/_miroir/operations")["results"]
    added = next(op for op in operations if op["kind"] == "group-add")
    assert added["state"] == "succeeded"
    assert f"operation {added['id']}: group-add, succeeded" in shown

    status = miroir("status", env=cluster.env())
    assert "group g1 (active)" in status.stdout.splitlines(), status.stdout

    listed = miroir("ops", env=cluster.env())
    assert listed.code == 0, listed
    rows = [line.split()[:3] for line in listed.stdout.splitlines()]
    assert rows[0] == ["ID", "KIND", "STATE"]
    assert [added["id"], "group-add", "succeeded"] in rows
    one = miroir("ops", added["id"], "--json", env=cluster.env())
    assert one.code == 0, one
    assert one.json() == cluster.api("GET", f"/_miroir/operations/{added['id']}")

    # Not on a terminal: one line per change on stderr, the final view as JSON on stdout.
    removed = miroir("group", "remove", "g1", "--wait", "--json", env=cluster.env())
    assert removed.code == 0, removed
    final = removed.json()
    assert (final["kind"], final["state"], final["params"]) == (
        "group-remove",
        "succeeded",
        {"group": "g1"},
    )
    assert f"{final['id']} group-remove: done" in removed.stderr.splitlines(), removed.stderr
    groups = [g["id"] for g in cluster.api("GET", "/_miroir/topology")["groups"]]
    assert groups == ["g0"]


def test_a_canceled_operation_exits_1(cluster: Cluster) -> None:
    # A bigger index keeps the throttled sync copying far longer than the `miroir ops cancel`
    # process takes to start on a loaded machine: the cancel must find it copying.
    load(cluster, 15_000, "shelf")
    before = cluster.api("GET", "/_miroir/topology")["groups"]
    started = miroir("group", "add", *_spare_nodes(cluster, 2), "--json", env=cluster.env())
    assert started.code == 0, started
    answer: dict[str, Any] = started.json()
    # No --id: the first free id.
    assert answer["group"] == f"g{len(before)}" and answer["state"] == "initializing"
    # Canceled while it copies (a cancel after the last safe point would not stop it).
    poll_until(
        lambda: cluster.api("GET", f"/_miroir/operations/{answer['operation']}")["phase"] == "sync",
        120,
        what="the operation's sync phase",
    )
    canceled = miroir("ops", "cancel", answer["operation"], "--wait", env=cluster.env())
    assert canceled.code == 1, canceled
    assert f"operation {answer['operation']}: group-add, canceled" in canceled.stdout
    assert cluster.api("GET", "/_miroir/topology")["groups"] == before


def test_an_api_error_prints_its_message_and_code(cluster: Cluster) -> None:
    ran = miroir("group", "remove", "nope", env=cluster.env())
    assert ran.code == 1
    assert ran.stdout == ""
    assert ran.stderr.strip() == (
        "miroir: Replica group `nope` not found. (miroir_group_not_found, HTTP 404)"
    )
    as_json = miroir("group", "remove", "nope", "--json", env=cluster.env())
    assert as_json.code == 1
    assert as_json.json()["code"] == "miroir_group_not_found"
    unknown = miroir("ops", "op-0000", env=cluster.env())
    assert unknown.code == 1
    assert "(miroir_operation_not_found, HTTP 404)" in unknown.stderr


def test_a_wrong_or_missing_key_says_which_key_to_give(cluster: Cluster) -> None:
    wrong = miroir("status", "--key", "not-the-key", env=cluster.env())
    assert wrong.code == 1
    assert "The provided API key is invalid. (invalid_api_key, HTTP 403)" in wrong.stderr
    assert "--key or MIROIR_ADMIN_KEY" in wrong.stderr
    env = cluster.env()
    del env["MIROIR_ADMIN_KEY"]
    missing = miroir("status", env=env)
    assert missing.code == 1
    assert "(missing_authorization_header, HTTP 401)" in missing.stderr
    assert "--key or MIROIR_ADMIN_KEY" in missing.stderr


def test_an_unreachable_url_exits_3() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    ran = miroir("status", "--url", url, "--key", "k")
    assert ran.code == 3
    assert ran.stderr.startswith(f"miroir: no answer from {url}: "), ran.stderr


def test_a_proxy_that_never_answers_meets_the_deadline() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        ran = miroir("ops", "--url", url, "--key", "k", "--timeout", "0.5")
    assert ran.code == 3
    assert ran.stderr.strip() == f"miroir: no answer from {url}: no answer within 0.5 s"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["ops", "cancel"], "ops cancel: give exactly one operation id"),
        (["ops", "a", "b"], "did you mean `ops cancel ID`?"),
        (["group", "add", "--id", "g9"], "the following arguments are required: --node"),
        (["group", "add", "--node", "n9"], "expected ID=URL"),
        (["node", "add", "n9"], "the following arguments are required: URL"),
        (["node", "remove"], "the following arguments are required: ID"),
        (["status", "--url", "127.0.0.1:7700"], "expected http(s)://HOST[:PORT]"),
        (["nodes"], "invalid choice: 'nodes'"),
        (["ops", "--timeout", "0"], "expected a positive number of seconds"),
    ],
)
def test_usage_errors_exit_2(args: list[str], says: str) -> None:
    ran = miroir(*args)
    assert ran.code == 2
    assert says in ran.stderr, ran.stderr
