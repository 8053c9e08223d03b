"""Broadcasts: one request to every node of every group (index and settings changes, keys).

`broadcast` sends to every node at once and reports each node's outcome; the caller
decides what a refusal means (index creation rolls back, deletion does not, settings are
verified and rolled back by `operations.settingsync`).

A node's enqueue answer (`202 {"taskUid": n}`) becomes a `NodeTaskRef` for the task
registry; a node that cannot be reached becomes a ref with `uid = None` and status
`failed`, so a Miroir task never waits on a task that was never enqueued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.nodes.client import NodeResponse, QueryParams
from miroir_proxy.nodes.errors import NodeError, NodeUnavailable
from miroir_proxy.state.store import NodeTaskRef

from .cluster import Cluster

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    node: str
    group: str


@dataclass(frozen=True, slots=True)
class NodeOutcome:
    """What one node answered, or why it did not answer."""

    target: Target
    response: NodeResponse | None
    failure: str | None = None

    @property
    def accepted(self) -> bool:
        return self.response is not None and self.response.ok

    def task_ref(self) -> NodeTaskRef:
        uid: int | None = None
        if self.accepted and self.response is not None:
            body = self.response.json()
            if isinstance(body, dict) and isinstance(body.get("taskUid"), int):
                uid = body["taskUid"]
        error: dict[str, Any] | None = None
        if uid is not None:
            status = "enqueued"
        else:
            status = "failed"
            if self.response is not None and not self.response.is_node_failure:
                error = _error_body(self.response)
            if error is None:
                error = unreachable_error(self.target.node, self.failure).to_dict()
        return NodeTaskRef(
            node=self.target.node,
            group=self.target.group,
            shards=[],
            uid=uid,
            status=status,
            error=error,
        )


def _error_body(response: NodeResponse) -> dict[str, Any] | None:
    try:
        body = response.json()
    except NodeError:
        return None
    return body if isinstance(body, dict) and "code" in body else None


class NodeRefused(Exception):
    """A node refused a request a single Meilisearch would have refused the same way: the
    node's own error answer goes back to the client unchanged."""

    def __init__(self, response: NodeResponse) -> None:
        super().__init__(f"{response.node_url} answered {response.status}")
        self.response = response


def unreachable_error(node: str, reason: str | None) -> MiroirError:
    return MiroirError(
        "miroir_node_unavailable", f"Node `{node}` did not answer: {reason or 'no answer'}."
    )


def targets(cluster: Cluster) -> list[Target]:
    """Every node of every group, in topology order (groups that are syncing included)."""
    return [Target(node.id, group.id) for group in cluster.topology.groups for node in group.nodes]


async def call_one(
    cluster: Cluster,
    target: Target,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    params: QueryParams | None = None,
    timeout_ms: int | None = None,
) -> NodeOutcome:
    timeout = timeout_ms or cluster.config.timeouts.node_write_ms
    try:
        response = await cluster.call(
            target.node, method, path, json_body=json_body, params=params, timeout_ms=timeout
        )
    except NodeError as e:
        return NodeOutcome(target, None, e.reason)
    if response.is_node_failure:
        return NodeOutcome(target, response, f"HTTP {response.status}")
    return NodeOutcome(target, response)


async def broadcast(
    cluster: Cluster,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    params: QueryParams | None = None,
    only: Sequence[Target] | None = None,
) -> list[NodeOutcome]:
    """Send the same request to every node (or `only`) in parallel; outcomes in target order."""
    chosen = targets(cluster) if only is None else list(only)
    async with asyncio.TaskGroup() as group:
        calls = [
            group.create_task(
                call_one(cluster, t, method, path, json_body=json_body, params=params)
            )
            for t in chosen
        ]
    return [c.result() for c in calls]


def first_refusal(outcomes: Sequence[NodeOutcome]) -> NodeOutcome | None:
    return next((o for o in outcomes if not o.accepted), None)


def accepted_answer(outcomes: Sequence[NodeOutcome]) -> NodeResponse:
    """The first accepting node's answer; the first refusal is raised when none accepted."""
    for outcome in outcomes:
        if outcome.accepted and outcome.response is not None:
            return outcome.response
    refusal = first_refusal(outcomes)
    if refusal is None:
        raise unreachable_error("*", "the topology has no node")
    raise_refusal(refusal)


def task_refs(outcomes: Sequence[NodeOutcome]) -> list[NodeTaskRef]:
    """The node tasks of a broadcast that at least one node accepted; when no node did,
    the refusal is the answer (a request every node rejects is the client's error)."""
    if not any(o.accepted for o in outcomes):
        refusal = first_refusal(outcomes)
        if refusal is not None:
            raise_refusal(refusal)
    return [o.task_ref() for o in outcomes]


def mark_held_shards(cluster: Cluster, refs: list[NodeTaskRef], shards: int) -> None:
    """Name on each node task the shards its node holds for an index of `shards` shards, so
    that counts the nodes report for the whole index (an index deletion's
    `deletedDocuments`) are divided by the copies each shard has in a group."""
    topology = cluster.topology
    for ref in refs:
        if not topology.has_group(ref["group"]):
            continue
        placement = cluster.placement(topology.group(ref["group"]), shards)
        ref["shards"] = sorted(placement.node_shards.get(ref["node"], ()))


def raise_refusal(outcome: NodeOutcome) -> NoReturn:
    """Turn a refusing outcome into the error the client sees: a node's 4xx unchanged,
    anything else as Miroir's node-unavailable error."""
    response = outcome.response
    if response is not None and 400 <= response.status < 500 and not response.is_node_failure:
        raise NodeRefused(response)
    raise unreachable_error(outcome.target.node, outcome.failure)


def not_serving(cluster: Cluster, outcome: NodeOutcome) -> bool:
    """The node is unreachable or failing and its group does not serve searches yet."""
    response = outcome.response
    if response is not None and not response.is_node_failure:
        return False  # a real refusal: every node would give it
    topology = cluster.topology
    group = outcome.target.group
    return topology.has_group(group) and not topology.group(group).serves_searches


async def read_any(
    cluster: Cluster,
    method: str,
    path: str,
    *,
    params: QueryParams | None = None,
    json_body: Any = None,
) -> NodeResponse:
    """The answer of the first live node, in topology order (active groups first), that
    gives one. The order is fixed so repeated reads agree: nodes differ in what they
    create themselves (default API keys, update dates)."""
    timeout = cluster.config.timeouts.node_read_ms
    last: str | None = None
    groups = sorted(cluster.topology.groups, key=lambda g: not g.serves_searches)
    for group in groups:
        for node in group.nodes:
            if not cluster.is_healthy(node.id):
                continue
            try:
                response = await cluster.call(
                    node.id, method, path, params=params, json_body=json_body, timeout_ms=timeout
                )
            except NodeUnavailable as e:
                last = e.reason
                continue
            if response.is_node_failure:
                last = f"HTTP {response.status}"
                continue
            return response
    raise MiroirError(
        "miroir_node_unavailable", f"No node answered `{method} {path}`: {last or 'none live'}."
    )
