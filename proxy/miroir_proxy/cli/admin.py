"""`miroir status|group|node|index|ops`: the admin API (ARCHITECTURE §6) from a shell.

Every command is one or two admin API calls through `AdminClient`, printed for people, or
with `--json` as the API's own JSON for scripts. A command that starts an operation prints
its id; with `--wait` it follows the operation to its end (`following.py`).

Exit codes: 0 done; 1 the API answered an error (its `message` and `code` are printed) or an
awaited operation ended failed or canceled; 2 a usage error; 3 the proxy did not answer
(EXIT_UNREACHABLE); 130 interrupted while waiting (the operation goes on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import quote, urlsplit

from .adminclient import CALL_TIMEOUT_S, AdminClient, ApiError, Unreachable
from .following import RUNNING, follow, progress_text

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
DEFAULT_URL = "http://127.0.0.1:7700"
AUTH_CODES = frozenset({"invalid_api_key", "missing_authorization_header"})
TASK_POLL_S = 0.2

Command = Callable[[AdminClient, argparse.Namespace, TextIO], Awaitable[int]]


def _proxy_url(text: str) -> str:
    parsed = urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected http(s)://HOST[:PORT]")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return value


def _retain_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds, 0 or more")
    return value


def _connection_options() -> argparse.ArgumentParser:
    """Options every admin command takes, so they may follow the command's own words."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--url",
        type=_proxy_url,
        default=os.environ.get("MIROIR_URL", DEFAULT_URL),
        help=f"any proxy of the cluster (env MIROIR_URL; default {DEFAULT_URL})",
    )
    options.add_argument(
        "--key",
        default=os.environ.get("MIROIR_ADMIN_KEY"),
        help="the admin key, or the master key when none is set (env MIROIR_ADMIN_KEY)",
    )
    options.add_argument("--json", action="store_true", help="print the admin API's JSON")
    options.add_argument(
        "--timeout",
        type=_seconds,
        default=CALL_TIMEOUT_S,
        help=f"seconds each HTTP call may take (default {CALL_TIMEOUT_S:g})",
    )
    return options


def _wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the operation with a progress bar until it ends; exit 1 unless it succeeds",
    )


def _dump_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r}: no such file")
    return path


def _node_spec(text: str) -> dict[str, str]:
    node_id, sep, url = text.partition("=")
    if not sep or not node_id or not url:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ID=URL, e.g. n3=http://10.0.0.3:7700")
    return {"id": node_id, "url": url}


def add_commands(commands: Any) -> None:
    """Add the admin commands to `miroir`'s subcommands (`commands`: add_subparsers())."""
    common = _connection_options()

    status = commands.add_parser(
        "status", parents=[common], help="groups, nodes with health and shards, operations"
    )
    status.set_defaults(run=_status)

    group = commands.add_parser("group", help="add or remove a replica group").add_subparsers(
        dest="command", required=True
    )
    add = group.add_parser(
        "add", parents=[common], help="add a replica group of empty nodes; it syncs, then serves"
    )
    add.add_argument("--id", help="the group's id (default: the first free g0, g1, ...)")
    add.add_argument(
        "--node",
        dest="nodes",
        action="append",
        type=_node_spec,
        required=True,
        metavar="ID=URL",
        help="a node of the new group (repeat for each)",
    )
    _wait_option(add)
    add.set_defaults(run=_group_add)
    remove = group.add_parser(
        "remove", parents=[common], help="stop routing to a group, then forget it"
    )
    remove.add_argument("group_id", metavar="GROUP")
    _wait_option(remove)
    remove.set_defaults(run=_group_remove)

    node = commands.add_parser("node", help="add, drain or remove a node").add_subparsers(
        dest="command", required=True
    )
    node_add = node.add_parser(
        "add", parents=[common], help="add a node to a group and rebalance onto it"
    )
    node_add.add_argument("node_id", metavar="ID")
    node_add.add_argument("node_url", metavar="URL")
    node_add.add_argument(
        "--group", help="the replica group it joins (may be left out when there is one group)"
    )
    _wait_option(node_add)
    node_add.set_defaults(run=_node_add)
    drain = node.add_parser("drain", parents=[common], help="move every replica off a node")
    drain.add_argument("node_id", metavar="ID")
    _wait_option(drain)
    drain.set_defaults(run=_node_drain)
    node_remove = node.add_parser(
        "remove", parents=[common], help="forget a drained node (--force: a dead one)"
    )
    node_remove.add_argument("node_id", metavar="ID")
    node_remove.add_argument(
        "--force",
        action="store_true",
        help="for a dead node: re-replicate its shards from the surviving copies",
    )
    _wait_option(node_remove)
    node_remove.set_defaults(run=_node_remove)

    index = commands.add_parser(
        "index", help="show an index's shard count, or change it online"
    ).add_subparsers(dest="command", required=True)
    show = index.add_parser("show", parents=[common], help="shards and primary key of an index")
    show.add_argument("index_uid", metavar="UID")
    show.set_defaults(run=_index_show)
    reshard = index.add_parser(
        "reshard", parents=[common], help="give an index a new shard count, online"
    )
    reshard.add_argument("index_uid", metavar="UID")
    reshard.add_argument("--shards", type=int, required=True, help="the new shard count")
    reshard.add_argument(
        "--retain",
        type=_retain_seconds,
        help="seconds the old index is kept for a rollback (`miroir ops cancel ID`) "
        "(default: the proxy's operations.reshard_retain_s)",
    )
    _wait_option(reshard)
    reshard.set_defaults(run=_index_reshard)
    dump = commands.add_parser(
        "dump", help="import a Meilisearch dump, or export the cluster as one"
    ).add_subparsers(dest="command", required=True)
    dump_import = dump.add_parser(
        "import",
        parents=[common],
        help="upload a Meilisearch .dump file and follow its import with a progress bar",
    )
    dump_import.add_argument("file", type=_dump_file, metavar="FILE")
    dump_import.add_argument(
        "--no-wait", action="store_true", help="start the import and exit without following it"
    )
    dump_import.set_defaults(run=_dump_import)
    dump_export = dump.add_parser(
        "export",
        parents=[common],
        help="make a Meilisearch V6 dump of the whole cluster (POST /dumps) and download it; "
        "the key must open both /dumps and the admin API (the master key when the proxy has "
        "no separate admin key)",
    )
    dump_export.add_argument(
        "-o", "--output", type=Path, help="where to write it (default: ./<dumpUid>.dump)"
    )
    dump_export.set_defaults(run=_dump_export)

    ops = commands.add_parser(
        "ops",
        parents=[common],
        help="list operations, show one (ops ID), or cancel one (ops cancel ID)",
        usage="miroir ops [ID | cancel ID] [--wait] [options]",
    )
    ops.add_argument("words", nargs="*", metavar="ID | cancel ID")
    _wait_option(ops)
    ops.set_defaults(run=_ops, usage_error=ops.error)


def run(args: argparse.Namespace) -> int:
    """Run the admin command `args` names; the exit code."""
    if args.run is _ops:
        _check_ops_words(args.words, args.usage_error)
    try:
        return asyncio.run(_run(args.run, args))
    except KeyboardInterrupt:
        print("miroir: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _check_ops_words(words: Sequence[str], error: Callable[[str], NoReturn]) -> None:
    if words[:1] == ["cancel"] and len(words) != 2:
        error("ops cancel: give exactly one operation id")
    if words[:1] != ["cancel"] and len(words) > 1:
        error(f"ops: unexpected {' '.join(words[1:])!r}; did you mean `ops cancel ID`?")


async def _run(command: Command, args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        async with AdminClient(args.url, args.key, args.timeout) as api:
            return await command(api, args, out)
    except Unreachable as e:
        print(f"miroir: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiError as e:
        if args.json and e.body is not None:
            _print_json(e.body, out)
        print(f"miroir: {e.message} ({e.code or 'no code'}, HTTP {e.status})", file=sys.stderr)
        if e.code in AUTH_CODES:
            print(
                "miroir: give the proxy's admin key (or its master key when it has no admin "
                "key) with --key or MIROIR_ADMIN_KEY",
                file=sys.stderr,
            )
        return EXIT_FAILED


def _print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2), file=out, flush=True)


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


# --- status and operations -------------------------------------------------------------


async def _status(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    topology = await api.get("/_miroir/topology")
    operations = (await api.get("/_miroir/operations"))["results"]
    running = [op for op in operations if op["state"] == RUNNING]
    if args.json:
        _print_json({"topology": topology, "operations": running}, out)
        return EXIT_OK
    lines = [
        f"{api.base_url}: epoch {topology['epoch']}, {topology['shards']} shards, "
        f"replication factor {topology['replicationFactor']}, "
        f"{len(topology['groups'])} replica group(s)"
    ]
    for group in topology["groups"]:
        lines.append(f"group {group['id']} ({group['state']})")
        rows = [["NODE", "URL", "HEALTH", "SHARDS"]]
        for node in group["nodes"]:
            health = node.get("health", "unknown") + (", draining" if node.get("draining") else "")
            rows.append([node["id"], node["url"], health, str(node.get("shards", "?"))])
        lines.extend(_table(rows))
    lines.append(_running_summary(running))
    lines.extend(_table(_operation_rows(running)) if running else [])
    print("\n".join(lines), file=out)
    return EXIT_OK


def _running_summary(running: list[dict[str, Any]]) -> str:
    return f"running operations: {len(running)}" if running else "no running operations"


def _operation_rows(operations: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["ID", "KIND", "STATE", "PROGRESS", "STARTED"]]
    for op in operations:
        state = op["state"] + (" (cancel requested)" if op.get("cancelRequested") else "")
        rows.append([op["id"], op["kind"], state, progress_text(op), op.get("startedAt") or ""])
    return rows


async def _ops(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    words = args.words
    if not words:
        operations = (await api.get("/_miroir/operations"))["results"]
        if args.json:
            _print_json({"results": operations}, out)
        elif operations:
            print("\n".join(_table(_operation_rows(operations), indent="")), file=out)
        else:
            print("no operations", file=out)
        return EXIT_OK
    if words[0] == "cancel":
        op_id = words[1]
        canceled = await api.post(f"/_miroir/operations/{quote(op_id, safe='')}/cancel")
        if not args.wait:
            if args.json:
                _print_json(canceled, out)
            elif canceled["state"] != RUNNING:
                print(f"operation {op_id} already ended: {canceled['state']}", file=out)
            else:
                print(
                    f"operation {op_id}: cancel requested; it stops at its next safe point",
                    file=out,
                )
            return EXIT_OK
        return await _follow(api, op_id, args, out)
    op_id = words[0]
    if args.wait:
        return await _follow(api, op_id, args, out)
    operation = await api.get(f"/_miroir/operations/{quote(op_id, safe='')}")
    if args.json:
        _print_json(operation, out)
    else:
        _describe(operation, out)
    return EXIT_OK


def _describe(operation: dict[str, Any], out: TextIO) -> None:
    lines = [
        f"operation {operation['id']}: {operation['kind']}, {operation['state']}"
        + (" (cancel requested)" if operation.get("cancelRequested") else ""),
        f"  phase     {operation.get('phase') or '-'}",
        f"  progress  {progress_text({**operation, 'phase': None}) or '-'}",
        f"  params    {json.dumps(operation.get('params') or {})}",
        f"  started   {operation.get('startedAt') or '-'}",
        f"  finished  {operation.get('finishedAt') or '-'}",
    ]
    error = operation.get("error")
    if error:
        lines.append(f"  error     {error.get('message')} ({error.get('code')})")
    print("\n".join(lines), file=out)


# --- commands that start an operation ---------------------------------------------------


async def _started(
    api: AdminClient, args: argparse.Namespace, out: TextIO, answer: dict[str, Any], what: str
) -> int:
    """Print what a 202 started (or follow it with --wait)."""
    op_id = str(answer["operation"])
    if args.wait:
        return await _follow(api, op_id, args, out)
    if args.json:
        _print_json(answer, out)
    else:
        print(f"{what}: operation {op_id} started; follow it: miroir ops {op_id} --wait", file=out)
    return EXIT_OK


async def _follow(api: AdminClient, op_id: str, args: argparse.Namespace, out: TextIO) -> int:
    try:
        operation = await follow(api, op_id, sys.stderr)
    except (asyncio.CancelledError, Unreachable, ApiError):
        print(f"\nstopped following {op_id}; it goes on: miroir ops {op_id}", file=sys.stderr)
        raise
    if args.json:
        _print_json(operation, out)
    else:
        _describe(operation, out)
    return EXIT_OK if operation["state"] == "succeeded" else EXIT_FAILED


async def _group_add(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    body: dict[str, Any] = {"nodes": args.nodes}
    if args.id is not None:
        body["id"] = args.id
    answer = await api.post("/_miroir/groups", body)
    return await _started(api, args, out, answer, f"adding group {answer['group']}")


async def _group_remove(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    answer = await api.delete(f"/_miroir/groups/{quote(args.group_id, safe='')}")
    return await _started(api, args, out, answer, f"removing group {answer['group']}")


async def _node_add(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    body = {"id": args.node_id, "url": args.node_url}
    if args.group is not None:
        body["group"] = args.group
    answer = await api.post("/_miroir/nodes", body)
    what = f"adding node {answer['node']} to group {answer['group']}"
    return await _started(api, args, out, answer, what)


async def _node_drain(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    answer = await api.post(f"/_miroir/nodes/{quote(args.node_id, safe='')}/drain")
    return await _started(api, args, out, answer, f"draining node {answer['node']}")


async def _node_remove(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    path = f"/_miroir/nodes/{quote(args.node_id, safe='')}"
    answer = await api.delete(path + ("?force=true" if args.force else ""))
    return await _started(api, args, out, answer, f"removing node {answer['node']}")


async def _index_show(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    index = await api.get(f"/_miroir/indexes/{quote(args.index_uid, safe='')}")
    if args.json:
        _print_json(index, out)
        return EXIT_OK
    lines = [
        f"index {index['uid']}: {index['shards']} shards, primary key "
        f"{index.get('primaryKey') or '-'}"
    ]
    reshard = index.get("reshard")
    if reshard:
        lines.append(
            f"  resharding {reshard['fromShards']} -> {reshard['toShards']} shards: "
            f"operation {reshard.get('operation') or '-'}, phase {reshard.get('phase') or '-'}"
        )
    print("\n".join(lines), file=out)
    return EXIT_OK


async def _index_reshard(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    body: dict[str, Any] = {"shards": args.shards}
    if args.retain is not None:
        body["retainS"] = args.retain
    answer = await api.post(f"/_miroir/indexes/{quote(args.index_uid, safe='')}/reshard", body)
    what = f"resharding {answer['index']} from {answer['previousShards']} to {answer['shards']}"
    return await _started(api, args, out, answer, what)


async def _dump_export(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    task_uid = (await api.post("/dumps"))["taskUid"]
    print(f"dumping the cluster: task {task_uid}", file=sys.stderr, flush=True)
    while True:
        task = await api.get(f"/tasks/{task_uid}")
        if task["status"] not in ("enqueued", "processing"):
            break
        await asyncio.sleep(TASK_POLL_S)
    if task["status"] != "succeeded":
        error = task.get("error") or {}
        print(f"miroir: dump task {task_uid} {task['status']}: {error.get('message')}",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    dump_uid = str(task["details"]["dumpUid"])
    target = args.output or Path(f"{dump_uid}.dump")
    size = await api.download(f"/_miroir/dumps/{quote(dump_uid, safe='')}", target)
    if args.json:
        _print_json({"dumpUid": dump_uid, "file": str(target), "bytes": size}, out)
    else:
        print(f"dump {dump_uid}: {size / 1e6:.1f} MB written to {target}", file=out)
    return EXIT_OK


async def _dump_import(api: AdminClient, args: argparse.Namespace, out: TextIO) -> int:
    size_mb = args.file.stat().st_size / 1e6
    print(f"uploading {args.file} ({size_mb:.1f} MB)", file=sys.stderr, flush=True)
    answer = await api.upload("/_miroir/dumps/import", args.file, "application/gzip")
    args.wait = not args.no_wait
    return await _started(api, args, out, answer, f"importing {args.file.name}")
