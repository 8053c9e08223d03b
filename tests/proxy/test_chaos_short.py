"""The short version of `make chaos`, run by `python -m bench.chaos` exactly as `make chaos`
runs it (real processes on loopback), at a few seconds per scenario:

- nodes of an RG=2, RF=2 cluster are killed with -9, paused and restarted under a steady
  writer: no acknowledged document is lost, duplicated or altered, every task stays
  queryable with a unique uid, and one anti-entropy pass leaves every replica identical;
- Redis is stopped under two pods: every search still answers 200, every write answers 503
  in Meilisearch's error shape, and a write is acknowledged again once Redis is back, with
  no pod restarted.

"Acknowledged" means the write's task ended `succeeded`; a 503 is never acknowledged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
# Each run takes ~15-25 s; a machine shared by several suites can take several times that.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def chaos(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "chaos.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "| scenario | figure | value |" in run.stdout
    figures: dict[str, Any] = orjson.loads(out.read_bytes())
    return figures


def test_killed_paused_and_restarted_nodes_lose_nothing_acknowledged(tmp_path: Path) -> None:
    figures = chaos(
        tmp_path,
        "--scenarios",
        "nodes",
        "--seconds",
        "5",
        "--interval-s",
        "1.5",
        "--down-s",
        "1",
        "--rate",
        "8",
    )["nodes"]
    assert all(figures["actions"].get(a) for a in ("kill", "pause", "restart")), figures
    assert figures["acked"] > 0, figures
    assert figures["lost"] == 0, figures
    assert figures["duplicated"] == 0, figures
    assert figures["wrong"] == 0, figures
    assert figures["tasks_unqueryable"] == 0 and figures["task_uids_duplicated"] == 0, figures
    if figures["anti_entropy"] == "ran":  # where anti-entropy exists, the pass repairs all
        assert figures["missing_after_repair"] == 0, figures
        assert figures["differing_shards_after_repair"] == 0, figures


def test_searches_go_on_and_writes_answer_503_while_redis_is_down(tmp_path: Path) -> None:
    figures = chaos(tmp_path, "--scenarios", "redis", "--outage-s", "4", "--redis-pods", "2")[
        "redis"
    ]
    assert figures["searches_during"] and set(figures["searches_during"]) == {"200"}, figures
    assert figures["writes_during"] > 0, figures
    assert figures["writes_503_meili_shape"] == figures["writes_during"], figures
    assert figures["acked_after"] and figures["pods_restarted"] == 0, figures
