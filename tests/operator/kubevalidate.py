"""Validate objects against the Kubernetes 1.30 OpenAPI schemas that `kubernetes-validate`
ships (strict: unknown fields fail). Kinds from other projects' CRDs have no schema there;
they are returned so the caller can check them its own way."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

K8S_VERSION = "1.30.0"
FOREIGN_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("kopf.dev/v1", "ClusterKopfPeering"),
}


def validate_all(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate every object of a Kubernetes kind; returns the foreign ones."""
    foreign = []
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) in FOREIGN_KINDS:
            foreign.append(obj)
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            name = obj.get("metadata", {}).get("name")
            raise AssertionError(f"{obj.get('kind')} {name}: {exc.message}") from exc
    return foreign
