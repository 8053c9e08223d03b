"""The live view of the fleet one proxy pod routes against.

`Cluster` bundles the current topology (swapped atomically when its epoch changes), the
node client and the health prober, and answers the questions every request path asks:
which group serves this search, where does a shard live for an index with S shards, and
how to call a node so that failures feed the health view.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from miroir_proxy.config import MiroirConfig
from miroir_proxy.core.covering import Covering, covering_set
from miroir_proxy.core.placement import Placement, group_placement
from miroir_proxy.core.topology import Node, ReplicaGroup, Topology
from miroir_proxy.nodes.client import NodeClient, NodeResponse, QueryParams
from miroir_proxy.nodes.errors import NodeUnavailable
from miroir_proxy.nodes.probing import HealthProber


def topology_from_config(config: MiroirConfig, epoch: int = 1) -> Topology:
    return Topology(
        epoch=epoch,
        shards=config.shards,
        replication_factor=config.replication_factor,
        groups=tuple(
            ReplicaGroup(g.id, tuple(Node(n.id, n.url) for n in g.nodes))
            for g in config.replica_groups
        ),
    )


class Cluster:
    def __init__(
        self,
        config: MiroirConfig,
        topology: Topology,
        nodes: NodeClient,
        health: HealthProber | None = None,
    ) -> None:
        self.config = config
        self.nodes = nodes
        self.health = health
        self._topology = topology
        self._urls = {n.id: n.url for n in topology.nodes()}
        self._rotation = itertools.count()

    @property
    def topology(self) -> Topology:
        return self._topology

    def replace_topology(self, topology: Topology) -> None:
        """Swap in a newer layout; requests already running keep the one they started with."""
        if topology.epoch <= self._topology.epoch:
            return
        self._topology = topology
        self._urls = {n.id: n.url for n in topology.nodes()}

    def all_nodes(self) -> list[Node]:
        return list(self._topology.nodes())

    def is_healthy(self, node_id: str) -> bool:
        return self.health is None or self.health.is_healthy(node_id)

    def placement(self, group: ReplicaGroup, shards: int) -> Placement:
        return group_placement(group, shards, self._topology.replication_factor)

    def search_groups(self) -> list[ReplicaGroup]:
        """Active groups, starting with this request's round-robin pick."""
        groups = list(self._topology.search_groups())
        if not groups:
            return []
        start = next(self._rotation) % len(groups)
        return groups[start:] + groups[:start]

    def covering(self, shards: int, only: Sequence[int] | None = None) -> Covering:
        """One live replica per shard of an index with `shards` shards (or of `only`)."""
        groups = self.search_groups()
        return covering_set(
            [(g.id, self.placement(g, shards)) for g in groups],
            self.is_healthy,
            rotation=next(self._rotation),
            shards=only,
        )

    async def call(
        self,
        node_id: str,
        method: str,
        path: str,
        *,
        timeout_ms: int,
        params: QueryParams | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> NodeResponse:
        """Call one node; transport failures and 5xx answers count against its health."""
        try:
            response = await self.nodes.request(
                self._urls[node_id],
                method,
                path,
                params=params,
                json_body=json_body,
                body=body,
                content_type=content_type,
                headers=headers,
                timeout_ms=timeout_ms,
            )
        except NodeUnavailable as e:
            if self.health is not None:
                self.health.report_failure(node_id, str(e))
            raise
        if self.health is not None:
            if response.is_node_failure:
                self.health.report_failure(node_id, f"HTTP {response.status}")
            else:
                self.health.report_success(node_id)
        return response
