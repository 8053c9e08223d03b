"""`miroir`: a Miroir cluster from a shell.

`miroir status|group|node|index|ops` drive any proxy's admin API (`admin.py`; `--url`/`--key` or
env MIROIR_URL/MIROIR_ADMIN_KEY, `--json` for scripts, `--wait` to follow an operation).
Exit codes: 0 ok, 1 the API answered an error or an awaited operation did not succeed,
2 usage, 3 the proxy did not answer.

`miroir dev up` runs a local cluster (nodes + proxy, or `--proxies N --store redis`: N proxy
pods sharing a Redis of the cluster's own), in the foreground until Ctrl-C/SIGTERM or, with
`--detach`, in the background until `miroir dev down --data-dir DIR`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from . import admin
from .devcluster import (
    DEFAULT_DATA_DIR,
    DEFAULT_MASTER_KEY,
    OWN_REDIS,
    ClusterLayoutError,
    ClusterSpec,
    DevCluster,
    down,
)
from .processes import NodeStartError

# How often the foreground loop checks that every process still runs.
_WATCH_INTERVAL_S = 0.5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miroir", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="group", required=True)
    admin.add_commands(commands)
    dev = commands.add_parser("dev", help="a local cluster for development").add_subparsers(
        dest="command", required=True
    )
    up = dev.add_parser("up", help="start nodes and the proxy, wait until ready")
    up.add_argument("--nodes", type=int, default=6)
    up.add_argument("--replica-groups", type=int, default=2)
    up.add_argument("--replication-factor", type=int, default=2)
    up.add_argument("--shards", type=int, default=16, help="shard count for new indexes")
    up.add_argument(
        "--port",
        type=int,
        default=7700,
        help="the first proxy's port; further proxies, then nodes, use the next ports "
        "(0: free ports for all)",
    )
    up.add_argument("--proxies", type=int, default=1, help="proxy pods (several need a store)")
    up.add_argument(
        "--store",
        default="sqlite",
        help=f"sqlite (one file per proxy), {OWN_REDIS} (start a redis-server in the data dir) "
        "or a redis:// URL to share",
    )
    up.add_argument("--metrics-port", type=int, default=None, help="default: a free port")
    up.add_argument("--master-key", default=DEFAULT_MASTER_KEY)
    up.add_argument("--admin-key", default=None, help="default: the master key")
    up.add_argument("--node-master-key", default=None, help="default: the master key")
    up.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR))
    up.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="passed to every proxy as `miroir-proxy --plugin MODULE` (found on PYTHONPATH)",
    )
    up.add_argument("--detach", action="store_true", help="leave it running and exit")
    stop = dev.add_parser("down", help="stop a cluster started with --detach")
    stop.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR))
    stop.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    return parser


def _up(args: argparse.Namespace) -> int:
    try:
        spec = ClusterSpec(
            nodes=args.nodes,
            replica_groups=args.replica_groups,
            replication_factor=args.replication_factor,
            shards=args.shards,
            port=args.port,
            metrics_port=args.metrics_port,
            master_key=args.master_key,
            admin_key=args.admin_key,
            node_master_key=args.node_master_key,
            data_dir=args.data_dir,
            node_ports=tuple(range(args.port + args.proxies, args.port + args.proxies + args.nodes))
            if args.port
            else None,
            proxies=args.proxies,
            store=None if args.store == "sqlite" else args.store,
            plugins=tuple(args.plugin),
        )
    except ValueError as e:
        print(f"miroir dev up: {e}", file=sys.stderr)
        return 2
    cluster = DevCluster(spec)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before the first process starts, so Ctrl-C during start-up still cleans up.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    try:
        cluster.start()
    except ClusterLayoutError as e:
        print(f"miroir dev up: {e}", file=sys.stderr)
        return 2
    except (NodeStartError, TimeoutError) as e:
        print(f"miroir dev up: the cluster did not start\n{e}", file=sys.stderr)
        return 1
    for line in cluster.describe():
        print(line, flush=True)
    if args.detach:
        state = cluster.detach()
        print(f"detached; stop it with: miroir dev down --data-dir {args.data_dir}  ({state})")
        return 0
    print("Ctrl-C stops the cluster.", flush=True)
    failure = None
    while not stop.wait(_WATCH_INTERVAL_S):
        failure = cluster.first_failure()
        if failure:
            break
    print("stopping the cluster", flush=True)
    cluster.stop()
    if failure:
        print(f"miroir dev up: {failure}", file=sys.stderr)
        return 1
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = down(args.data_dir, args.timeout)
    if not stopped:
        print(f"no running cluster recorded under {args.data_dir}")
    else:
        print(f"stopped {len(stopped)} processes")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.group != "dev":
        sys.exit(admin.run(args))
    command = _up if args.command == "up" else _down
    sys.exit(command(args))


if __name__ == "__main__":
    main()
