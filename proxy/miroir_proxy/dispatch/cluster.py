"""The live view of the fleet one proxy pod routes against.

`Cluster` bundles the current topology (swapped atomically when its epoch changes), the
node client and the health prober, and answers the questions every request path asks:
which group serves this search, where does a shard live for an index with S shards, and
how to call a node so that failures feed the health view.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from miroir_proxy.config import MiroirConfig
from miroir_proxy.core.assignment import plan
from miroir_proxy.core.covering import Covering, covering_set
from miroir_proxy.core.placement import Layout, Placement
from miroir_proxy.core.topology import Node, ReplicaGroup, Topology
from miroir_proxy.dispatch.hedging import Hedging
from miroir_proxy.nodes.client import NodeClient, NodeResponse, QueryParams
from miroir_proxy.nodes.errors import NodeUnavailable
from miroir_proxy.nodes.probing import HealthProber

# Distinct (shards, pinned shards, group order, rotation, health) keys stay few; searches
# pinned to many different primary keys could grow them without bound, hence the cap.
_MAX_COVERINGS = 1024


def topology_from_config(config: MiroirConfig, epoch: int = 1) -> Topology:
    """The first topology of a new cluster: the configured groups with balanced tables."""
    rf, shards = config.replication_factor, config.shards
    return Topology(
        epoch=epoch,
        shards=shards,
        replication_factor=rf,
        groups=tuple(
            ReplicaGroup(
                g.id,
                tuple(Node(n.id, n.url) for n in g.nodes),
                tables={shards: plan(None, [n.id for n in g.nodes], rf, shards)},
            )
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
        self._layout = Layout(topology)
        self._urls = {n.id: n.url for n in topology.nodes()}
        self._rotation = itertools.count()
        self._coverings: dict[Hashable, tuple[Covering, tuple[str, ...]]] = {}
        # Covering sets handed out per replica group (`miroir_group_reads_total`).
        self.reads_by_group: Counter[str] = Counter()
        self.hedging = Hedging(config.hedging)
        # Writes still on their way to the nodes, by the epoch they were routed with.
        self._writing: Counter[int] = Counter()
        # Nodes that missed acknowledged writes (`Handoff` keeps this up to date): they
        # serve searches only where no other live replica of the group can.
        self.behind: frozenset[str] = frozenset()

    @property
    def layout(self) -> Layout:
        """The current epoch's layout: a request takes it once and routes with it to the end."""
        return self._layout

    @property
    def topology(self) -> Topology:
        return self._layout.topology

    @property
    def settled_epoch(self) -> int:
        """The epoch this pod can acknowledge: the current one, or the oldest a write still
        on its way was routed with (an operation waiting for every pod must not go on while
        a write routed without the new owners may still land)."""
        return min(self._layout.epoch, *self._writing) if self._writing else self._layout.epoch

    def writing(self, layout: Layout) -> Callable[[], None]:
        """Count a write routed with `layout` until the returned callable is called."""
        epoch = layout.epoch
        self._writing[epoch] += 1

        def done() -> None:
            self._writing[epoch] -= 1
            if not self._writing[epoch]:
                del self._writing[epoch]

        return done

    def replace_topology(self, topology: Topology) -> None:
        """Swap in a newer layout; requests already running keep the one they started with."""
        if topology.epoch <= self._layout.epoch:
            return
        # URLs of nodes leaving the topology stay known: a request of the previous epoch
        # may still be calling them.
        self._urls = {**self._urls, **{n.id: n.url for n in topology.nodes()}}
        self._layout = Layout(topology)
        self._coverings = {}

    def all_nodes(self) -> list[Node]:
        return list(self._layout.topology.nodes())

    def is_healthy(self, node_id: str) -> bool:
        return self.health is None or self.health.is_healthy(node_id)

    def placement(self, group: ReplicaGroup, shards: int) -> Placement:
        return self._layout.placement(group, shards)

    def search_groups(self) -> list[ReplicaGroup]:
        """Active groups, starting with this request's round-robin pick."""
        return self._groups_from(next(self._rotation))

    def _groups_from(self, turn: int) -> list[ReplicaGroup]:
        groups = list(self._layout.topology.search_groups())
        if not groups:
            return []
        start = turn % len(groups)
        return groups[start:] + groups[:start]

    def covering(
        self, shards: int, only: Sequence[int] | None = None, *, pinned: bool = False
    ) -> Covering:
        """One live replica per shard of an index with `shards` shards (or of `only`).

        A covering is a pure function of (shards, the group order, the replica rotation
        modulo each shard's replica count, node health, the nodes behind), so coverings are
        kept until the topology changes: building one was ~13 µs of every search's CPU.
        `pinned` takes the same replicas every time while health holds (a paged listing:
        replicas may order a shard's documents differently).
        """
        # One draw per search picks both the first group and the replica rotation inside
        # it: two draws per search would always land on the same group when there are two.
        turn = 0 if pinned else next(self._rotation)
        layout = self._layout
        groups = self._groups_from(turn)
        group_turn, rotation = turn, turn // max(1, len(groups))
        health = tuple(map(self.is_healthy, self._urls))
        key = (
            shards,
            None if only is None else tuple(only),
            group_turn % max(1, len(groups)),
            rotation % self._rotation_period(),
            health,
            self.behind,
        )
        cached = self._coverings.get(key)
        if cached is None:
            if len(self._coverings) >= _MAX_COVERINGS:
                self._coverings.clear()
            covering = covering_set(
                [(g.id, layout.placement(g, shards)) for g in groups],
                self.is_healthy,
                rotation=rotation,
                shards=only,
                behind=self.behind,
            )
            cached = self._coverings[key] = (covering, covering.groups)
        covering, serving = cached
        for group_id in serving:
            self.reads_by_group[group_id] += 1
        return covering

    def _rotation_period(self) -> int:
        # Replica choice depends on the rotation modulo each shard's replica count (1..RF).
        return math.lcm(*range(1, self._layout.topology.replication_factor + 1))

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
