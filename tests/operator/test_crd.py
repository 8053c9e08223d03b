"""The MiroirCluster CRD: a valid Kubernetes object, a structural schema whose defaults pass
their own validation, cross-field rules that reject nonsense, examples that pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from miroir_operator import crd

from .opkit import CHART, EXAMPLES, REPO

K8S_VERSION = "1.30.0"


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def test_the_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(crd.manifest(), K8S_VERSION, strict=True)


def test_the_schema_is_structural_and_every_default_passes_its_own_schema() -> None:
    schema = crd.open_api_schema()
    for path, node in _nodes(schema):
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{path or '.'} has no type"
        if "default" in node:
            jsonschema.validate(crd.with_defaults(node["default"], node), node)


def test_the_chart_installs_exactly_this_crd() -> None:
    for path in (CHART / "crds" / "miroirclusters.yaml", REPO / "crds" / "miroirclusters.yaml"):
        assert yaml.safe_load(path.read_text()) == crd.manifest(), (
            f"{path} is stale: regenerate it with `miroir-operator crd > {path}`"
        )


def test_an_empty_spec_gets_every_default() -> None:
    spec = crd.defaulted_spec({})
    assert spec["replicaGroups"] == {"count": 1, "nodesPerGroup": 1}
    assert spec["replicationFactor"] == 1
    assert spec["shards"] == 16
    assert spec["meilisearch"] == {"image": "getmeili/meilisearch", "version": "v1.50.0"}
    assert spec["store"]["type"] == "sqlite"
    assert spec["proxy"]["replicas"] == 1
    assert spec["autoscaling"]["enabled"] is False
    assert spec["nodes"]["storage"]["size"] == "10Gi"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"replicationFactor": 0}, "spec.replicationFactor: 0 is less than the minimum of 1"),
        ({"shards": 5000}, "spec.shards: 5000 is greater than the maximum of 4096"),
        ({"replicaGroups": {"count": "two"}}, "spec.replicaGroups.count: 'two' is not of type"),
        ({"store": {"type": "etcd"}}, "spec.store.type: 'etcd' is not one of"),
        (
            {"replicationFactor": 3, "replicaGroups": {"nodesPerGroup": 2}},
            "replicationFactor cannot exceed replicaGroups.nodesPerGroup",
        ),
        ({"proxy": {"replicas": 2}}, "more than one proxy needs store.type redis"),
        ({"autoscaling": {"enabled": True}}, "autoscaling runs several proxies"),
        ({"store": {"type": "redis"}}, "exactly one of store.redis.url and store.redis.secretRef"),
        (
            {
                "store": {
                    "type": "redis",
                    "redis": {"url": "redis://r:6379/0", "secretRef": {"name": "s"}},
                }
            },
            "exactly one of store.redis.url and store.redis.secretRef",
        ),
        (
            {
                "store": {"type": "redis", "redis": {"url": "redis://r:6379/0"}},
                "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3},
            },
            "spec.autoscaling: autoscaling.minReplicas cannot exceed autoscaling.maxReplicas",
        ),
        ({"store": {"type": "redis", "redis": {"url": "http://r"}}}, "does not match"),
        ({"nodes": {"storage": {"size": "ten gigs"}}}, "spec.nodes.storage.size"),
    ],
)
def test_nonsense_is_rejected_with_where_and_why(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(crd.InvalidSpec) as caught:
        crd.defaulted_spec(spec)
    assert message in str(caught.value)


def test_every_rule_has_a_cel_twin_in_the_published_schema() -> None:
    schema = crd.open_api_schema()["properties"]["spec"]
    published = []
    for _, node in _nodes(schema):
        published += [v["rule"] for v in node.get("x-kubernetes-validations", [])]
    assert sorted(published) == sorted(rule.cel for rule in crd.CROSS_FIELD_RULES)


def _clusters_in_examples() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == crd.KIND:
                found.append((path.name, document))
    return found


@pytest.mark.parametrize(("filename", "cluster"), _clusters_in_examples())
def test_examples_validate_against_the_crd_schema(filename: str, cluster: dict[str, Any]) -> None:
    assert cluster["apiVersion"] == crd.API_VERSION
    schema = crd.open_api_schema()
    defaulted = {
        **cluster,
        "spec": crd.with_defaults(cluster["spec"], schema["properties"]["spec"]),
    }
    jsonschema.validate(defaulted, schema)
    crd.defaulted_spec(cluster["spec"])  # the cross-field rules too


def test_both_examples_exist() -> None:
    assert {name for name, _ in _clusters_in_examples()} == {"small.yaml", "production.yaml"}


@st.composite
def _rule_inputs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicationFactor": draw(st.integers(1, 4)),
        "replicaGroups": {"nodesPerGroup": draw(st.integers(1, 4))},
        "proxy": {"replicas": draw(st.integers(1, 3))},
        "store": {"type": draw(st.sampled_from(["sqlite", "redis"]))},
        "autoscaling": {
            "enabled": draw(st.booleans()),
            "minReplicas": draw(st.integers(1, 4)),
            "maxReplicas": draw(st.integers(1, 4)),
        },
    }
    redis = {}
    if draw(st.booleans()):
        redis["url"] = "redis://r:6379/0"
    if draw(st.booleans()):
        redis["secretRef"] = {"name": "r"}
    if redis or draw(st.booleans()):
        spec["store"]["redis"] = redis
    return spec


_CEL = celpy.Environment()
_PROGRAMS = [(rule, _CEL.program(_CEL.compile(rule.cel))) for rule in crd.CROSS_FIELD_RULES]


@settings(max_examples=150)
@given(_rule_inputs())
def test_each_cel_rule_agrees_with_its_python_twin(spec: dict[str, Any]) -> None:
    """The API server runs the CEL, the operator the Python: same verdict on every spec."""
    full = crd.with_defaults(spec, crd.SPEC)
    for rule, program in _PROGRAMS:
        node: Any = full
        for part in rule.path:
            node = node[part]
        by_cel = bool(program.evaluate({"self": celpy.json_to_cel(node)}))
        assert by_cel == rule.check(node), (rule.cel, node)
