"""A dump exported through Miroir (two groups, RF=2, 8 shards) imports into a Miroir cluster
of another shape (one group of three nodes, RF=1, 5 shards) with identical contents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from miroir_proxy.api.app import make_app
from miroir_proxy.cli.processes import LocalNodes
from miroir_proxy.config import from_mapping

from .devfleet import MASTER, MASTER_HEADERS, NODE_KEY, StartProxy, devnodes, eventually, start
from .dumpcheck import assert_same_contents, cluster_contents, read_v6_dump
from .test_dump_export import download, dump, load_cluster, wipe

__all__ = ["devnodes", "start"]


def other_shape(nodes: LocalNodes, tmp_path: Path) -> dict[str, Any]:
    return {
        "shards": 5,
        "replication_factor": 1,
        "replica_groups": [
            {"id": "solo", "nodes": [{"id": f"m{i}", "url": u} for i, u in enumerate(nodes.urls)]}
        ],
        "master_key": MASTER,
        "node_master_key": NODE_KEY,
        "state_path": str(tmp_path / "other.sqlite3"),
        "operations": {"dump_spool_dir": str(tmp_path / "spool")},
    }


async def test_a_dump_exported_from_miroir_imports_into_a_cluster_of_another_shape(
    start: StartProxy, devnodes: LocalNodes, tmp_path: Path
) -> None:
    await wipe(devnodes)
    async with start() as source:
        await load_cluster(source)
        _, task = await dump(source)
        archive = await download(source, task["details"]["dumpUid"])
    with LocalNodes(3, tmp_path / "other", NODE_KEY) as other:
        app = make_app(from_mapping(other_shape(other, tmp_path), env={}))
        async with TestClient(TestServer(app), headers=MASTER_HEADERS) as target:
            started = await target.post(
                "/_miroir/dumps/import", data=archive, headers={"Content-Type": "application/gzip"}
            )
            assert started.status == 202, await started.text()
            path = f"/_miroir/operations/{(await started.json())['operation']}"
            operation: dict[str, Any] = {}

            async def finished() -> bool:
                operation.update(await (await target.get(path)).json())
                return operation["state"] != "running"

            await eventually(finished, "the import finishes")
            assert operation["state"] == "succeeded", operation
            imported = await cluster_contents(target)
    assert_same_contents(read_v6_dump(archive), imported, all_keys=False)
