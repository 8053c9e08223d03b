"""The `MiroirCluster` custom resource: its OpenAPI schema, defaults and cross-field rules.

This module is the one source of the schema. `miroir-operator crd` prints the CRD the chart
installs (a test keeps `charts/miroir/crds/` equal to it), and the operator applies the same
defaults and checks the same rules on every spec it reads: the API server rejects nonsense
before the operator sees it, but `miroir-operator render` works offline and a test API
server (kmock) enforces nothing, so the operator never trusts that it ran.

Cross-field rules are CEL `x-kubernetes-validations` for the API server and a Python
predicate for the operator, side by side in `CROSS_FIELD_RULES` so the two cannot drift.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

GROUP = "miroir.io"
VERSION = "v1alpha1"
KIND = "MiroirCluster"
PLURAL = "miroirclusters"
SINGULAR = "miroircluster"
SHORT_NAMES = ["mc", "miroir"]
API_VERSION = f"{GROUP}/{VERSION}"

MEILISEARCH_IMAGE = "getmeili/meilisearch"
MEILISEARCH_VERSION = "v1.50.0"

PHASES = ("Pending", "Provisioning", "Ready", "Scaling", "Resharding", "Degraded", "Failed")

Schema = dict[str, Any]


def _int(
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    description: str = "",
) -> Schema:
    out: Schema = {"type": "integer"}
    if description:
        out["description"] = description
    if default is not None:
        out["default"] = default
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


def _str(description: str = "", default: str | None = None, **extra: Any) -> Schema:
    out: Schema = {"type": "string", **extra}
    if description:
        out["description"] = description
    if default is not None:
        out["default"] = default
    return out


def _obj(
    properties: Mapping[str, Schema],
    description: str = "",
    default: bool = True,
    required: list[str] | None = None,
) -> Schema:
    """An object; `default: {}` lets the API server fill its children's defaults."""
    out: Schema = {"type": "object", "properties": dict(properties)}
    if description:
        out["description"] = description
    if default:
        out["default"] = {}
    if required:
        out["required"] = required
    return out


QUANTITY: Schema = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",  # noqa: E501
}


def _resources(cpu: str, memory: str, description: str) -> Schema:
    per_kind: Schema = {"type": "object", "additionalProperties": QUANTITY}
    return _obj(
        {
            "requests": {**per_kind, "default": {"cpu": cpu, "memory": memory}},
            "limits": {**per_kind, "default": {"memory": memory}},
        },
        description,
    )


def _secret_ref(description: str, default_key: str) -> Schema:
    return _obj(
        {
            "name": _str("name of a Secret in the cluster's namespace", minLength=1),
            "key": _str("key inside the Secret", default=default_key, minLength=1),
        },
        description,
        default=False,
        required=["name"],
    )


SPEC: Schema = _obj(
    {
        "meilisearch": _obj(
            {
                "image": _str("Meilisearch image, without tag", default=MEILISEARCH_IMAGE),
                "version": _str("Meilisearch image tag", default=MEILISEARCH_VERSION, minLength=1),
            },
            "the Meilisearch Community Edition nodes",
        ),
        "nodes": _obj(
            {
                "resources": _resources("500m", "1Gi", "CPU and memory of each node"),
                "storage": _obj(
                    {
                        "size": {**QUANTITY, "default": "10Gi"},
                        "storageClassName": _str("StorageClass of each node's volume"),
                    },
                    "one PersistentVolumeClaim per node",
                ),
            },
            "every Meilisearch node",
        ),
        "replicaGroups": _obj(
            {
                "count": _int(1, 1, 16, "replica groups; each holds every shard"),
                "nodesPerGroup": _int(1, 1, 128, "Meilisearch nodes in each group"),
            },
            "searches go to one group, writes to all",
        ),
        "replicationFactor": _int(1, 1, 16, "copies of each shard inside a group"),
        "shards": _int(16, 1, 4096, "shard count for new indexes"),
        "indexes": {
            "type": "array",
            "description": "shard counts of existing indexes; a change starts an online reshard",
            "maxItems": 1000,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"],
            "items": _obj(
                {
                    "uid": _str("index uid", minLength=1, maxLength=400),
                    "shards": _int(None, 1, 4096),
                },
                default=False,
                required=["uid", "shards"],
            ),
        },
        "proxy": _obj(
            {
                "image": _str("proxy image; default: the operator's own image"),
                "replicas": _int(1, 1, 1000, "proxy pods (fixed when autoscaling is off)"),
                "resources": _resources("250m", "512Mi", "CPU and memory of each proxy pod"),
            },
            "the stateless Miroir proxies",
        ),
        "store": _obj(
            {
                "type": _str(
                    "sqlite: one proxy, state on a volume; redis: shared by many proxies",
                    default="sqlite",
                    enum=["sqlite", "redis"],
                ),
                "redis": _obj(
                    {
                        "url": _str(
                            "redis://host:port/db, or redis+cluster://host:port for a Redis "
                            "Cluster (any one node)",
                            pattern=r"^rediss?(\+cluster)?://",
                        ),
                        "secretRef": _secret_ref("a Secret holding the redis URL", "url"),
                    },
                    default=False,
                ),
                "sqlite": _obj(
                    {
                        "size": {**QUANTITY, "default": "1Gi"},
                        "storageClassName": _str("StorageClass of the state volume"),
                    },
                ),
            },
            "where proxies keep shared state (tasks, topology, leases, jobs)",
        ),
        "secrets": _obj(
            {
                "masterKey": _secret_ref("clients' master key", "masterKey"),
                "adminKey": _secret_ref("admin API key (default: the master key)", "adminKey"),
                "nodeMasterKey": _secret_ref("master key of every node", "nodeMasterKey"),
            },
            "Secret references; keys never appear in the spec",
        ),
        "autoscaling": _obj(
            {
                "enabled": {"type": "boolean", "default": False},
                "provider": _str("hpa or keda", default="hpa", enum=["hpa", "keda"]),
                "minReplicas": _int(2, 1, 1000),
                "maxReplicas": _int(10, 1, 1000),
                "targetQueueDepth": _int(
                    100, 1, None, "background job chunks waiting, over the whole cluster"
                ),
                "targetInFlightRequests": _int(50, 1, None, "per proxy pod, averaged"),
                "prometheusAddress": _str(
                    "Prometheus that KEDA queries",
                    default="http://prometheus-operated.monitoring.svc:9090",
                ),
            },
            "scale the proxies on queue depth and in-flight requests",
        ),
    },
    "desired shape of a Miroir cluster",
)


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule spanning fields: `cel` for the API server, `check` for the operator."""

    path: tuple[str, ...]
    cel: str
    message: str
    check: Callable[[Mapping[str, Any]], bool]


CROSS_FIELD_RULES: tuple[Rule, ...] = (
    Rule(
        (),
        "self.replicationFactor <= self.replicaGroups.nodesPerGroup",
        "replicationFactor cannot exceed replicaGroups.nodesPerGroup",
        lambda s: s["replicationFactor"] <= s["replicaGroups"]["nodesPerGroup"],
    ),
    Rule(
        (),
        "self.proxy.replicas == 1 || self.store.type == 'redis'",
        "more than one proxy needs store.type redis (SQLite serves one proxy)",
        lambda s: s["proxy"]["replicas"] == 1 or s["store"]["type"] == "redis",
    ),
    Rule(
        (),
        "!self.autoscaling.enabled || self.store.type == 'redis'",
        "autoscaling runs several proxies and needs store.type redis",
        lambda s: not s["autoscaling"]["enabled"] or s["store"]["type"] == "redis",
    ),
    Rule(
        ("store",),
        "self.type != 'redis' || (has(self.redis) && (has(self.redis.url) != "
        "has(self.redis.secretRef)))",
        "store.type redis needs exactly one of store.redis.url and store.redis.secretRef",
        lambda s: (
            s["type"] != "redis"
            or ("redis" in s and (("url" in s["redis"]) != ("secretRef" in s["redis"])))
        ),
    ),
    Rule(
        ("autoscaling",),
        "self.minReplicas <= self.maxReplicas",
        "autoscaling.minReplicas cannot exceed autoscaling.maxReplicas",
        lambda s: s["minReplicas"] <= s["maxReplicas"],
    ),
)


def _with_rules(spec: Schema) -> Schema:
    out = copy.deepcopy(spec)
    for rule in CROSS_FIELD_RULES:
        node = out
        for part in rule.path:
            node = node["properties"][part]
        node.setdefault("x-kubernetes-validations", []).append(
            {"rule": rule.cel, "message": rule.message}
        )
    return out


def _condition() -> Schema:
    return _obj(
        {
            "type": _str(),
            "status": _str(enum=["True", "False", "Unknown"]),
            "reason": _str(),
            "message": _str(),
            "lastTransitionTime": _str(format="date-time"),
            "observedGeneration": _int(),
        },
        default=False,
        required=["type", "status"],
    )


STATUS: Schema = {
    "type": "object",
    "properties": {
        "phase": _str(enum=list(PHASES)),
        "observedGeneration": _int(),
        "nodes": _str("ready/desired Meilisearch nodes"),
        "conditions": {
            "type": "array",
            "items": _condition(),
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        "groups": {
            "type": "array",
            "items": _obj(
                {
                    "id": _str(),
                    "state": _str(
                        "initializing, syncing, active; or unregistered, removing, unknown"
                    ),
                    "nodes": _int(),
                    "nodesReady": _int(),
                    "shardsSynced": _int(),
                    "shardsTotal": _int(),
                },
                default=False,
            ),
        },
        "operation": _obj(
            {
                "id": _str(),
                "kind": _str(),
                "state": _str(),
                "phase": _str(),
                "progress": _obj({"done": _int(), "total": _int(), "unit": _str()}, default=False),
            },
            default=False,
        ),
    },
    # kopf keeps its progress under status.kopf unless told otherwise.
    "x-kubernetes-preserve-unknown-fields": True,
}

PRINTER_COLUMNS: list[dict[str, str]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Groups", "type": "integer", "jsonPath": ".spec.replicaGroups.count"},
    {"name": "Nodes", "type": "string", "jsonPath": ".status.nodes"},
    {"name": "Shards", "type": "integer", "jsonPath": ".spec.shards"},
    {"name": "RF", "type": "integer", "jsonPath": ".spec.replicationFactor"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def open_api_schema() -> Schema:
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _with_rules(SPEC),
            "status": STATUS,
        },
    }


def manifest() -> dict[str, Any]:
    """The CustomResourceDefinition object, as `kubectl apply` and the chart take it."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": open_api_schema()},
                }
            ],
        },
    }


def with_defaults(value: Any, schema: Schema) -> Any:
    """`value` with the schema's defaults filled in, as the API server fills them."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, child in schema["properties"].items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = with_defaults(out[name], child)
        return out
    if isinstance(value, list) and "items" in schema:
        return [with_defaults(item, schema["items"]) for item in value]
    return value


class InvalidSpec(ValueError):
    """The spec breaks the schema or a cross-field rule; retrying cannot fix it."""


def _where(path: tuple[str | int, ...]) -> str:
    return "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def defaulted_spec(spec: Any) -> dict[str, Any]:
    """The spec with defaults, checked against the schema and every cross-field rule;
    raises `InvalidSpec` with every problem found, each prefixed by where it is."""
    if not isinstance(spec, dict):
        raise InvalidSpec("spec must be an object")
    full: dict[str, Any] = with_defaults(spec, SPEC)
    validator = jsonschema.Draft7Validator(SPEC)
    problems = [
        f"{_where(tuple(e.absolute_path))}: {e.message}"
        for e in sorted(validator.iter_errors(full), key=lambda e: list(map(str, e.path)))
    ]
    if not problems:
        for rule in CROSS_FIELD_RULES:
            node: Any = full
            for part in rule.path:
                node = node[part]
            if not rule.check(node):
                problems.append(f"{_where(rule.path)}: {rule.message}")
    if problems:
        raise InvalidSpec("; ".join(problems))
    return full
