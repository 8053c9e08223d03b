"""Pure builders: a `Cluster` in, the Kubernetes objects it should own out.

No I/O and no clock: the operator applies what `desired_objects` returns, and
`miroir-operator render` prints the same list offline.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..spec import Cluster
from . import autoscaler, naming, nodes, proxy
from .naming import Manifest

DEFAULT_PROXY_IMAGE = "miroir/miroir:0.1.0"


def desired_objects(
    cluster: Cluster,
    proxy_image: str = DEFAULT_PROXY_IMAGE,
    replicas: Mapping[str, int] | None = None,
) -> list[Manifest]:
    """Every child object, in an order `kubectl apply` could follow. `replicas` overrides a
    group's node count (nodes still to be drained before their pods may go)."""
    spec = cluster.spec
    config = proxy.proxy_config(cluster)
    text = proxy.config_text(config)
    groups = [naming.group_id(i) for i in range(spec.replica_groups.count)]
    objects: list[Manifest] = [nodes.nodes_service(cluster)]
    for group in groups:
        count = (replicas or {}).get(group, spec.replica_groups.nodes_per_group)
        objects.append(nodes.group_statefulset(cluster, group, count))
        objects.append(nodes.group_disruption_budget(cluster, group))
    objects.append(proxy.config_map(cluster, text))
    if spec.store.type == "sqlite":
        objects.append(proxy.state_claim(cluster))
    objects.append(proxy.deployment(cluster, config, spec.proxy.image or proxy_image))
    objects.append(proxy.client_service(cluster))
    objects.append(proxy.peers_service(cluster, config))
    objects.append(proxy.disruption_budget(cluster))
    objects.extend(autoscaler.autoscalers(cluster))
    return objects


__all__ = ["DEFAULT_PROXY_IMAGE", "Manifest", "desired_objects"]
