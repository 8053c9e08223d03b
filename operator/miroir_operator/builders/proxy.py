"""The proxies: their configuration (rendered by `miroir_proxy.config`, so the operator can
never write a file the proxy would refuse), the Deployment, the client and peer Services,
the state volume when the store is SQLite, and a PodDisruptionBudget.

The ConfigMap's layout (shards, RF, replica groups) is the cluster's first layout only: the
proxies seed their store's topology from it once, and every later change goes through the
admin API; only the other settings roll the proxies when they change.
"""

from __future__ import annotations

import hashlib

import yaml

from miroir_proxy.config import GroupConfig, MiroirConfig, NodeConfig

from ..spec import Cluster
from . import naming
from .naming import CONFIG_DIR, CONFIG_FILE, MEILI_PORT, STATE_DIR, Manifest


def proxy_config(cluster: Cluster) -> MiroirConfig:
    spec = cluster.spec
    groups = []
    for index in range(spec.replica_groups.count):
        group = naming.group_id(index)
        nodes = tuple(
            NodeConfig(
                id=naming.node_id(group, ordinal), url=naming.node_url(cluster, group, ordinal)
            )
            for ordinal in range(spec.replica_groups.nodes_per_group)
        )
        groups.append(GroupConfig(id=group, nodes=nodes))
    store = spec.store
    if store.type == "sqlite":
        return MiroirConfig(
            shards=spec.shards,
            replication_factor=spec.replication_factor,
            replica_groups=tuple(groups),
            state_path=f"{STATE_DIR}/state.sqlite3",
        )
    return MiroirConfig(
        shards=spec.shards,
        replication_factor=spec.replication_factor,
        replica_groups=tuple(groups),
        # A Secret-held URL reaches the proxy as MIROIR_STORE instead.
        store=store.redis.url if store.redis else None,
    )


def config_text(config: MiroirConfig) -> str:
    """Only what differs from the proxy's defaults, but always the layout the spec chose."""
    document = config.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    layout = {"shards": config.shards, "replication_factor": config.replication_factor}
    return yaml.safe_dump({**layout, **document}, sort_keys=False)


def config_map(cluster: Cluster, text: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": naming.metadata(cluster, naming.proxy(cluster), "proxy"),
        "data": {CONFIG_FILE: text},
    }


def _env(cluster: Cluster) -> list[Manifest]:
    secrets = cluster.spec.secrets
    env = []
    for var, ref in (
        ("MIROIR_MASTER_KEY", secrets.master_key),
        ("MIROIR_ADMIN_KEY", secrets.admin_key),
        ("MIROIR_NODE_MASTER_KEY", secrets.node_master_key),
    ):
        if ref is not None:
            env.append(naming.secret_env(var, ref))
    redis = cluster.spec.store.redis
    if cluster.spec.store.type == "redis" and redis and redis.secret_ref:
        env.append(naming.secret_env("MIROIR_STORE", redis.secret_ref))
    return env


def _sqlite(cluster: Cluster) -> bool:
    return cluster.spec.store.type == "sqlite"


# The layout in the file only seeds the store on its first start; afterwards the store's
# topology wins and changes go through the admin API, so these never roll the proxies.
SEED_FIELDS = frozenset({"shards", "replication_factor", "replica_groups"})


def settings_checksum(config: MiroirConfig) -> str:
    """Digest of what a running proxy reads from its file: a change must roll the pods."""
    # What the file sets, as config_text writes it: new proxy settings with defaults leave
    # the digest (and the golden files) alone.
    document = config.model_dump(
        mode="json", exclude_defaults=True, exclude_none=True, exclude=set(SEED_FIELDS)
    )
    return hashlib.sha256(yaml.safe_dump(document, sort_keys=True).encode()).hexdigest()


def deployment(cluster: Cluster, config: MiroirConfig, image: str) -> Manifest:
    spec = cluster.spec
    volumes: list[Manifest] = [
        {"name": "config", "configMap": {"name": naming.proxy(cluster)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[Manifest] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (the pod's own emptyDir)
    ]
    if _sqlite(cluster):
        volumes.append(
            {"name": "state", "persistentVolumeClaim": {"claimName": naming.proxy_state(cluster)}}
        )
        mounts.append({"name": "state", "mountPath": STATE_DIR})
    grace_s = config.timeouts.shutdown_grace_ms // 1000 + 10
    body: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": naming.metadata(cluster, naming.proxy(cluster), "proxy"),
        "spec": {
            "selector": {"matchLabels": naming.selector(cluster, "proxy")},
            # One SQLite file on a ReadWriteOnce volume: the old pod must go first.
            "strategy": {"type": "Recreate"}
            if _sqlite(cluster)
            else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": naming.labels(cluster, "proxy"),
                    "annotations": {"miroir.io/settings-sha256": settings_checksum(config)},
                },
                "spec": {
                    "affinity": naming.spread(cluster, "proxy"),
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": grace_s,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "proxy",
                            "image": image,
                            "args": ["miroir-proxy", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
                            "env": _env(cluster),
                            "ports": [
                                {"name": "http", "containerPort": config.listen.port},
                                {"name": "metrics", "containerPort": config.listen.metrics_port},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/_miroir/ready", "port": "http"},
                                "periodSeconds": 5,
                                "timeoutSeconds": 2,
                                "failureThreshold": 2,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": "http"},
                                "periodSeconds": 10,
                                "timeoutSeconds": 2,
                                "failureThreshold": 6,
                            },
                            "resources": spec.proxy.resources.manifest(),
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
    if not spec.autoscaling.enabled:
        # Under an autoscaler the replica count is its field, not ours.
        body["spec"]["replicas"] = spec.proxy.replicas
    return body


def client_service(cluster: Cluster) -> Manifest:
    """The one address SDKs use."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.metadata(cluster, naming.client_service(cluster), "proxy"),
        "spec": {
            "type": "ClusterIP",
            "selector": naming.selector(cluster, "proxy"),
            "ports": [{"name": "http", "port": MEILI_PORT, "targetPort": "http"}],
        },
    }


def peers_service(cluster: Cluster, config: MiroirConfig) -> Manifest:
    """Every proxy pod by name, ready or not: metrics scraping and peer discovery."""
    meta = naming.metadata(cluster, naming.peers_service(cluster), "proxy")
    meta["labels"]["miroir.io/metrics"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": naming.selector(cluster, "proxy"),
            "ports": [
                {"name": "http", "port": config.listen.port, "targetPort": "http"},
                {"name": "metrics", "port": config.listen.metrics_port, "targetPort": "metrics"},
            ],
        },
    }


def state_claim(cluster: Cluster) -> Manifest:
    sqlite = cluster.spec.store.sqlite
    claim: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(sqlite.size)}},
    }
    if sqlite.storage_class_name:
        claim["storageClassName"] = sqlite.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": naming.metadata(cluster, naming.proxy_state(cluster), "proxy"),
        "spec": claim,
    }


def disruption_budget(cluster: Cluster) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": naming.metadata(cluster, naming.proxy(cluster), "proxy"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": naming.selector(cluster, "proxy")},
        },
    }
