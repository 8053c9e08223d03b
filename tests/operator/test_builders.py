"""The pure builders: golden objects for the two examples, and invariants over many specs."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from miroir_operator import builders, crd
from miroir_operator.cli import dump_all
from miroir_operator.spec import Cluster, parse_cluster
from miroir_proxy.config import from_mapping

from .opkit import REPO, example_cluster

GOLDEN = REPO / "tests" / "operator" / "golden"
UPDATE = os.environ.get("MIROIR_UPDATE_GOLDEN") == "1"
IMAGE = "miroir/miroir:0.1.0"


def _cluster(spec: dict[str, Any], name: str = "demo", namespace: str = "search") -> Cluster:
    return parse_cluster(
        {
            "apiVersion": crd.API_VERSION,
            "kind": crd.KIND,
            "metadata": {"name": name, "namespace": namespace, "uid": "uid-1"},
            "spec": spec,
        }
    )


def _objects(cluster: Cluster) -> list[dict[str, Any]]:
    return builders.desired_objects(cluster, IMAGE)


def _of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("example", ["small", "production"])
def test_golden_objects(example: str) -> None:
    document = example_cluster(example)
    document["metadata"] = {"uid": "uid-1", "namespace": "default", **document["metadata"]}
    rendered = dump_all(_objects(parse_cluster(document)))
    path = GOLDEN / f"{example}.yaml"
    if UPDATE:
        path.write_text(rendered)
    assert rendered == path.read_text(), (
        f"{path.name} differs; review `miroir-operator render examples/{example}.yaml` and "
        "rerun with MIROIR_UPDATE_GOLDEN=1 if the change is intended"
    )


def test_golden_object_counts() -> None:
    small = Counter(o["kind"] for o in yaml.safe_load_all((GOLDEN / "small.yaml").read_text()))
    assert small == {
        "Service": 3,
        "StatefulSet": 1,
        "PodDisruptionBudget": 2,
        "ConfigMap": 1,
        "PersistentVolumeClaim": 1,
        "Deployment": 1,
    }
    large = Counter(o["kind"] for o in yaml.safe_load_all((GOLDEN / "production.yaml").read_text()))
    assert large == {
        "Service": 3,
        "StatefulSet": 2,
        "PodDisruptionBudget": 3,
        "ConfigMap": 1,
        "Deployment": 1,
        "HorizontalPodAutoscaler": 1,
    }


def _redis(url: bool) -> dict[str, Any]:
    return {"url": "redis://redis:6379/0"} if url else {"secretRef": {"name": "redis"}}


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    nodes = draw(st.integers(1, 6))
    store = draw(st.sampled_from(["sqlite", "redis"]))
    spec: dict[str, Any] = {
        "replicaGroups": {"count": draw(st.integers(1, 4)), "nodesPerGroup": nodes},
        "replicationFactor": draw(st.integers(1, nodes)),
        "shards": draw(st.integers(1, 64)),
        "store": {"type": store},
    }
    if store == "redis":
        spec["store"]["redis"] = _redis(draw(st.booleans()))
        spec["proxy"] = {"replicas": draw(st.integers(1, 5))}
        if draw(st.booleans()):
            spec["autoscaling"] = {
                "enabled": True,
                "provider": draw(st.sampled_from(["hpa", "keda"])),
            }
    return spec


@settings(max_examples=60)
@given(specs())
def test_invariants(spec: dict[str, Any]) -> None:
    cluster = _cluster(spec)
    objects = _objects(cluster)
    groups = spec["replicaGroups"]["count"]
    per_group = spec["replicaGroups"]["nodesPerGroup"]

    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "two objects of one kind share a name"
    for obj in objects:
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["kind"] == crd.KIND and owner["uid"] == "uid-1" and owner["controller"]
        assert obj["metadata"]["namespace"] == "search"

    statefulsets = _of_kind(objects, "StatefulSet")
    assert [s["metadata"]["name"] for s in statefulsets] == [f"demo-g{i}" for i in range(groups)]
    for sts in statefulsets:
        assert sts["spec"]["replicas"] == per_group
        pod = sts["spec"]["template"]
        assert set(sts["spec"]["selector"]["matchLabels"].items()) <= set(
            pod["metadata"]["labels"].items()
        )
        term = pod["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ][0]["podAffinityTerm"]
        assert term["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        assert len(sts["spec"]["volumeClaimTemplates"]) == 1

    (deployment,) = _of_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/_miroir/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {p["containerPort"] for p in container["ports"]} == {7700, 9090}
    assert "podAntiAffinity" in deployment["spec"]["template"]["spec"]["affinity"]

    budgets = _of_kind(objects, "PodDisruptionBudget")
    assert len(budgets) == groups + 1
    autoscalers = [o for o in objects if o["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}]
    auto = spec.get("autoscaling", {})
    if auto.get("enabled"):
        assert len(autoscalers) == 1
        expected = "ScaledObject" if auto["provider"] == "keda" else "HorizontalPodAutoscaler"
        assert autoscalers[0]["kind"] == expected
        assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    else:
        assert autoscalers == []
        assert deployment["spec"]["replicas"] == spec.get("proxy", {}).get("replicas", 1)
    sqlite = spec["store"]["type"] == "sqlite"
    assert len(_of_kind(objects, "PersistentVolumeClaim")) == (1 if sqlite else 0)
    assert deployment["spec"]["strategy"]["type"] == ("Recreate" if sqlite else "RollingUpdate")

    # The proxy's configuration is one the proxy accepts, and names every node by the DNS
    # name its StatefulSet gives it.
    (config_map,) = _of_kind(objects, "ConfigMap")
    config = from_mapping(yaml.safe_load(config_map["data"]["miroir.yaml"]), env={})
    assert config.shards == spec["shards"]
    assert config.replication_factor == spec["replicationFactor"]
    service = statefulsets[0]["spec"]["serviceName"]
    expected_urls = {
        f"http://demo-g{g}-{n}.{service}.search.svc:7700"
        for g in range(groups)
        for n in range(per_group)
    }
    assert {node.url for group in config.replica_groups for node in group.nodes} == expected_urls


def test_the_hpa_scales_on_global_queue_depth_and_per_pod_in_flight() -> None:
    cluster = _cluster(
        {
            "store": {"type": "redis", "redis": _redis(True)},
            "autoscaling": {"enabled": True, "targetQueueDepth": 7, "targetInFlightRequests": 9},
        }
    )
    (hpa,) = _of_kind(_objects(cluster), "HorizontalPodAutoscaler")
    external, pods = hpa["spec"]["metrics"]
    assert external["external"]["metric"]["name"] == "miroir_background_queue_depth"
    assert external["external"]["target"] == {"type": "Value", "value": "7"}
    assert pods["pods"]["metric"]["name"] == "miroir_requests_in_flight"
    assert pods["pods"]["target"] == {"type": "AverageValue", "averageValue": "9"}
    assert hpa["spec"]["scaleTargetRef"]["name"] == "demo-proxy"


def test_keys_and_a_secret_redis_url_reach_the_proxy_through_its_env_overrides() -> None:
    cluster = _cluster(
        {
            "store": {"type": "redis", "redis": {"secretRef": {"name": "redis", "key": "u"}}},
            "secrets": {"masterKey": {"name": "keys"}, "nodeMasterKey": {"name": "keys"}},
        }
    )
    objects = _objects(cluster)
    (deployment,) = _of_kind(objects, "Deployment")
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _container(deployment)["env"]}
    assert env == {
        "MIROIR_MASTER_KEY": {"name": "keys", "key": "masterKey"},
        "MIROIR_NODE_MASTER_KEY": {"name": "keys", "key": "nodeMasterKey"},
        "MIROIR_STORE": {"name": "redis", "key": "u"},
    }
    (config_map,) = _of_kind(objects, "ConfigMap")
    raw = yaml.safe_load(config_map["data"]["miroir.yaml"])
    assert "store" not in raw and "master_key" not in raw, "no secret in the ConfigMap"
    config = from_mapping(raw, env={"MIROIR_STORE": "redis://:pw@redis:6379/0"})
    assert config.store == "redis://:pw@redis:6379/0"
    (sts,) = _of_kind(objects, "StatefulSet")
    node_env = {e["name"]: e for e in _container(sts)["env"]}
    assert node_env["MEILI_ENV"]["value"] == "production"
    assert node_env["MEILI_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "nodeMasterKey"


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_only_settings_a_running_proxy_reads_roll_the_proxies() -> None:
    """The layout seeds the store once (then the admin API changes it): a new group or a
    new default shard count must not restart every proxy; a new store must."""

    def rollout_key(spec: dict[str, Any]) -> str:
        (deployment,) = _of_kind(_objects(_cluster(spec)), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"])

    redis = {"type": "redis", "redis": {"url": "redis://a:6379/0"}}
    base = rollout_key({"store": redis})
    assert rollout_key({"store": redis}) == base
    assert rollout_key({"store": redis, "shards": 32}) == base
    assert rollout_key({"store": redis, "replicaGroups": {"count": 3}}) == base
    assert rollout_key({"store": redis, "replicationFactor": 1}) == base
    moved = {"type": "redis", "redis": {"url": "redis://b:6379/0"}}
    assert rollout_key({"store": moved}) != base


def test_spec_proxy_image_overrides_the_operators_default() -> None:
    (deployment,) = _of_kind(_objects(_cluster({"proxy": {"image": "me/proxy:1"}})), "Deployment")
    assert _container(deployment)["image"] == "me/proxy:1"
    (deployment,) = _of_kind(_objects(_cluster({})), "Deployment")
    assert _container(deployment)["image"] == IMAGE
