"""Open the configured state store: SQLite at `state_path`, or Redis when `store` is a URL.

A `namespace` query parameter on the Redis URL (`redis://host:6379/0?namespace=prod:`)
selects the key prefix, so several clusters can share one Redis; it defaults to `miroir:`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from miroir_proxy.config import MiroirConfig

from .keys import DEFAULT_NAMESPACE
from .redis import RedisStore
from .sqlite import SqliteStore
from .store import Store

REDIS_SCHEMES = ("redis", "rediss", "unix")


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
    scheme = urlsplit(config.store).scheme
    if scheme not in REDIS_SCHEMES:
        raise ValueError(
            f"store {config.store!r}: expected a redis://, rediss:// or unix:// URL "
            "(or no `store` for SQLite at state_path)"
        )
    url, namespace = split_namespace(config.store)
    # The store answers in well under a millisecond; a node-connect budget is a generous
    # deadline that still turns a dead Redis into a prompt 503.
    timeout_s = config.timeouts.node_connect_ms / 1000
    return RedisStore(url, namespace=namespace, timeout_s=timeout_s)
