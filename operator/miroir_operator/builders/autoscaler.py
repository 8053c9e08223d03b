"""Exactly one autoscaler for the proxy Deployment, when autoscaling is on.

Queue depth (`miroir_background_queue_depth`) is the count of job chunks waiting over the
whole cluster and every pod exports the same value, so it is an External metric with
`type: Value`: averaging it per pod would shrink the target as pods are added. In-flight
requests (`miroir_requests_in_flight`) are per pod, so they are averaged. prometheus-adapter
serves both (the chart ships its rules); with `provider: keda` a KEDA ScaledObject asks
Prometheus the same two questions instead.
"""

from __future__ import annotations

from ..spec import Cluster
from . import naming
from .naming import Manifest

QUEUE_DEPTH = "miroir_background_queue_depth"
IN_FLIGHT = "miroir_requests_in_flight"


def _metric_labels(cluster: Cluster) -> dict[str, str]:
    """The labels Prometheus puts on the proxies' series when it scrapes the peers Service."""
    return {"namespace": cluster.namespace, "service": naming.peers_service(cluster)}


def _target(cluster: Cluster) -> Manifest:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": naming.proxy(cluster)}


def horizontal_pod_autoscaler(cluster: Cluster) -> Manifest:
    auto = cluster.spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": naming.metadata(cluster, naming.proxy(cluster), "proxy"),
        "spec": {
            "scaleTargetRef": _target(cluster),
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": QUEUE_DEPTH,
                            "selector": {"matchLabels": {"service": naming.peers_service(cluster)}},
                        },
                        "target": {"type": "Value", "value": str(auto.target_queue_depth)},
                    },
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": IN_FLIGHT},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(auto.target_in_flight_requests),
                        },
                    },
                },
            ],
        },
    }


def _promql_selector(cluster: Cluster) -> str:
    return ",".join(f'{k}="{v}"' for k, v in _metric_labels(cluster).items())


def scaled_object(cluster: Cluster) -> Manifest:
    auto = cluster.spec.autoscaling
    labels = _promql_selector(cluster)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": naming.metadata(cluster, naming.proxy(cluster), "proxy"),
        "spec": {
            "scaleTargetRef": _target(cluster),
            "minReplicaCount": auto.min_replicas,
            "maxReplicaCount": auto.max_replicas,
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "Value",
                    "metadata": {
                        "serverAddress": auto.prometheus_address,
                        "query": f"max({QUEUE_DEPTH}{{{labels}}})",
                        "threshold": str(auto.target_queue_depth),
                    },
                },
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": auto.prometheus_address,
                        "query": f"sum({IN_FLIGHT}{{{labels}}})",
                        "threshold": str(auto.target_in_flight_requests),
                    },
                },
            ],
        },
    }


def autoscalers(cluster: Cluster) -> list[Manifest]:
    auto = cluster.spec.autoscaling
    if not auto.enabled:
        return []
    if auto.provider == "keda":
        return [scaled_object(cluster)]
    return [horizontal_pod_autoscaler(cluster)]
