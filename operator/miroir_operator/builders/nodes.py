"""The Meilisearch nodes: one StatefulSet and one PodDisruptionBudget per replica group, and
one headless Service that gives every node pod a stable DNS name."""

from __future__ import annotations

from ..spec import Cluster
from . import naming
from .naming import MEILI_PORT, NODE_DATA_PATH, Manifest


def nodes_service(cluster: Cluster) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.metadata(cluster, naming.nodes_service(cluster), "node"),
        "spec": {
            "clusterIP": "None",
            # The proxies probe node health themselves; DNS must resolve before readiness.
            "publishNotReadyAddresses": True,
            "selector": naming.selector(cluster, "node"),
            "ports": [{"name": "http", "port": MEILI_PORT, "targetPort": "http"}],
        },
    }


def _node_env(cluster: Cluster) -> list[Manifest]:
    key = cluster.spec.secrets.node_master_key
    env: list[Manifest] = [
        {"name": "MEILI_DB_PATH", "value": f"{NODE_DATA_PATH}/data.ms"},
        {"name": "MEILI_HTTP_ADDR", "value": f"0.0.0.0:{MEILI_PORT}"},
        {"name": "MEILI_NO_ANALYTICS", "value": "true"},
        # Production mode refuses to start without a master key.
        {"name": "MEILI_ENV", "value": "production" if key else "development"},
    ]
    if key is not None:
        env.append(naming.secret_env("MEILI_MASTER_KEY", key))
    return env


def _probe(period_s: int, failures: int) -> Manifest:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def group_statefulset(cluster: Cluster, group: str, replicas: int) -> Manifest:
    spec = cluster.spec
    storage = spec.nodes.storage
    claim: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(storage.size)}},
    }
    if storage.storage_class_name:
        claim["storageClassName"] = storage.storage_class_name
    pod_labels = naming.labels(cluster, "node", group)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": naming.metadata(
            cluster, naming.group_statefulset(cluster, group), "node", group
        ),
        "spec": {
            "serviceName": naming.nodes_service(cluster),
            "replicas": replicas,
            # Nodes are independent: start them together, not one after another.
            "podManagementPolicy": "Parallel",
            # Removing a node is drain first, then the operator deletes its volume itself.
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "selector": {"matchLabels": naming.selector(cluster, "node", group)},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "affinity": naming.spread(cluster, "node", group),
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "meilisearch",
                            "image": spec.meilisearch.reference,
                            "env": _node_env(cluster),
                            "ports": [{"name": "http", "containerPort": MEILI_PORT}],
                            "startupProbe": _probe(5, 120),
                            "readinessProbe": _probe(5, 3),
                            "livenessProbe": _probe(10, 6),
                            "resources": spec.nodes.resources.manifest(),
                            "volumeMounts": [{"name": "data", "mountPath": NODE_DATA_PATH}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data", "labels": dict(pod_labels)}, "spec": claim}
            ],
        },
    }


def group_disruption_budget(cluster: Cluster, group: str) -> Manifest:
    """At most one node of a group down by eviction; the other groups keep serving."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": naming.metadata(
            cluster, naming.group_statefulset(cluster, group), "node", group
        ),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": naming.selector(cluster, "node", group)},
        },
    }
