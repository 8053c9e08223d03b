"""The devnode's settings tree, read from the command line and Meilisearch's `MEILI_*`
environment variables (flags win over the environment, as in Meilisearch).

Sizes accept Meilisearch's notation: plain bytes (`1048576`) or a number with a decimal
(`100 MB`, `10Mb`) or binary (`10 MiB`) unit.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PAYLOAD_LIMIT_BYTES = 100_000_000

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything the node needs to start; every field has Meilisearch's default."""

    host: str = "localhost"
    port: int = 7700
    master_key: str | None = None
    db_path: Path = Path("data.ms")
    payload_limit_bytes: int = DEFAULT_PAYLOAD_LIMIT_BYTES
    enable_fault_injection: bool = False


def parse_size(text: str) -> int:
    """`100 MB` -> 100_000_000; raises ValueError on anything else."""
    match = _SIZE.match(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"invalid size: {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid address (expected HOST:PORT): {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"1", "true", "yes", "on"}


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> NodeConfig:
    parser = argparse.ArgumentParser(
        prog="miroir-devnode", description="Meilisearch-compatible development node"
    )
    parser.add_argument("--http-addr", default=env.get("MEILI_HTTP_ADDR", "localhost:7700"))
    parser.add_argument("--master-key", default=env.get("MEILI_MASTER_KEY"))
    parser.add_argument("--db-path", default=env.get("MEILI_DB_PATH", "data.ms"))
    parser.add_argument(
        "--http-payload-size-limit",
        default=env.get("MEILI_HTTP_PAYLOAD_SIZE_LIMIT", str(DEFAULT_PAYLOAD_LIMIT_BYTES)),
    )
    parser.add_argument(
        "--enable-fault-injection",
        action="store_true",
        default=_truthy(env.get("MIROIR_DEVNODE_FAULTS")),
        help="expose /_devnode/faults (tests only)",
    )
    # Accepted so that command lines written for Meilisearch start the devnode unchanged.
    parser.add_argument("--no-analytics", action="store_true", help="no effect (compatibility)")
    parser.add_argument("--env", default="development", help="no effect (compatibility)")
    args = parser.parse_args(list(argv))
    try:
        host, port = split_addr(args.http_addr)
        limit = parse_size(args.http_payload_size_limit)
    except ValueError as e:
        parser.error(str(e))
    return NodeConfig(
        host=host,
        port=port,
        master_key=args.master_key or None,
        db_path=Path(args.db_path),
        payload_limit_bytes=limit,
        enable_fault_injection=args.enable_fault_injection,
    )


def config_from_environment(argv: Sequence[str]) -> NodeConfig:
    return parse_config(argv, os.environ)
