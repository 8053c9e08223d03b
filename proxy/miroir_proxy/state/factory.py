"""Open the configured state store: SQLite at `state_path`, or Redis when `store` is a URL.

A `namespace` query parameter on the Redis URL (`redis://host:6379/0?namespace=prod:`)
selects the key prefix, so several clusters can share one Redis; it defaults to `miroir:`.
A `redis+cluster://host:port` (or `rediss+cluster://`) URL names one node of a Redis
Cluster: the client discovers the others and sends each call to the master of its slot.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from miroir_proxy.config import MiroirConfig

from .keys import DEFAULT_NAMESPACE
from .redis import RedisStore
from .sqlite import SqliteStore
from .store import Store

REDIS_SCHEMES = ("redis", "rediss", "unix")
# Scheme of a Redis Cluster URL -> the scheme redis-py's cluster client reads.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def split_namespace(url: str) -> tuple[str, str]:
    """(the URL without `namespace`, the namespace)."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    namespace = next((v for k, v in params if k == "namespace"), DEFAULT_NAMESPACE)
    rest = urlencode([(k, v) for k, v in params if k != "namespace"])
    return urlunsplit(parts._replace(query=rest)), namespace


def open_store(config: MiroirConfig) -> Store:
    if config.store is None:
        return SqliteStore(config.state_path)
    parts = urlsplit(config.store)
    cluster = parts.scheme in CLUSTER_SCHEMES
    if not cluster and parts.scheme not in REDIS_SCHEMES:
        raise ValueError(
            f"store {config.store!r}: expected a redis://, rediss://, unix://, "
            "redis+cluster:// or rediss+cluster:// URL (or no `store` for SQLite at state_path)"
        )
    if cluster:
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(f"store {config.store!r}: Redis Cluster has only database 0")
        parts = parts._replace(scheme=CLUSTER_SCHEMES[parts.scheme], path="")
    url, namespace = split_namespace(urlunsplit(parts))
    # The store answers in well under a millisecond; a node-connect budget is a generous
    # deadline that still turns a dead Redis into a prompt 503.
    timeout_s = config.timeouts.node_connect_ms / 1000
    return RedisStore(url, namespace=namespace, timeout_s=timeout_s, cluster=cluster)
