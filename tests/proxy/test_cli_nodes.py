"""`miroir node add|drain|remove` through the installed entry point, against a real proxy
process and devnodes (RF=2, S=8, a group of two nodes): a node joins with its share and is
drained back out, a dead node is removed with `--force`, and refusals exit 1 with the code."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from .clikit import SHARDS, Cluster, frames, miroir, miroir_on_terminal, start_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("cli-nodes"), spare_nodes=2)


def _shards(cluster: Cluster) -> dict[str, int]:
    """Shards each node of group g0 serves, as the admin API says."""
    topology = cluster.api("GET", "/_miroir/topology")
    return {node["id"]: node["shards"] for node in topology["groups"][0]["nodes"]}


def _status_row(cluster: Cluster, node_id: str) -> list[str]:
    ran = miroir("status", env=cluster.env())
    assert ran.code == 0, ran
    return next(line.split() for line in ran.stdout.splitlines() if line.split()[:1] == [node_id])


def test_a_node_joins_with_a_progress_bar_then_is_drained_and_removed(cluster: Cluster) -> None:
    new = cluster.spare.nodes[0]
    ran = miroir_on_terminal(
        "node", "add", "n2", new.url, "--group", "g0", "--wait", env=cluster.env()
    )
    assert ran.code == 0, ran.stdout
    shown = frames(ran.stdout)
    # The bar was drawn while the replicas moved: the phase and the count of moving shards.
    assert any(re.search(r"node-add copy .* \d+/\d+ shards", line) for line in shown), shown
    added = next(
        op
        for op in cluster.api("GET", "/_miroir/operations")["results"]
        if op["kind"] == "node-add"
    )
    assert f"operation {added['id']}: node-add, succeeded" in shown
    held = _shards(cluster)
    # Three nodes, RF=2, S=8: 16 replicas, each node within one of the mean.
    assert sum(held.values()) == 2 * SHARDS and held["n2"] >= 5, held
    assert _status_row(cluster, "n2") == ["n2", new.url, "healthy", str(held["n2"])]

    drained = miroir("node", "drain", "n2", "--wait", "--json", env=cluster.env())
    assert drained.code == 0, drained
    assert (drained.json()["kind"], drained.json()["state"]) == ("node-drain", "succeeded")
    assert "node-drain: " in drained.stderr  # the progress, as lines off a terminal
    assert _shards(cluster) == {"n0": SHARDS, "n1": SHARDS, "n2": 0}
    assert _status_row(cluster, "n2") == ["n2", new.url, "healthy,", "draining", "0"]

    removed = miroir("node", "remove", "n2", "--wait", env=cluster.env())
    assert removed.code == 0, removed
    assert "node-remove, succeeded" in removed.stdout
    assert set(_shards(cluster)) == {"n0", "n1"}


def test_a_dead_node_needs_force(cluster: Cluster) -> None:
    doomed = cluster.spare.nodes[1]
    started = miroir("node", "add", "n3", doomed.url, "--json", env=cluster.env())
    assert started.code == 0, started
    answer = started.json()
    assert (answer["node"], answer["group"]) == ("n3", "g0")  # the only group
    waited = miroir("ops", answer["operation"], "--wait", env=cluster.env())
    assert waited.code == 0, waited
    doomed.kill()

    refused = miroir("node", "remove", "n3", env=cluster.env())
    assert refused.code == 1
    assert "(miroir_node_not_drained, HTTP 409)" in refused.stderr, refused.stderr
    forced = miroir("node", "remove", "n3", "--force", "--wait", "--json", env=cluster.env())
    assert forced.code == 0, forced
    final = forced.json()
    assert (final["kind"], final["state"], final["params"]["force"]) == (
        "node-remove",
        "succeeded",
        True,
    )
    assert _shards(cluster) == {"n0": SHARDS, "n1": SHARDS}


def test_node_refusals_exit_1_with_the_apis_code(cluster: Cluster) -> None:
    unknown = miroir("node", "drain", "n42", env=cluster.env())
    assert unknown.code == 1
    assert (
        unknown.stderr.strip() == "miroir: Node `n42` not found. (miroir_node_not_found, HTTP 404)"
    )
    gone = miroir("node", "remove", "n42", "--force", env=cluster.env())
    assert gone.code == 1
    assert "(miroir_node_not_found, HTTP 404)" in gone.stderr
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        silent = f"http://127.0.0.1:{closed.getsockname()[1]}"
    bad = miroir("node", "add", "n5", silent, "--group", "g0", env=cluster.env())
    assert bad.code == 1
    assert "(miroir_invalid_node, HTTP 400)" in bad.stderr, bad.stderr
    assert "n5" not in _shards(cluster)
