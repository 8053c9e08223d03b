"""The proxy's aiohttp application: shared components under typed keys, created and closed
in one cleanup context, and the route tables of every Meilisearch resource."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from miroir_proxy.config import MiroirConfig
from miroir_proxy.coordination.runtime import Coordination
from miroir_proxy.core.topology import Topology, from_document, to_document
from miroir_proxy.dispatch.catalog import Catalog
from miroir_proxy.dispatch.cluster import Cluster, topology_from_config
from miroir_proxy.dispatch.coalescing import Coalescer
from miroir_proxy.dispatch.deletions import DeleteLog
from miroir_proxy.dispatch.handoff import Handoff
from miroir_proxy.dispatch.keyring import KeyCache
from miroir_proxy.dispatch.sessions import Sessions
from miroir_proxy.dispatch.tasks import TaskRegistry
from miroir_proxy.dispatch.topowatch import TopologyWatcher
from miroir_proxy.dispatch.writes import DocumentWriter
from miroir_proxy.nodes.fastclient import FastNodeClient
from miroir_proxy.nodes.metrics import PrometheusNodeMetrics
from miroir_proxy.nodes.probing import HealthProber, HealthState
from miroir_proxy.operations.antientropy import AntiEntropy, AntiEntropyOperation
from miroir_proxy.operations.dumpexport import DumpExportOperation
from miroir_proxy.operations.dumpimport import (
    ImportDumpOperation,
    Spool,
    import_handler,
    spool_directory,
)
from miroir_proxy.operations.engine import Operations
from miroir_proxy.operations.epochs import Epochs
from miroir_proxy.operations.expiry import TtlSweeper
from miroir_proxy.operations.groups import (
    SYNC_JOB,
    AddGroupOperation,
    RemoveGroupOperation,
    sync_handler,
)
from miroir_proxy.operations.handoff import HintReplayer
from miroir_proxy.operations.nodes import (
    MOVE_JOB,
    AddNodeOperation,
    DrainNodeOperation,
    RemoveNodeOperation,
    move_handler,
)
from miroir_proxy.operations.reshard import RESHARD_JOB, ReshardOperation, reshard_handler
from miroir_proxy.operations.settingsync import SettingsSync
from miroir_proxy.state.factory import open_store
from miroir_proxy.state.store import Store, StoreUnavailable

from .appkeys import (
    ANTI_ENTROPY,
    BODY_LIMIT,
    CATALOG,
    CLUSTER,
    COALESCER,
    CONFIG,
    COORDINATION,
    DELETE_LOG,
    DUMP_SPOOL,
    EPOCHS,
    HANDOFF,
    HINT_REPLAYER,
    KEYS,
    METRICS,
    OPERATIONS,
    SESSIONS,
    SETTINGS_SYNC,
    STORE,
    TASKS,
    TOPOLOGY,
    TTL_SWEEPER,
)
from .metrics import Metrics
from .middlewares import observe
from .plugins import install as install_plugins
from .routes import (
    admin,
    aliases,
    documents,
    documents_read,
    dumpexport,
    dumpimport,
    experimental,
    hints,
    indexes,
    instance,
    jobs,
    keys,
    maintenance,
    operations,
    reshards,
    search,
    settings,
    tasks,
    webhooks,
)

log = logging.getLogger(__name__)

# A pod may start before its store answers (Redis still starting, or slow under load): it
# waits this long, then exits with the store's error.
STORE_STARTUP_S = 60.0


async def load_topology(store: Store, config: MiroirConfig) -> Topology:
    """Seed the store from the config on first start; afterwards the store wins. Waits up
    to `STORE_STARTUP_S` for the store to answer."""
    deadline = time.monotonic() + STORE_STARTUP_S
    pause = 0.1
    while True:
        try:
            return await _load_topology(store, config)
        except StoreUnavailable as e:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("the state store does not answer yet (%s); retrying", e)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


async def _load_topology(store: Store, config: MiroirConfig) -> Topology:
    stored = await store.get_topology()
    if stored is None:
        await store.put_topology(0, to_document(topology_from_config(config)))
        stored = await store.get_topology()
        if stored is None:
            raise RuntimeError("the state store lost the topology it was just given")
    return from_document(*stored)


def pod_identity(config: MiroirConfig) -> str:
    return config.coordination.pod_id or f"{socket.gethostname()}-{os.getpid()}"


async def _components(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = open_store(config)
    topology = await load_topology(store, config)
    metrics = app[METRICS]
    client = FastNodeClient.from_config(config, metrics=PrometheusNodeMetrics(metrics.registry))
    # Probes get their own small pool so they never queue behind a busy node's traffic.
    probe_client = FastNodeClient.from_config(config, connections_per_node=2)
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
        metrics.count_group_reads(lambda: cluster.reads_by_group)
        metrics.count_hedges(lambda: cluster.hedging.outcomes)
        app[STORE] = store
        app[CLUSTER] = cluster
        app[CATALOG] = Catalog(store, cluster)
        app[KEYS] = KeyCache(cluster, config.master_key)
        registry = TaskRegistry(store, cluster)
        app[TASKS] = registry
        coordination, features = config.coordination, config.features
        watcher = TopologyWatcher(
            store,
            cluster,
            pod_identity(config),
            poll_ms=coordination.topology_poll_ms,
            ack_ttl_ms=coordination.peer_ttl_ms,
        )
        app[TOPOLOGY] = watcher
        epochs = app[EPOCHS] = Epochs(store, watcher, poll_ms=coordination.topology_poll_ms)
        app[SESSIONS] = Sessions(store, cluster, wait_ms=features.session_wait_ms)
        app[COALESCER] = Coalescer(features.coalesce_window_ms, features.coalesce_max_subscribers)
        pod = Coordination(store, coordination, pod_id=pod_identity(config))
        app[COORDINATION] = pod
        engine = app[OPERATIONS] = Operations(store, cluster, app[CATALOG], epochs, pod, config)
        engine.register(AddGroupOperation())
        engine.register(RemoveGroupOperation())
        engine.register(AddNodeOperation())
        engine.register(DrainNodeOperation())
        engine.register(RemoveNodeOperation())
        engine.register(ReshardOperation())
        engine.register(DumpExportOperation())
        pod.register(SYNC_JOB, sync_handler(store, cluster, config))
        pod.register(MOVE_JOB, move_handler(store, cluster, config))
        spool = app[DUMP_SPOOL] = Spool(spool_directory(config))
        engine.register(ImportDumpOperation(spool))
        pod.register(spool.job_kind, import_handler(store, cluster, config, spool))
        pod.register(RESHARD_JOB, reshard_handler(store, cluster, config))
        deletions = app[DELETE_LOG] = DeleteLog(store, config.anti_entropy.tombstone_window_ms)
        handoff = app[HANDOFF] = Handoff(store, cluster, config.handoff)
        replayer = app[HINT_REPLAYER] = HintReplayer(store, cluster, handoff, config, pod.lease)
        writer = DocumentWriter(
            cluster, app[CATALOG], registry, handoff=handoff, deletions=deletions
        )
        metrics.export_hints(lambda: handoff.backlogs, lambda: replayer.replayed)
        sweeper = TtlSweeper(cluster, app[CATALOG], writer, config.ttl, pod.owns)
        app[TTL_SWEEPER] = sweeper
        anti_entropy = app[ANTI_ENTROPY] = AntiEntropy(
            cluster,
            app[CATALOG],
            deletions,
            config.anti_entropy,
            config.operations,
            pod.owns,
            read_timeout_ms=config.timeouts.node_read_ms,
            write_timeout_ms=config.timeouts.node_write_ms,
        )
        engine.register(AntiEntropyOperation(anti_entropy))
        metrics.count_anti_entropy(lambda: dataclasses.asdict(anti_entropy.totals))
        syncer = SettingsSync(
            cluster, store, app[CATALOG], registry, config.settings_sync, pod.owns
        )
        app[SETTINGS_SYNC] = syncer
        metrics.queue_depth.set_function(lambda: pod.queue_depth)
        metrics.jobs_in_progress.set_function(lambda: pod.in_progress)
        # The registry stops polling before the store it writes to closes.
        try:
            async with (
                prober,
                registry,
                watcher,
                pod,
                engine,
                sweeper,
                anti_entropy,
                replayer,
                syncer,
            ):
                yield
        finally:
            await store.close()


def make_app(config: MiroirConfig, plugins: Sequence[str] = ()) -> web.Application:
    """The app of one pod; `plugins` name modules whose `setup(app)` extends it
    (`api/plugins.py`)."""
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[observe],
    )
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[BODY_LIMIT] = config.max_body_bytes
    app.cleanup_ctx.append(_components)
    for module in (
        *(instance, admin, search, documents_read, documents, tasks),
        *(indexes, settings, keys, maintenance, webhooks, jobs, operations, aliases, reshards),
        experimental,
        hints,
        dumpimport,
        dumpexport,
    ):
        app.add_routes(module.routes)
    install_plugins(app, plugins)
    return app
