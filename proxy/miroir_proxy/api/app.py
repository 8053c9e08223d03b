"""The proxy's aiohttp application: shared components under typed keys, created and closed
in one cleanup context, and the route tables of every Meilisearch resource."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from miroir_proxy.config import MiroirConfig
from miroir_proxy.core.topology import Topology, from_document, to_document
from miroir_proxy.dispatch.catalog import Catalog
from miroir_proxy.dispatch.cluster import Cluster, topology_from_config
from miroir_proxy.dispatch.keyring import KeyCache
from miroir_proxy.dispatch.tasks import TaskRegistry
from miroir_proxy.nodes.client import NodeClient
from miroir_proxy.nodes.metrics import PrometheusNodeMetrics
from miroir_proxy.nodes.probing import HealthProber, HealthState
from miroir_proxy.state.sqlite import SqliteStore
from miroir_proxy.state.store import Store

from .appkeys import BODY_LIMIT, CATALOG, CLUSTER, CONFIG, KEYS, METRICS, STORE, TASKS
from .auth import authorize
from .metrics import Metrics
from .middlewares import observe
from .routes import (
    admin,
    documents,
    documents_read,
    indexes,
    instance,
    keys,
    maintenance,
    search,
    settings,
    tasks,
    webhooks,
)


async def load_topology(store: Store, config: MiroirConfig) -> Topology:
    """Seed the store from the config on first start; afterwards the store wins."""
    stored = await store.get_topology()
    if stored is None:
        await store.put_topology(0, to_document(topology_from_config(config)))
        stored = await store.get_topology()
        if stored is None:
            raise RuntimeError("the state store lost the topology it was just given")
    return from_document(*stored)


async def _components(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = SqliteStore(config.state_path)
    topology = await load_topology(store, config)
    metrics = app[METRICS]
    client = NodeClient.from_config(config, metrics=PrometheusNodeMetrics(metrics.registry))
    # Probes get their own small pool so they never queue behind a busy node's traffic.
    probe_client = NodeClient.from_config(config, connections_per_node=2)
    async with client, probe_client:
        cluster = Cluster(config, topology, client)
        prober = HealthProber(
            probe_client,
            cluster.all_nodes,
            config.health,
            on_change=lambda node_id, _old, new: metrics.node_healthy.labels(node_id).set(
                0 if new is HealthState.UNHEALTHY else 1
            ),
        )
        cluster.health = prober
        app[STORE] = store
        app[CLUSTER] = cluster
        app[CATALOG] = Catalog(store, cluster)
        app[KEYS] = KeyCache(cluster)
        registry = TaskRegistry(store, cluster)
        app[TASKS] = registry
        # The registry stops polling before the store it writes to closes.
        try:
            async with prober, registry:
                yield
        finally:
            await store.close()


def make_app(config: MiroirConfig) -> web.Application:
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[observe, authorize])
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[BODY_LIMIT] = config.max_body_bytes
    app.cleanup_ctx.append(_components)
    for module in (
        *(instance, admin, search, documents_read, documents, tasks),
        *(indexes, settings, keys, maintenance, webhooks),
    ):
        app.add_routes(module.routes)
    return app
