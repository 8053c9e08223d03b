"""Operator tests: examples and helpers shared by the builder, render, chart and kopf tiers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CHART = REPO / "charts" / "miroir"


def example_cluster(name: str) -> dict[str, Any]:
    """The MiroirCluster document of `examples/<name>.yaml`."""
    for document in yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text()):
        if document and document.get("kind") == "MiroirCluster":
            return dict(document)
    raise AssertionError(f"no MiroirCluster in examples/{name}.yaml")


async def until(condition: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def until_async(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0
) -> None:
    """Await `check` until it returns True; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)
