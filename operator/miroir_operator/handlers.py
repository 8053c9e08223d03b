"""What the operator does on each MiroirCluster event; `main.py` wires these into kopf.

Handlers are thin and idempotent: build the desired children (pure builders), apply them,
read back what Kubernetes reports, write status. Waiting is `kopf.TemporaryError(delay=)`;
a spec that can never work is `kopf.PermanentError` plus a `Degraded` condition.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from . import adminapi, builders, crd, status
from .builders import naming
from .builders.naming import MEILI_PORT
from .kube import Kube, KubeError
from .spec import Cluster, parse_cluster

RECONCILE_ID = "reconcile"
# The update handler follows `spec` only; kopf suffixes its id with the field.
RECONCILE_FIELD = "spec"
WAIT_DELAY_S = 10.0
RESYNC_INTERVAL_S = 60.0


ADMIN_URL = "http://{service}.{namespace}.svc:" + str(MEILI_PORT)


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    proxy_image: str = builders.DEFAULT_PROXY_IMAGE
    wait_delay_s: float = WAIT_DELAY_S
    resync_interval_s: float = RESYNC_INTERVAL_S
    # Where a cluster's admin API answers: its client Service inside the cluster.
    admin_url: str = ADMIN_URL
    # The URL the proxies reach a node at (its pod's DNS name); tests point it at local nodes.
    node_url: Callable[[Cluster, str, int], str] = naming.node_url


@dataclass(frozen=True, slots=True)
class Clients:
    """What handlers talk to: the Kubernetes API and the clusters' admin APIs."""

    kube: Kube
    http: adminapi.Sessions


async def admin_client(
    clients: Clients, cluster: Cluster, config: OperatorConfig
) -> adminapi.AdminClient:
    """The admin API of `cluster`, with the admin key (or else the master key) its spec names."""
    secrets = cluster.spec.secrets
    ref = secrets.admin_key or secrets.master_key
    key = None
    if ref is not None:
        key = await clients.kube.secret_value(cluster.namespace, ref.name, ref.key)
        if key is None:
            raise KubeError(404, f"Secret {cluster.namespace}/{ref.name} has no key {ref.key!r}")
    url = config.admin_url.format(
        service=naming.client_service(cluster), namespace=cluster.namespace
    )
    return adminapi.AdminClient(clients.http.get(), url, key)


async def follow_groups(
    observed: status.Observed,
    body: kopf.Body,
    clients: Clients,
    cluster: Cluster,
    config: OperatorConfig,
    previous: Iterable[str] = (),
) -> status.Observed:
    """`observed` with each group's state and sync from the proxies' admin API, once a
    proxy is up. A group of the spec the proxies lack is registered once its nodes are
    ready; a group they know (or `previous`, the groups the last status listed) beyond the
    spec is removed through the API first, and only once they forgot it are its
    StatefulSet and PodDisruptionBudget deleted.

    The admin API and the status are the memory: a group the API knows is followed, never
    added again, so a restarted operator picks up an operation in flight. While the API
    cannot answer the states stay `unknown` and groups being removed stay `removing`."""
    wanted = {g.id for g in observed.groups}
    leftover = sorted(set(previous) - wanted)
    if observed.proxies_ready < 1:
        return _with_removing(observed, leftover)
    try:
        client = await admin_client(clients, cluster, config)
        known = {g.id: g for g in await client.groups()}
        missing = [g for g in observed.groups if g.id not in known and g.nodes_ready >= g.nodes]
        retiring = sorted((set(leftover) | set(known)) - wanted)
        changed = False
        if missing:
            changed = await _register(client, missing[0], body, cluster, config)
        elif any(r in known for r in retiring):
            changed = await _unregister(client, next(r for r in retiring if r in known), body)
        if changed:
            known = {g.id: g for g in await client.groups()}
        for group in retiring:
            if group not in known:
                await _delete_group(clients.kube, cluster, group, body)
        operation = await _running_operation(client)
    except (adminapi.AdminError, KubeError):
        return _with_removing(observed, leftover)
    groups = tuple(_with_sync(g, known.get(g.id)) for g in observed.groups)
    observed = dataclasses.replace(observed, groups=groups, operation=operation)
    return _with_removing(observed, [r for r in retiring if r in known])


def _ordinal(node_id: str, group: str) -> int | None:
    prefix = naming.node_id(group, 0)[:-1]
    tail = node_id[len(prefix) :]
    return int(tail) if node_id.startswith(prefix) and tail.isdigit() else None


async def _registered_nodes(
    clients: Clients, cluster: Cluster, config: OperatorConfig
) -> tuple[adminapi.NodeState, ...] | None:
    """The nodes the proxies route to, or None while the admin API cannot answer."""
    try:
        client = await admin_client(clients, cluster, config)
        return await client.nodes()
    except (adminapi.AdminError, KubeError):
        return None


async def _node_counts(
    clients: Clients, cluster: Cluster, registered: tuple[adminapi.NodeState, ...] | None
) -> dict[str, int]:
    """Pods each group's StatefulSet keeps: nodesPerGroup, or more while the proxies still
    have higher ordinals registered (they are drained and removed first). Without an answer
    from the admin API (`registered` None) a StatefulSet never shrinks."""
    wanted = cluster.spec.replica_groups.nodes_per_group
    counts: dict[str, int] = {}
    for index in range(cluster.spec.replica_groups.count):
        group = naming.group_id(index)
        if registered is None:
            sts = await clients.kube.get(
                "apps/v1",
                "StatefulSet",
                cluster.namespace,
                naming.group_statefulset(cluster, group),
            )
            current = ((sts or {}).get("spec") or {}).get("replicas")
            counts[group] = max(wanted, current if isinstance(current, int) else 0)
            continue
        ordinals = [_ordinal(n.id, group) for n in registered if n.group == group]
        highest = max((o for o in ordinals if o is not None), default=-1)
        counts[group] = max(wanted, highest + 1)
    return counts


async def follow_nodes(
    observed: status.Observed,
    body: kopf.Body,
    clients: Clients,
    cluster: Cluster,
    config: OperatorConfig,
    registered: tuple[adminapi.NodeState, ...] | None,
) -> status.Observed:
    """Bring each active group's `registered` nodes (this pass's answer of the admin API)
    to nodesPerGroup, one operation at a time: a node whose pod is ready and that the
    proxies lack is added; the highest ordinal beyond nodesPerGroup is drained, then
    removed (its pod goes after that, see `_node_counts`). What is left to do is reported
    in `nodes_pending`."""
    if registered is None or observed.proxies_ready < 1 or observed.operation is not None:
        return observed
    try:
        client = await admin_client(clients, cluster, config)
        pending: list[str] = []
        started = False
        for group in observed.groups:
            if group.state != "active":
                continue
            members = {n.id: n for n in registered if n.group == group.id}
            for ordinal in range(group.nodes):
                node = naming.node_id(group.id, ordinal)
                if node in members:
                    continue
                pending.append(f"group {group.id}: adding node {node}")
                if not started and group.nodes_ready > ordinal:
                    url = config.node_url(cluster, group.id, ordinal)
                    started = await _node_action(client.add_node(node, url, group.id), body, node)
            extra = sorted(
                (n for n in members.values() if (_ordinal(n.id, group.id) or 0) >= group.nodes),
                key=lambda n: _ordinal(n.id, group.id) or 0,
                reverse=True,
            )
            for node_state in extra:
                drained = node_state.draining and node_state.shards == 0
                verb = "removing" if drained else "draining"
                pending.append(f"group {group.id}: {verb} node {node_state.id}")
            if extra and not started:
                first = extra[0]
                action = (
                    client.remove_node(first.id)
                    if first.draining and first.shards == 0
                    else client.drain_node(first.id)
                )
                started = await _node_action(action, body, first.id)
    except (adminapi.AdminError, KubeError):
        return observed
    return dataclasses.replace(observed, nodes_pending=tuple(pending))


async def _node_action(call: Awaitable[str], body: kopf.Body, node: str) -> bool:
    """Start a node operation; False while another topology change runs."""
    try:
        operation = await call
    except adminapi.AdminRefused as exc:
        if exc.code != adminapi.IN_PROGRESS:
            kopf.warn(body, reason="NodeRefused", message=f"node {node}: {exc}")
        return False
    kopf.info(body, reason="NodeOperation", message=f"node {node}: operation {operation}")
    return True


def _with_removing(observed: status.Observed, removing: Iterable[str]) -> status.Observed:
    extra = tuple(status.GroupReadiness(g, 0, 0, state="removing") for g in removing)
    return dataclasses.replace(observed, groups=observed.groups + extra)


async def _register(
    client: adminapi.AdminClient,
    group: status.GroupReadiness,
    body: kopf.Body,
    cluster: Cluster,
    config: OperatorConfig,
) -> bool:
    """Ask the proxies to add `group` with its nodes named explicitly; False while another
    topology change runs or the proxies refuse the nodes (the next pass asks again)."""
    nodes = [
        (naming.node_id(group.id, ordinal), config.node_url(cluster, group.id, ordinal))
        for ordinal in range(group.nodes)
    ]
    try:
        operation = await client.add_group(group.id, nodes)
    except adminapi.AdminRefused as exc:
        if exc.code != adminapi.IN_PROGRESS:
            kopf.warn(body, reason="GroupRefused", message=f"group {group.id}: {exc}")
        return False
    kopf.info(body, reason="GroupRegistered", message=f"group {group.id}: operation {operation}")
    return True


async def _unregister(client: adminapi.AdminClient, group: str, body: kopf.Body) -> bool:
    """Ask the proxies to stop routing to `group` and forget it; False while another
    topology change (possibly this very removal) runs."""
    try:
        operation = await client.remove_group(group)
    except adminapi.AdminRefused as exc:
        if exc.code != adminapi.IN_PROGRESS:
            kopf.warn(body, reason="GroupRefused", message=f"removing group {group}: {exc}")
        return False
    kopf.info(body, reason="GroupRemoving", message=f"group {group}: operation {operation}")
    return True


async def _delete_group(kube: Kube, cluster: Cluster, group: str, body: kopf.Body) -> None:
    """The group's workload, once the proxies no longer route to it; its volumes follow the
    StatefulSet's PVC retention policy (the builders keep them)."""
    name = naming.group_statefulset(cluster, group)
    deleted = await kube.delete("apps/v1", "StatefulSet", cluster.namespace, name)
    await kube.delete("policy/v1", "PodDisruptionBudget", cluster.namespace, name)
    if deleted:
        kopf.info(body, reason="GroupRemoved", message=f"deleted StatefulSet {name}")


async def _running_operation(client: adminapi.AdminClient) -> status.OperationProgress | None:
    for op in await client.operations():
        if not op.finished:
            return status.OperationProgress(
                op.id, op.kind, op.state, op.phase, op.done, op.total, op.unit
            )
    return None


def _with_sync(
    group: status.GroupReadiness, sync: adminapi.GroupSync | None
) -> status.GroupReadiness:
    if sync is None:
        return dataclasses.replace(group, state="unregistered")
    return dataclasses.replace(
        group,
        state=sync.state,
        shards_total=sync.shards_total,
        shards_synced=sync.shards_synced,
    )


def progress_storage() -> kopf.AnnotationsProgressStorage:
    """Where kopf keeps a handler's progress while it runs or retries: annotations of our
    prefix, purged once the handling cycle succeeds."""
    return kopf.AnnotationsProgressStorage(prefix=crd.GROUP)


def diffbase_storage() -> kopf.AnnotationsDiffBaseStorage:
    """Where kopf keeps the last spec whose handling finished."""
    return kopf.AnnotationsDiffBaseStorage(prefix=crd.GROUP, key="last-handled-configuration")


# The annotations of a reconcile in flight: create and resume run as `reconcile`, the update
# handler as `reconcile/spec` (stored as `reconcile.spec`); kopf's own key rules name them.
RECONCILE_PROGRESS_KEYS = frozenset(
    key
    for handler_id in (RECONCILE_ID, f"{RECONCILE_ID}/{RECONCILE_FIELD}")
    for key in progress_storage().make_keys(handler_id)
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _generation(body: Mapping[str, Any]) -> int:
    generation = (body.get("metadata") or {}).get("generation")
    return generation if isinstance(generation, int) else 1


def _ready_count(obj: Mapping[str, Any] | None) -> int:
    if obj is None:
        return 0
    value = (obj.get("status") or {}).get("readyReplicas")
    return value if isinstance(value, int) else 0


async def observe(kube: Kube, cluster: Cluster) -> status.Observed:
    groups = []
    per_group = cluster.spec.replica_groups.nodes_per_group
    for index in range(cluster.spec.replica_groups.count):
        group = naming.group_id(index)
        sts = await kube.get(
            "apps/v1", "StatefulSet", cluster.namespace, naming.group_statefulset(cluster, group)
        )
        groups.append(status.GroupReadiness(group, per_group, _ready_count(sts)))
    deployment = await kube.get("apps/v1", "Deployment", cluster.namespace, naming.proxy(cluster))
    replicas = ((deployment or {}).get("spec") or {}).get("replicas")
    return status.Observed(
        groups=tuple(groups),
        proxies=replicas if isinstance(replicas, int) else cluster.spec.proxy.replicas,
        proxies_ready=_ready_count(deployment),
    )


async def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    clients: Clients,
    config: OperatorConfig,
    established: bool = False,
) -> None:
    """Create or update every child, then report readiness; serves create, resume, update
    and (`established`) the timer."""
    old_status = dict(body.get("status") or {})
    try:
        cluster = parse_cluster(body)
    except crd.InvalidSpec as exc:
        message = f"invalid spec: {exc}"
        patch.status.update(status.invalid(message, _generation(body), old_status, _now()))
        kopf.warn(body, reason="InvalidSpec", message=message)
        raise kopf.PermanentError(message) from exc
    try:
        registered = await _registered_nodes(clients, cluster, config)
        keep = await _node_counts(clients, cluster, registered)
        for obj in builders.desired_objects(cluster, config.proxy_image, keep):
            if await clients.kube.apply(obj):
                kopf.info(
                    body,
                    reason="Created",
                    message=f"created {obj['kind']} {obj['metadata']['name']}",
                )
        observed = await observe(clients.kube, cluster)
    except KubeError as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=config.wait_delay_s) from exc
    previous = [g.get("id") for g in old_status.get("groups") or () if isinstance(g, dict)]
    observed = await follow_groups(
        observed, body, clients, cluster, config, [g for g in previous if isinstance(g, str)]
    )
    observed = await follow_nodes(observed, body, clients, cluster, config, registered)
    new_status = status.reconciled(observed, cluster.generation, old_status, _now(), established)
    patch.status.update(new_status)
    if new_status["phase"] != old_status.get("phase"):
        kopf.info(body, reason=new_status["phase"], message=new_status["conditions"][0]["message"])
    if not observed.settled:
        raise kopf.TemporaryError(status.waiting_for(observed), delay=config.wait_delay_s)
    logger.info("cluster %s is ready", cluster.name)


async def resync(
    body: kopf.Body,
    patch: kopf.Patch,
    logger: kopf.Logger,
    clients: Clients,
    config: OperatorConfig,
) -> None:
    """The timer's backstop once reconcile has finished: re-apply drifted children and
    follow readiness (Ready <-> Degraded). Reconcile owns the status while kopf has not
    finished handling the current spec (the last handled one differs: a change has just
    arrived) or while it runs or retries (kopf keeps its progress in an annotation, for a
    resume too); a refused spec stays refused."""
    diffbase = diffbase_storage()
    handled = diffbase.fetch(body=body)
    if handled is None or handled.get("spec") != diffbase.build(body=body).get("spec"):
        return
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if RECONCILE_PROGRESS_KEYS & set(annotations):
        return
    old_status = body.get("status") or {}
    refused = old_status.get("phase") == "Failed"
    if refused and old_status.get("observedGeneration") == _generation(body):
        return
    try:
        await reconcile(body, patch, logger, clients, config, established=True)
    except kopf.TemporaryError:
        pass  # the status says what it waits for; the next tick looks again
