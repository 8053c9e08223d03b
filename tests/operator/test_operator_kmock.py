"""The real kopf operator, in-process, against kmock's Kubernetes emulator.

kmock stores objects but runs no controllers, so the tests play the StatefulSet and
Deployment controllers themselves: they patch `status.readyReplicas` the way Kubernetes
would once pods pass their readiness probes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import kopf
import pytest

from miroir_operator import crd
from miroir_operator.builders import naming
from miroir_operator.handlers import OperatorConfig
from miroir_operator.main import configure, register
from miroir_operator.spec import Cluster
from miroir_proxy.cli.processes import NodeBinary, NodeProcess

from .opkit import (
    ADMIN_KEY,
    CLOSED,
    VersionedEmulator,
    empty_node,
    example_cluster,
    proxy_for,
    until,
    until_async,
)

pytestmark = pytest.mark.kmock(cls=VersionedEmulator)

NS = "ns1"
CLUSTERS = f"{crd.GROUP}/{crd.VERSION}/{crd.PLURAL}"


def _prepare(server: kmock.KubernetesEmulator) -> None:
    server.resources.load_bundled()
    server.resources[CLUSTERS] = kmock.ResourceInfo(
        kind=crd.KIND,
        singular=crd.SINGULAR,
        namespaced=True,
        verbs={"list", "watch", "get", "patch", "create", "delete", "update"},
        subresources={"status"},
    )


@contextlib.asynccontextmanager
async def running_operator(
    server: kmock.KubernetesEmulator,
    admin_url: str = CLOSED,
    node_url: Callable[[Cluster, str, int], str] = naming.node_url,
) -> AsyncIterator[None]:
    registry = kopf.OperatorRegistry()
    config = OperatorConfig(
        proxy_image="miroir/miroir:test",
        wait_delay_s=0.2,
        resync_interval_s=0.3,
        admin_url=admin_url,
        node_url=node_url,
    )
    register(
        registry,
        config,
        login=lambda **_: kopf.ConnectionInfo(server=str(server.url)),
    )
    settings = kopf.OperatorSettings()
    configure(settings)
    settings.peering.standalone = True
    # kmock cannot list namespaces; the test watches one namespace by name anyway.
    settings.scanning.disabled = True
    settings.posting.enabled = True
    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(registry=registry, settings=settings, namespaces=[NS], stop_flag=stop)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)


def _cluster_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": spec,
    }


def _get(server: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any] | None:
    try:
        obj = server.objects[resource, NS, name]
    except KeyError:
        return None
    return None if obj.deleted else dict(obj.raw)


def _status(server: kmock.KubernetesEmulator, name: str) -> dict[str, Any]:
    obj = _get(server, CLUSTERS, name)
    return dict((obj or {}).get("status") or {})


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


async def _set_ready(server: kmock.KubernetesEmulator, path: str, ready: int) -> None:
    """What the workload controller does when pods pass readiness: a status PATCH."""
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            f"{server.url}{path}/status",
            json={"status": {"readyReplicas": ready}},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


@pytest.mark.timeout(60)
async def test_create_applies_children_and_reaches_ready(kmock: kmock.KubernetesEmulator) -> None:
    _prepare(kmock)
    spec = example_cluster("small")["spec"]
    kmock.objects[CLUSTERS, NS, "small"] = _cluster_body("small", spec)
    async with running_operator(kmock):
        await until(lambda: _get(kmock, "apps/v1/statefulsets", "small-g0"), "the StatefulSet")
        await until(
            lambda: _status(kmock, "small").get("phase") == "Provisioning", "phase Provisioning"
        )
        sts = _get(kmock, "apps/v1/statefulsets", "small-g0")
        assert sts["spec"]["replicas"] == 3
        assert sts["metadata"]["ownerReferences"][0]["uid"] == "uid-small"
        deployment = await until(
            lambda: _get(kmock, "apps/v1/deployments", "small-proxy"), "the proxy Deployment"
        )
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "miroir/miroir:test"
        )
        for resource, name in [
            ("v1/services", "small"),
            ("v1/services", "small-peers"),
            ("v1/services", "small-nodes"),
            ("v1/configmaps", "small-proxy"),
            ("v1/persistentvolumeclaims", "small-proxy-state"),
            ("policy/v1/poddisruptionbudgets", "small-g0"),
            ("policy/v1/poddisruptionbudgets", "small-proxy"),
        ]:
            assert _get(kmock, resource, name) is not None, (resource, name)
        waiting = _status(kmock, "small")
        assert _condition(waiting, "Ready")["status"] == "False"
        assert waiting["nodes"] == "0/3"

        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/small-g0", 3)
        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/deployments/small-proxy", 1)
        await until(lambda: _status(kmock, "small").get("phase") == "Ready", "phase Ready")
        ready = _status(kmock, "small")
        assert _condition(ready, "Ready")["status"] == "True"
        assert _condition(ready, "Degraded")["status"] == "False"
        assert _condition(ready, "Progressing")["status"] == "False"
        assert ready["nodes"] == "3/3"
        assert ready["observedGeneration"] == 1
        # No admin API answers here: the group's state is not invented.
        assert ready["groups"] == [{"id": "g0", "state": "unknown", "nodes": 3, "nodesReady": 3}]


@pytest.mark.timeout(60)
async def test_invalid_spec_is_permanent_and_degraded(kmock: kmock.KubernetesEmulator) -> None:
    _prepare(kmock)
    spec = {"proxy": {"replicas": 3}, "replicaGroups": {"count": 1, "nodesPerGroup": 1}}
    kmock.objects[CLUSTERS, NS, "bad"] = _cluster_body("bad", spec)
    async with running_operator(kmock):
        await until(lambda: _status(kmock, "bad").get("phase") == "Failed", "phase Failed")
        degraded = _condition(_status(kmock, "bad"), "Degraded")
        assert degraded["status"] == "True"
        assert degraded["reason"] == "InvalidSpec"
        assert "more than one proxy needs store.type redis" in degraded["message"]
        # Permanent: kopf stops retrying and marks this spec as handled.
        await until(
            lambda: (
                f"{crd.GROUP}/last-handled-configuration"
                in (
                    (_get(kmock, CLUSTERS, "bad") or {}).get("metadata", {}).get("annotations")
                    or {}
                )
            ),
            "kopf to finish handling the spec",
        )
    assert _get(kmock, "apps/v1/statefulsets", "bad-g0") is None


async def _provisioned(server: kmock.KubernetesEmulator, name: str) -> None:
    await until(lambda: _status(server, name).get("phase") == "Provisioning", "Provisioning")
    await until(lambda: _get(server, "apps/v1/deployments", f"{name}-proxy"), "the Deployment")


async def _mark_ready(server: kmock.KubernetesEmulator, name: str, nodes: int) -> None:
    await _set_ready(server, f"/apis/apps/v1/namespaces/{NS}/statefulsets/{name}-g0", nodes)
    await _set_ready(server, f"/apis/apps/v1/namespaces/{NS}/deployments/{name}-proxy", 1)


def _ready_workload(kind: str, name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
        "status": {"readyReplicas": replicas},
    }


@pytest.mark.timeout(60)
async def test_a_ready_cluster_that_loses_a_node_is_degraded(
    kmock: kmock.KubernetesEmulator,
) -> None:
    """The workloads are up before the operator starts (it adopts them by merge patch), so
    reconcile finishes in one pass and the timer follows readiness from then on."""
    _prepare(kmock)
    kmock.objects["apps/v1/statefulsets", NS, "small-g0"] = _ready_workload(
        "StatefulSet", "small-g0", 3
    )
    kmock.objects["apps/v1/deployments", NS, "small-proxy"] = _ready_workload(
        "Deployment", "small-proxy", 1
    )
    kmock.objects[CLUSTERS, NS, "small"] = _cluster_body("small", example_cluster("small")["spec"])
    async with running_operator(kmock):
        await until(lambda: _status(kmock, "small").get("phase") == "Ready", "phase Ready")
        sts = _get(kmock, "apps/v1/statefulsets", "small-g0")
        assert sts is not None and sts["spec"]["replicas"] == 3, "adopted and completed"
        ready_since = _condition(_status(kmock, "small"), "Ready")["lastTransitionTime"]

        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/small-g0", 2)
        await until(lambda: _status(kmock, "small").get("phase") == "Degraded", "Degraded")
        degraded = _status(kmock, "small")
        assert _condition(degraded, "Ready")["status"] == "False"
        assert _condition(degraded, "Degraded")["status"] == "True"
        assert "group g0: 2/3 nodes ready" in _condition(degraded, "Degraded")["message"]
        assert degraded["nodes"] == "2/3"

        assert _condition(degraded, "Degraded")["lastTransitionTime"] >= ready_since

        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/small-g0", 3)
        await until(lambda: _status(kmock, "small").get("phase") == "Ready", "Ready again")
        assert _condition(_status(kmock, "small"), "Degraded")["status"] == "False"


def _progress(server: kmock.KubernetesEmulator, name: str, key: str) -> dict[str, Any]:
    """kopf's record of a handler still running or retrying (gone once it succeeded)."""
    annotations = ((_get(server, CLUSTERS, name) or {}).get("metadata") or {}).get("annotations")
    record = (annotations or {}).get(key)
    return dict(json.loads(record)) if record else {}


@pytest.mark.timeout(120)
async def test_a_spec_change_being_rolled_out_is_provisioning_not_degraded(
    kmock: kmock.KubernetesEmulator,
) -> None:
    """While the update handler waits for a grown group's new pod, the status is its own:
    the resync timer, which would call the unready cluster Degraded, stays out (kopf keeps
    the update handler's progress under `reconcile.spec`, not `reconcile`)."""
    _prepare(kmock)
    kmock.objects["apps/v1/statefulsets", NS, "small-g0"] = _ready_workload(
        "StatefulSet", "small-g0", 3
    )
    kmock.objects["apps/v1/deployments", NS, "small-proxy"] = _ready_workload(
        "Deployment", "small-proxy", 1
    )
    kmock.objects[CLUSTERS, NS, "small"] = _cluster_body("small", example_cluster("small")["spec"])
    async with running_operator(kmock):
        await until(lambda: _status(kmock, "small").get("phase") == "Ready", "phase Ready")

        await _patch_spec(kmock, "small", 2, {"replicaGroups": {"nodesPerGroup": 4}})
        phases: set[str] = set()

        def retried_a_while() -> bool:
            phases.add(str(_status(kmock, "small").get("phase")))
            # Three retries, each a pass plus 0.2 s, span ticks of the 0.3 s timer.
            return _progress(kmock, "small", f"{crd.GROUP}/reconcile.spec").get("retries", 0) >= 3

        # A pass makes some twenty calls to kmock, which slows down a lot on a busy machine.
        await until(retried_a_while, "the update handler to retry", timeout_s=60)
        rolling = _status(kmock, "small")
        assert rolling["phase"] == "Provisioning", rolling
        assert rolling["observedGeneration"] == 2
        assert rolling["nodes"] == "3/4"
        assert "Degraded" not in phases
        assert _condition(rolling, "Degraded")["status"] == "False"

        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/small-g0", 4)
        await until(lambda: _status(kmock, "small").get("phase") == "Ready", "phase Ready")
        assert _status(kmock, "small")["nodes"] == "4/4"


@pytest.mark.timeout(60)
async def test_a_restarted_operator_picks_up_where_the_last_one_stopped(
    kmock: kmock.KubernetesEmulator,
) -> None:
    _prepare(kmock)
    kmock.objects[CLUSTERS, NS, "small"] = _cluster_body("small", example_cluster("small")["spec"])
    async with running_operator(kmock):
        await _provisioned(kmock, "small")
    # The pods became ready while no operator ran.
    await _mark_ready(kmock, "small", 3)
    async with running_operator(kmock):
        await until(lambda: _status(kmock, "small").get("phase") == "Ready", "phase Ready")
    sts = _get(kmock, "apps/v1/statefulsets", "small-g0")
    assert sts is not None and sts["status"]["readyReplicas"] == 3, "nothing was recreated"


@pytest.mark.timeout(60)
async def test_group_states_come_from_the_proxies_admin_api(
    kmock: kmock.KubernetesEmulator, tmp_path: Path, devnode: NodeProcess, master_key: str
) -> None:
    """The operator reads the admin key from the Secret the spec names and mirrors the
    proxies' topology into status.groups."""
    _prepare(kmock)
    spec = await _admin_secret(kmock)
    kmock.objects[CLUSTERS, NS, "one"] = _cluster_body("one", spec)
    async with (
        proxy_for(tmp_path, devnode.url, master_key) as admin_url,
        running_operator(kmock, admin_url),
    ):
        await _provisioned(kmock, "one")
        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/one-g0", 1)
        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/deployments/one-proxy", 1)
        await until(lambda: _status(kmock, "one").get("phase") == "Ready", "phase Ready")
        groups = _status(kmock, "one")["groups"]
        assert groups == [{"id": "g0", "state": "active", "nodes": 1, "nodesReady": 1}]


async def _patch_spec(
    server: kmock.KubernetesEmulator, name: str, generation: int, spec: dict[str, Any]
) -> None:
    """What `kubectl patch --type=merge` does to the MiroirCluster's spec; kmock does not
    count generations, so the test bumps it as the API server would (the resourceVersion
    comes from `VersionedEmulator`)."""
    metadata = {"generation": generation}
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            f"{server.url}/apis/{crd.GROUP}/{crd.VERSION}/namespaces/{NS}/{crd.PLURAL}/{name}",
            json={"metadata": metadata, "spec": spec},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def _admin(admin_url: str, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{admin_url}{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def _admin_groups(admin_url: str) -> list[dict[str, Any]]:
    return list((await _admin(admin_url, "/_miroir/groups"))["results"])


async def _admin_secret(server: kmock.KubernetesEmulator) -> dict[str, Any]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "keys", "namespace": NS},
        "data": {"admin": base64.b64encode(ADMIN_KEY.encode()).decode()},
    }
    server.objects["v1/secrets", NS, "keys"] = secret
    return {"secrets": {"adminKey": {"name": "keys", "key": "admin"}}}


@contextlib.asynccontextmanager
async def _ready_with_a_spare_pod(
    server: kmock.KubernetesEmulator,
    name: str,
    spare: tuple[str, int],
    paths: tuple[Path, NodeProcess, NodeBinary, str],
) -> AsyncIterator[tuple[str, NodeProcess]]:
    """A Ready one-node cluster `name` run by the operator, with a real proxy behind its
    admin API and an empty node that answers for pod `spare` (group, ordinal) once the
    spec asks for it: (the admin URL, that node)."""
    tmp_path, devnode, node_binary, master_key = paths
    _prepare(server)
    server.objects[CLUSTERS, NS, name] = _cluster_body(name, await _admin_secret(server))
    with empty_node(tmp_path / f"{spare[0]}-{spare[1]}", node_binary, master_key) as new_node:
        pods = {("g0", 0): devnode.url, spare: new_node.url}
        async with (
            proxy_for(tmp_path, devnode.url, master_key) as admin_url,
            running_operator(
                server, admin_url, node_url=lambda _c, group, ordinal: pods[group, ordinal]
            ),
        ):
            await _provisioned(server, name)
            await _mark_ready(server, name, 1)
            await until(lambda: _status(server, name).get("phase") == "Ready", "phase Ready")
            yield admin_url, new_node


@pytest.mark.timeout(300)
async def test_replica_groups_count_up_registers_a_group_and_down_removes_it(
    kmock: kmock.KubernetesEmulator,
    tmp_path: Path,
    devnode: NodeProcess,
    node_binary: NodeBinary,
    master_key: str,
) -> None:
    """replicaGroups.count 1 -> 2: the operator creates g1's StatefulSet, waits for its pods,
    registers g1-0 at the URL its pod answers at, and status follows the sync to active.
    2 -> 1: the proxies forget g1 first, then its StatefulSet goes."""
    paths = (tmp_path, devnode, node_binary, master_key)
    async with _ready_with_a_spare_pod(kmock, "two", ("g1", 0), paths) as (admin_url, new_node):
        await _patch_spec(kmock, "two", 2, {"replicaGroups": {"count": 2}})
        sts = await until(lambda: _get(kmock, "apps/v1/statefulsets", "two-g1"), "g1's StatefulSet")
        assert sts["spec"]["replicas"] == 1
        assert sts["metadata"]["ownerReferences"][0]["uid"] == "uid-two"
        await until(
            lambda: any(g["id"] == "g1" for g in _status(kmock, "two").get("groups", [])),
            "status to list g1",
        )
        g1 = next(g for g in _status(kmock, "two")["groups"] if g["id"] == "g1")
        assert g1["state"] == "unregistered" and g1["nodesReady"] == 0
        # Pods not ready: nothing is registered at the proxies yet.
        assert [g["id"] for g in await _admin_groups(admin_url)] == ["g0"]

        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/two-g1", 1)
        await until(
            lambda: _status(kmock, "two").get("groups", [{}])[-1].get("state") == "active",
            "g1 active in status",
            timeout_s=120,
        )
        await until(lambda: _status(kmock, "two").get("phase") == "Ready", "phase Ready")
        final = _status(kmock, "two")
        assert [(g["id"], g["state"]) for g in final["groups"]] == [
            ("g0", "active"),
            ("g1", "active"),
        ]
        assert final["nodes"] == "2/2"
        assert not final.get("operation"), "the finished operation left the status"
        registered = {g["id"]: g for g in await _admin_groups(admin_url)}
        assert registered["g1"]["state"] == "active"
        assert [(n["id"], n["url"]) for n in registered["g1"]["nodes"]] == [("g1-0", new_node.url)]
        assert registered["g1"]["operation"]["state"] == "succeeded"

        await _patch_spec(kmock, "two", 3, {"replicaGroups": {"count": 1}})
        await until(
            lambda: _get(kmock, "apps/v1/statefulsets", "two-g1") is None,
            "g1's StatefulSet to be deleted",
            timeout_s=120,
        )
        # Deleted only after the proxies stopped routing to g1 and forgot it.
        assert [g["id"] for g in await _admin_groups(admin_url)] == ["g0"]
        assert _get(kmock, "policy/v1/poddisruptionbudgets", "two-g1") is None
        assert _get(kmock, "apps/v1/statefulsets", "two-g0") is not None
        await until(
            lambda: [g["id"] for g in _status(kmock, "two").get("groups", [])] == ["g0"],
            "status to drop g1",
        )
        await until(lambda: _status(kmock, "two").get("phase") == "Ready", "phase Ready")
        assert _status(kmock, "two")["nodes"] == "1/1"


async def _add_documents(proxy_url: str, index: str, count: int) -> None:
    """`count` documents written through the proxy, waited for."""
    documents = [{"id": i, "title": f"document {i}"} for i in range(count)]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{proxy_url}/indexes/{index}/documents?primaryKey=id", json=documents
        ) as response:
            assert response.status == 202, await response.text()
            task = (await response.json())["taskUid"]

        async def finished() -> bool:
            async with session.get(f"{proxy_url}/tasks/{task}") as response:
                state = (await response.json()).get("status")
                assert state not in ("failed", "canceled"), await response.text()
                return state == "succeeded"

        await until_async(finished, f"task {task}")


def _group(server: kmock.KubernetesEmulator, name: str, group: str) -> dict[str, Any]:
    return next((g for g in _status(server, name).get("groups", []) if g["id"] == group), {})


@pytest.mark.timeout(400)
async def test_an_operator_restarted_mid_group_add_follows_the_same_operation(
    kmock: kmock.KubernetesEmulator, tmp_path: Path, node_binary: NodeBinary, master_key: str
) -> None:
    """replicaGroups.count 1 -> 2, and the operator stops while the proxies sync g1 (the
    copy is throttled, so the sync outlasts the restart; the test checks it did). The
    next operator finds g1 through the admin API and follows that operation to `active`:
    it never asks the proxies to add the group again."""
    _prepare(kmock)
    kmock.objects[CLUSTERS, NS, "three"] = _cluster_body("three", await _admin_secret(kmock))
    calls: list[str] = []
    throttled = {"copy_page_size": 1, "copy_docs_per_s": 1}
    with (
        empty_node(tmp_path / "g0-0", node_binary, master_key) as first,
        empty_node(tmp_path / "g1-0", node_binary, master_key) as second,
    ):
        pods = {("g0", 0): first.url, ("g1", 0): second.url}

        def node_url(_cluster: Cluster, group: str, ordinal: int) -> str:
            return pods[group, ordinal]

        async with proxy_for(tmp_path, first.url, master_key, throttled, calls) as admin_url:
            # A pod copies two shards at a time, each at one document a second: 24 documents
            # take at least 12 s, whatever their spread over the 4 shards.
            await _add_documents(admin_url, "books", 24)
            async with running_operator(kmock, admin_url, node_url=node_url):
                await _provisioned(kmock, "three")
                await _mark_ready(kmock, "three", 1)
                await until(lambda: _status(kmock, "three").get("phase") == "Ready", "Ready")
                await _patch_spec(kmock, "three", 2, {"replicaGroups": {"count": 2}})
                await until(lambda: _get(kmock, "apps/v1/statefulsets", "three-g1"), "g1's sts")
                await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/three-g1", 1)
                started = await until(
                    lambda: (_status(kmock, "three").get("operation") or {}).get("id"),
                    "the group-add operation in status",
                )
            # No operator runs; the proxies go on syncing.
            operation = await _admin(admin_url, f"/_miroir/operations/{started}")
            assert (operation["kind"], operation["state"]) == ("group-add", "running")
            assert _status(kmock, "three")["phase"] == "Scaling"
            asked = calls.count("POST /_miroir/groups")
            assert asked >= 1

            async with running_operator(kmock, admin_url, node_url=node_url):
                # The new operator mirrors the sync as it moves on, then its end.
                await until(
                    lambda: _group(kmock, "three", "g1").get("shardsSynced", 0) >= 1,
                    "a shard synced, in status",
                    timeout_s=120,
                )
                assert (_status(kmock, "three").get("operation") or {}).get("id") in (
                    started,
                    None,
                )
                # Deadlines for a busy machine, where the proxy and kmock slow down a lot.
                await until(
                    lambda: _group(kmock, "three", "g1").get("state") == "active",
                    "g1 active in status",
                    timeout_s=150,
                )
                await until(lambda: _status(kmock, "three").get("phase") == "Ready", "Ready")

            assert calls.count("POST /_miroir/groups") == asked, "the group was asked for again"
            adds = [
                (op["id"], op["state"])
                for op in (await _admin(admin_url, "/_miroir/operations"))["results"]
                if op["kind"] == "group-add"
            ]
            assert adds == [(started, "succeeded")]
            g1 = next(g for g in await _admin_groups(admin_url) if g["id"] == "g1")
            assert g1["shards"] == {"total": 4, "synced": 4}


async def _admin_nodes(admin_url: str) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in (await _admin(admin_url, "/_miroir/nodes"))["results"]}


@pytest.mark.timeout(300)
async def test_nodes_per_group_up_adds_a_node_and_down_drains_it_before_its_pod_goes(
    kmock: kmock.KubernetesEmulator,
    tmp_path: Path,
    devnode: NodeProcess,
    node_binary: NodeBinary,
    master_key: str,
) -> None:
    """nodesPerGroup 1 -> 2: the StatefulSet grows, and once the new pod is ready the
    operator adds g0-1 through the admin API, which moves its share onto it. 2 -> 1: the
    proxies drain g0-1 and forget it while its pod stays; only then does the StatefulSet
    shrink."""
    paths = (tmp_path, devnode, node_binary, master_key)
    async with _ready_with_a_spare_pod(kmock, "grow", ("g0", 1), paths) as (admin_url, _):
        await _add_documents(admin_url, "books", 300)

        await _patch_spec(kmock, "grow", 2, {"replicaGroups": {"nodesPerGroup": 2}})
        await until(
            lambda: (_get(kmock, "apps/v1/statefulsets", "grow-g0") or {})["spec"]["replicas"] == 2,
            "the StatefulSet to grow",
        )
        # The new pod is not ready: nothing is registered yet.
        assert list(await _admin_nodes(admin_url)) == ["g0-0"]
        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/grow-g0", 2)

        async def joined() -> bool:
            nodes = await _admin_nodes(admin_url)
            return "g0-1" in nodes and nodes["g0-1"]["shards"] > 0

        await until_async(joined, "g0-1 to serve its share", timeout_s=120)
        await until(lambda: _status(kmock, "grow").get("phase") == "Ready", "Ready", timeout_s=120)
        nodes = await _admin_nodes(admin_url)
        assert nodes["g0-1"]["shards"] + nodes["g0-0"]["shards"] == 4
        assert abs(nodes["g0-1"]["shards"] - nodes["g0-0"]["shards"]) <= 1

        await _patch_spec(kmock, "grow", 3, {"replicaGroups": {"nodesPerGroup": 1}})

        async def forgotten() -> bool:
            # The StatefulSet first, then the proxies: a pod gone while its node was
            # still registered shows as one replica here and g0-1 there.
            replicas = (_get(kmock, "apps/v1/statefulsets", "grow-g0") or {})["spec"]["replicas"]
            nodes = await _admin_nodes(admin_url)
            assert replicas == 2 or "g0-1" not in nodes, "g0-1's pod went before it was removed"
            return list(nodes) == ["g0-0"]

        await until_async(forgotten, "g0-1 drained and removed", timeout_s=120)
        await until(
            lambda: (_get(kmock, "apps/v1/statefulsets", "grow-g0") or {})["spec"]["replicas"] == 1,
            "the StatefulSet to shrink once g0-1 is gone",
        )
        # The drain moved every document back before the node was forgotten.
        held = await _admin(admin_url, "/indexes/books/stats")
        assert held["numberOfDocuments"] == 300
        await _set_ready(kmock, f"/apis/apps/v1/namespaces/{NS}/statefulsets/grow-g0", 1)
        await until(lambda: _status(kmock, "grow").get("phase") == "Ready", "Ready again")
        assert _status(kmock, "grow")["nodes"] == "1/1"
