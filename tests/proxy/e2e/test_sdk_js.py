"""The official JavaScript client (`meilisearch` on npm) drives the core scenario
(tests/sdk_js/scenario.mjs) on one node and through Miroir; both runs print the same steps.

Opt-in: collected only with `MIROIR_SDK_JS=1`, which `make sdk-js` sets after installing the
client with `npm ci`; `make test` runs `make sdk-js` when node is installed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from miroir_proxy.cli.devcluster import DevCluster
from miroir_proxy.cli.processes import NodeProcess

from .test_sdk_parity import first_difference, plain

SCENARIO = Path(__file__).resolve().parents[2] / "sdk_js" / "scenario.mjs"
UID = "e2e_sdk_js"
RUN_TIMEOUT_S = 60
# Differences sharding makes inherent (README, "Differences from one Meilisearch"):
# (step, field) -> why.
SIZES = (
    "every node stores each document with Miroir's `_miroir_shard` and `_miroir_updated_at`"
    " and measures it in its own storage format: the nodes' figure per copy (108 vs 55 bytes"
    " a document here) is larger than one node's"
)
KNOWN = {
    ("getStats", "rawDocumentDbSize"): SIZES,
    ("getStats", "avgDocumentSize"): SIZES,
}


def _run(url: str, key: str) -> list[list[Any]]:
    done = subprocess.run(
        ["node", str(SCENARIO), url, key, UID],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    steps: list[list[Any]] = json.loads(done.stdout)
    return steps


def _pop(steps: list[list[Any]], step: str, name: str) -> Any:
    """Remove `name` from `step`'s answer (or its `details`) and return it."""
    answer = next(a for s, a in steps if s == step)
    holder = answer["details"] if name not in answer else answer
    return holder.pop(name)


def test_the_javascript_client_sees_miroir_as_one_node(
    e2e_cluster: DevCluster, devnode: NodeProcess, master_key: str
) -> None:
    proxy = plain(_run(e2e_cluster.url, master_key))
    node = plain(_run(devnode.url, master_key))
    answers = dict(node)
    # The scenario worked on the node: every task succeeded, the filters and pages held.
    assert answers["addDocuments"]["status"] == "succeeded", answers["addDocuments"]
    assert {h["color"] for h in answers["search filter/sort/facets"]["hits"]} <= {"red", "blue"}
    assert [h["rank"] for h in answers["search offset 5"]["hits"]] == [5, 6, 7, 8, 9]
    assert answers["search page 2"]["totalPages"] == 7
    assert {h["color"] for h in answers["tenant search"]["hits"]} == {"green"}
    assert answers["tenant write refused"]["status"] == 403
    assert [a[0] for a in proxy] == [b[0] for b in node]
    for (step, name), why in KNOWN.items():
        mine, theirs = _pop(proxy, step, name), _pop(node, step, name)
        assert mine != theirs, f"known difference now gone, drop it from KNOWN: {why}"
    differing = [
        f"{mine[0]} {first_difference(mine[1], theirs[1])}"
        for mine, theirs in zip(proxy, node, strict=True)
        if mine != theirs
    ]
    assert not differing, "\n".join(differing)
