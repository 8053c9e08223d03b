"""The Helm chart, rendered and linted offline by Helm itself (helm-python-sdk bundles Helm
as a library): every object is valid Kubernetes 1.30, RBAC covers exactly what the operator
manages, values are checked by values.schema.json, and the metric names the adapter rules
and the dashboard use are the ones the proxy exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml

from miroir_operator import builders, crd
from miroir_operator.builders import autoscaler
from miroir_operator.kube import plural
from miroir_operator.spec import parse_cluster
from miroir_proxy.api.metrics import Metrics

from .kubevalidate import validate_all
from .opkit import CHART, example_cluster

RELEASE = "miroir"
NAMESPACE = "miroir-system"
CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "ClusterKopfPeering",
}
EVERYTHING_ON = {"serviceMonitor": {"enabled": True}, "grafanaDashboard": {"enabled": True}}


def _render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [d for d in yaml.safe_load_all(text) if d]
    return objects


def _crds() -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        files = chart.crds
    return [d for f in files for d in yaml.safe_load_all(f["data"]) if d]


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_the_chart_lints_clean_for_kubernetes_1_30() -> None:
    for values in ({}, EVERYTHING_ON, {"operator": {"watchNamespaces": ["a", "b"]}}):
        report = helm.lint(CHART, values, strict=True, kube_version="v1.30.0")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


@pytest.mark.parametrize("values", [{}, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_every_rendered_object_is_valid_kubernetes(values: dict[str, Any]) -> None:
    objects = _render(values) + _crds()
    foreign = validate_all(objects)
    assert {o["kind"] for o in foreign} <= {"ServiceMonitor", "ClusterKopfPeering"}
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_the_chart_installs_the_crd_and_kopf_peering() -> None:
    names = {c["metadata"]["name"]: c for c in _crds()}
    assert set(names) == {
        f"{crd.PLURAL}.{crd.GROUP}",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    assert names[f"{crd.PLURAL}.{crd.GROUP}"] == crd.manifest()


def _managed_kinds() -> set[tuple[str, str]]:
    """(API group, plural) of everything the builders can create, over the spec variants."""
    kinds = set()
    production = example_cluster("production")
    variants = [example_cluster("small"), production]
    keda = json.loads(json.dumps(production))
    keda["spec"]["autoscaling"]["provider"] = "keda"
    variants.append(keda)
    for document in variants:
        document["metadata"] = {"uid": "u", "namespace": "ns", **document["metadata"]}
        for obj in builders.desired_objects(parse_cluster(document)):
            group = obj["apiVersion"].rpartition("/")[0]
            kinds.add((group, plural(obj["kind"])))
    return kinds


def _grants(role: dict[str, Any]) -> Iterator[tuple[str, str, frozenset[str]]]:
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                yield group, resource, frozenset(rule["verbs"])


def test_rbac_grants_only_what_the_operator_manages() -> None:
    role = _one(_render(), "ClusterRole")
    grants = list(_grants(role))
    assert all("*" not in (g, r) and "*" not in v for g, r, v in grants), "no wildcards"
    writable = {(g, r) for g, r, v in grants if "create" in v}
    assert writable == _managed_kinds() | {("", "events"), ("events.k8s.io", "events")}
    secrets = [v for g, r, v in grants if r == "secrets"]
    assert secrets == [frozenset({"get"})], "admin keys are read one by name, never listed"
    cluster_verbs = {v for g, r, v in grants if (g, r) == (crd.GROUP, crd.PLURAL)}
    assert cluster_verbs == {frozenset({"get", "list", "watch", "patch", "update"})}
    binding = _one(_render(), "ClusterRoleBinding")
    account = _one(_render(), "ServiceAccount")
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_the_operator_deployment_runs_the_console_script_with_its_image() -> None:
    deployment = _one(_render({"image": {"repository": "reg/miroir", "tag": "9"}}), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "reg/miroir:9"
    assert container["args"][:2] == ["miroir-operator", "run"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"MIROIR_PROXY_IMAGE": "reg/miroir:9"}
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert spec["securityContext"]["runAsNonRoot"] is True
    default = _one(_render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert default["image"] == f"miroir/miroir:{builders.DEFAULT_PROXY_IMAGE.split(':')[1]}"


def test_watching_some_namespaces_passes_them_and_peers_in_each() -> None:
    objects = _render({"operator": {"watchNamespaces": ["a", "b"]}})
    args = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=a", "--namespace=b"]
    peerings = [o for o in objects if o["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]
    assert not [o for o in objects if o["kind"] == "ClusterKopfPeering"]


@pytest.mark.parametrize(
    "values",
    [
        {"image": {"repository": "r", "pullPolicy": "Sometimes"}},
        {"operator": {"logLevel": "LOUD"}},
        {"serviceMonitor": {"interval": "often"}},
        {"typo": True},
    ],
)
def test_values_schema_rejects_nonsense(values: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmError):
        _render(values)


def _exported_metrics() -> set[str]:
    metrics = Metrics()
    metrics.observe_request("GET", "/search", 200, 0.01)
    metrics.observe_fanout("search", 3)
    metrics.partial_responses.labels("search").inc()
    metrics.node_healthy.labels("n1").set(1)
    text = metrics.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def _metric_names(text: str) -> set[str]:
    return set(re.findall(r"\bmiroir_[a-z_]+", text))


def test_adapter_rules_serve_the_metrics_the_hpa_asks_for() -> None:
    config_map = _one(_render(), "ConfigMap")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    (pods_rule,) = config["rules"]
    (external_rule,) = config["externalRules"]
    assert pods_rule["name"]["as"] == autoscaler.IN_FLIGHT
    assert external_rule["name"]["as"] == autoscaler.QUEUE_DEPTH
    assert external_rule["metricsQuery"].startswith("max("), "a global gauge is never summed"
    assert _metric_names(yaml.safe_dump(config)) <= _exported_metrics()


def test_the_dashboard_is_json_over_metrics_the_proxy_exports() -> None:
    objects = _render(EVERYTHING_ON)
    dashboards = [o for o in objects if o["metadata"]["name"].endswith("-dashboard")]
    (dashboard,) = dashboards
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["miroir-proxies.json"])
    expressions = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    used = _metric_names(expressions)
    assert autoscaler.QUEUE_DEPTH in used and autoscaler.IN_FLIGHT in used
    assert used <= _exported_metrics(), used - _exported_metrics()
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"]["miroir.io/metrics"] == "true"


def test_optional_objects_are_off_by_default() -> None:
    kinds = {o["kind"] for o in _render()}
    assert "ServiceMonitor" not in kinds
    assert not [o for o in _render() if o["metadata"]["name"].endswith("-dashboard")]
