"""Wires the handlers into a kopf registry and runs the operator.

`register()` takes the registry and the operator config explicitly so tests build a fresh registry
per test; `run()` is the `miroir-operator run` entry point.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import kopf

from . import crd
from .adminapi import Sessions
from .handlers import (
    RECONCILE_FIELD,
    RECONCILE_ID,
    Clients,
    OperatorConfig,
    diffbase_storage,
    progress_storage,
    reconcile,
    resync,
)
from .kube import Kube

Login = Callable[..., kopf.ConnectionInfo | None]


def default_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, the ServiceAccount; elsewhere, the current kubeconfig context."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


def configure(settings: kopf.OperatorSettings) -> None:
    # Progress and diff-base go to annotations of our own prefix, not into status.
    settings.persistence.finalizer = f"{crd.GROUP}/operator"
    settings.persistence.progress_storage = progress_storage()
    settings.persistence.diffbase_storage = diffbase_storage()
    # Silent watch stalls are the most reported kopf problem: reconnect periodically.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 600
    settings.posting.level = logging.INFO


def register(
    registry: kopf.OperatorRegistry, config: OperatorConfig, login: Login = default_login
) -> None:
    kube = Kube()
    clients = Clients(kube=kube, http=Sessions())

    @kopf.on.login(registry=registry)
    async def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info = login(**kwargs)
        if info is not None:
            await kube.connect(info)
        return info

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(**_: Any) -> None:
        await kube.close()
        await clients.http.close()

    resource = (crd.GROUP, crd.VERSION, crd.PLURAL)

    @kopf.on.resume(*resource, id=RECONCILE_ID, registry=registry)
    @kopf.on.create(*resource, id=RECONCILE_ID, registry=registry)
    @kopf.on.update(*resource, id=RECONCILE_ID, field=RECONCILE_FIELD, registry=registry)
    async def _reconcile(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await reconcile(body, patch, logger, clients, config)

    @kopf.timer(
        *resource,
        id="resync",
        interval=config.resync_interval_s,
        initial_delay=config.resync_interval_s,
        registry=registry,
    )
    async def _resync(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        await resync(body, patch, logger, clients, config)


PEERING = "miroir"


def run(namespaces: list[str], log_level: str, config: OperatorConfig) -> None:
    logging.basicConfig(level=log_level)
    registry = kopf.OperatorRegistry()
    register(registry, config)
    settings = kopf.OperatorSettings()
    configure(settings)
    # One active operator: the chart creates this peering object; a second instance pauses.
    settings.peering.name = PEERING
    settings.peering.mandatory = True
    settings.peering.clusterwide = not namespaces
    asyncio.run(
        kopf.operator(
            registry=registry,
            settings=settings,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint="http://0.0.0.0:8080/healthz",
        )
    )
