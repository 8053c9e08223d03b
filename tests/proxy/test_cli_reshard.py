"""`miroir index show|reshard` through the installed entry point, against a real proxy
process (SQLite store) and devnodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .clikit import INDEX, MASTER_KEY, SHARDS, Cluster, miroir, start_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from start_cluster(tmp_path_factory.mktemp("cli-reshard"), spare_nodes=0)


def test_an_index_is_resharded_from_the_command_line(cluster: Cluster) -> None:
    shown = miroir("index", "show", INDEX, env=cluster.env())
    assert shown.code == 0, shown
    assert shown.stdout.strip() == f"index {INDEX}: {SHARDS} shards, primary key id"

    ran = miroir("index", "reshard", INDEX, "--shards", "12", "--retain", "0", "--wait",
                 "--json", env=cluster.env())  # fmt: skip
    assert ran.code == 0, ran
    operation = ran.json()
    assert operation["kind"] == "reshard" and operation["state"] == "succeeded"
    assert miroir("index", "show", INDEX, "--json", env=cluster.env()).json()["shards"] == 12
    search = cluster.api("POST", f"/indexes/{INDEX}/search", MASTER_KEY, json={"limit": 0})
    assert search["estimatedTotalHits"] == 1_000  # every document, up to `maxTotalHits`
    stats = cluster.api("GET", f"/indexes/{INDEX}/stats", MASTER_KEY)
    assert stats["numberOfDocuments"] == 3_000


def test_bad_reshard_commands_exit_with_the_apis_error(cluster: Cluster) -> None:
    now = miroir("index", "show", INDEX, "--json", env=cluster.env()).json()["shards"]
    same = miroir("index", "reshard", INDEX, "--shards", str(now), env=cluster.env())
    assert same.code == 1 and "bad_request" in same.stderr, same
    missing = miroir("index", "show", "nope", env=cluster.env())
    assert missing.code == 1 and "index_not_found" in missing.stderr, missing
    usage = miroir("index", "reshard", INDEX, "--shards", "x", env=cluster.env())
    assert usage.code == 2, usage
