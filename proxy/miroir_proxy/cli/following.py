"""`--wait`: follow an operation (`GET /_miroir/operations/{id}`) until it ends.

On a terminal the progress is a live rich progress bar on stderr; anywhere else (a log, a
pipe) it is one line per change of phase or count, so CI logs show how a move went without
the carriage returns of a bar. stdout stays for the command's result (`--json`).
"""

from __future__ import annotations

import asyncio
from typing import Any, TextIO
from urllib.parse import quote

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from .adminclient import AdminClient

POLL_INTERVAL_S = 0.5
RUNNING = "running"


def progress_text(operation: dict[str, Any]) -> str:
    """`sync 3/8 shards`: the phase and the operation's own count."""
    progress = operation.get("progress") or {}
    done, total, unit = progress.get("done", 0), progress.get("total", 0), progress.get("unit")
    count = f"{done}/{total} {unit}".rstrip() if total else ""
    return " ".join(part for part in (str(operation.get("phase") or ""), count) if part)


async def follow(client: AdminClient, op_id: str, stream: TextIO) -> dict[str, Any]:
    """Poll operation `op_id` until it is no longer running; its last view."""
    console = Console(file=stream)
    if console.is_terminal:
        return await _with_bar(client, op_id, console)
    return await _with_lines(client, op_id, stream)


async def _poll(client: AdminClient, op_id: str) -> dict[str, Any]:
    operation: dict[str, Any] = await client.get(f"/_miroir/operations/{quote(op_id, safe='')}")
    return operation


async def _with_lines(client: AdminClient, op_id: str, stream: TextIO) -> dict[str, Any]:
    shown = None
    while True:
        operation = await _poll(client, op_id)
        line = f"{op_id} {operation['kind']}: {progress_text(operation) or operation['state']}"
        if line != shown:
            print(line, file=stream, flush=True)
            shown = line
        if operation["state"] != RUNNING:
            return operation
        await asyncio.sleep(POLL_INTERVAL_S)


async def _with_bar(client: AdminClient, op_id: str, console: Console) -> dict[str, Any]:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task: TaskID | None = None
        while True:
            operation = await _poll(client, op_id)
            progress = operation.get("progress") or {}
            total = progress.get("total") or None  # 0: not known yet, the bar pulses
            fields = {
                "description": f"{operation['kind']} {operation.get('phase') or ''}".rstrip(),
                "total": total,
                "completed": progress.get("done", 0),
                "count": f"{progress.get('done', 0)}/{total} {progress.get('unit', '')}"
                if total
                else "",
            }
            if task is None:
                task = bar.add_task(**fields)
            else:
                bar.update(task, **fields)
            if operation["state"] != RUNNING:
                return operation
            await asyncio.sleep(POLL_INTERVAL_S)
