"""The typed view of a `MiroirCluster`: what builders and handlers read instead of raw dicts.

Defaults and bounds live in the CRD schema (`crd.py`); `parse_cluster` applies and checks
them first, so these models carry no defaults of their own and only give the data types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from . import crd

Quantity = int | str


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )


class Resources(_Model):
    requests: dict[str, Quantity]
    limits: dict[str, Quantity]

    def manifest(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "limits": dict(self.limits)}


class Storage(_Model):
    size: Quantity
    storage_class_name: str | None = None


class Meilisearch(_Model):
    image: str
    version: str

    @property
    def reference(self) -> str:
        return f"{self.image}:{self.version}"


class Nodes(_Model):
    resources: Resources
    storage: Storage


class ReplicaGroups(_Model):
    count: int
    nodes_per_group: int


class IndexShards(_Model):
    uid: str
    shards: int


class Proxy(_Model):
    image: str | None = None
    replicas: int
    resources: Resources


class SecretRef(_Model):
    name: str
    key: str


class Redis(_Model):
    url: str | None = None
    secret_ref: SecretRef | None = None


class Store(_Model):
    type: Literal["sqlite", "redis"]
    redis: Redis | None = None
    sqlite: Storage


class Secrets(_Model):
    master_key: SecretRef | None = None
    admin_key: SecretRef | None = None
    node_master_key: SecretRef | None = None


class Autoscaling(_Model):
    enabled: bool
    provider: Literal["hpa", "keda"]
    min_replicas: int
    max_replicas: int
    target_queue_depth: int
    target_in_flight_requests: int
    prometheus_address: str


class ClusterSpec(_Model):
    meilisearch: Meilisearch
    nodes: Nodes
    replica_groups: ReplicaGroups
    replication_factor: int
    shards: int
    indexes: tuple[IndexShards, ...] = ()
    proxy: Proxy
    store: Store
    secrets: Secrets
    autoscaling: Autoscaling


class Cluster(_Model):
    """One MiroirCluster as the builders need it: identity plus the defaulted spec."""

    name: str = Field(min_length=1, max_length=40)
    namespace: str
    uid: str
    generation: int = 1
    spec: ClusterSpec


def parse_cluster(body: Mapping[str, Any], default_namespace: str = "default") -> Cluster:
    """A MiroirCluster object (as kopf or a YAML file gives it) as a `Cluster`; raises
    `crd.InvalidSpec` for anything the API server should have rejected."""
    metadata = body.get("metadata") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise crd.InvalidSpec("metadata.name is required")
    if len(name) > 40:
        # Children append suffixes such as `-g15-proxy-state`; their names stay within 63.
        raise crd.InvalidSpec("metadata.name: at most 40 characters")
    spec = crd.defaulted_spec(body.get("spec"))
    return Cluster(
        name=name,
        namespace=metadata.get("namespace") or default_namespace,
        uid=metadata.get("uid") or "",
        generation=metadata.get("generation") or 1,
        spec=ClusterSpec.model_validate(spec),
    )
