"""Names, labels and owner references shared by every child object of a MiroirCluster.

Group ids are `g0`, `g1`, ... and node ids `g0-0`, `g0-1`, ...: the node id is its pod's
ordinal inside its group's StatefulSet, stable for the pod's life, because placement
hashes node ids and a node id must never be reused for another volume.
"""

from __future__ import annotations

from typing import Any

from .. import crd
from ..spec import Cluster

MEILI_PORT = 7700
NODE_DATA_PATH = "/meili_data"
CONFIG_FILE = "miroir.yaml"
CONFIG_DIR = "/etc/miroir"
STATE_DIR = "/var/lib/miroir"
MANAGED_BY = "miroir-operator"

Manifest = dict[str, Any]


def group_id(index: int) -> str:
    return f"g{index}"


def node_id(group: str, ordinal: int) -> str:
    return f"{group}-{ordinal}"


def group_statefulset(cluster: Cluster, group: str) -> str:
    return f"{cluster.name}-{group}"


def nodes_service(cluster: Cluster) -> str:
    return f"{cluster.name}-nodes"


def client_service(cluster: Cluster) -> str:
    return cluster.name


def peers_service(cluster: Cluster) -> str:
    return f"{cluster.name}-peers"


def proxy(cluster: Cluster) -> str:
    return f"{cluster.name}-proxy"


def proxy_state(cluster: Cluster) -> str:
    return f"{cluster.name}-proxy-state"


def node_url(cluster: Cluster, group: str, ordinal: int) -> str:
    pod = f"{group_statefulset(cluster, group)}-{ordinal}"
    return f"http://{pod}.{nodes_service(cluster)}.{cluster.namespace}.svc:{MEILI_PORT}"


def selector(cluster: Cluster, component: str, group: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "miroir",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/component": component,
    }
    if group is not None:
        labels["miroir.io/group"] = group
    return labels


def labels(cluster: Cluster, component: str, group: str | None = None) -> dict[str, str]:
    return {**selector(cluster, component, group), "app.kubernetes.io/managed-by": MANAGED_BY}


def owner_reference(cluster: Cluster) -> Manifest:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "name": cluster.name,
        "uid": cluster.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(cluster: Cluster, name: str, component: str, group: str | None = None) -> Manifest:
    return {
        "name": name,
        "namespace": cluster.namespace,
        "labels": labels(cluster, component, group),
        "ownerReferences": [owner_reference(cluster)],
    }


def spread(cluster: Cluster, component: str, group: str | None = None) -> Manifest:
    """Prefer one pod per Kubernetes node: preferred, so a one-node cluster (kind) still runs."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": selector(cluster, component, group)},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }


def secret_env(name: str, ref: Any) -> Manifest:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
