"""Reading one document by id from one live replica of its shard.

Replicas of the shard in the round-robin group come first, healthy ones before the rest,
then the other active groups; a replica that cannot be reached or answers 5xx is skipped.
The first real answer wins, including Meilisearch's `404 document_not_found`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.core.hashing import shard_of
from miroir_proxy.core.pk import is_reserved
from miroir_proxy.nodes.client import NodeResponse
from miroir_proxy.nodes.errors import NodeUnavailable

from .cluster import Cluster


def replicas_to_try(cluster: Cluster, shard: int, shards: int) -> list[str]:
    ordered: list[str] = []
    for group in cluster.search_groups():
        replicas = cluster.placement(group, shards).replicas[shard]
        ordered.extend(sorted(replicas, key=lambda n: not cluster.is_healthy(n)))
    return ordered


async def fetch_document(
    cluster: Cluster,
    index_uid: str,
    shards: int,
    document_id: str,
    params: Mapping[str, str],
) -> NodeResponse:
    """The node's answer for `GET /indexes/{uid}/documents/{id}` from a live replica."""
    path = f"/indexes/{index_uid}/documents/{quote(document_id, safe='')}"
    return await ask_owner(cluster, index_uid, shards, document_id, "GET", path, params=params)


async def ask_owner(
    cluster: Cluster,
    index_uid: str,
    shards: int,
    document_id: str,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
) -> NodeResponse:
    """The first real answer to `method path` of a live replica of `document_id`'s shard."""
    shard = shard_of(document_id, shards)
    last = "no replica is in an active group"
    for node_id in replicas_to_try(cluster, shard, shards):
        try:
            response = await cluster.call(
                node_id,
                method,
                path,
                params=params or None,
                json_body=json_body,
                timeout_ms=cluster.config.timeouts.node_read_ms,
            )
        except NodeUnavailable as e:
            last = e.reason
            continue
        if response.is_node_failure:
            last = f"HTTP {response.status}"
            continue
        return response
    raise MiroirError(
        "miroir_shard_unavailable",
        f"No replica of shard {shard} of index `{index_uid}` answered: {last}.",
    )


def strip_reserved(body: bytes) -> bytes:
    """A node's document without Miroir's `_miroir_*` fields."""
    document = orjson.loads(body)
    if not isinstance(document, dict):
        return body
    return orjson.dumps({k: v for k, v in document.items() if not is_reserved(k)})
