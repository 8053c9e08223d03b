"""Scatter one read over a covering set and gather one answer per shard.

Each node of the covering set gets its own request body (built by the caller from the
node's assignment, so it can carry the `_miroir_shard IN [...]` restriction). A node that
cannot be reached, times out or answers 5xx does not fail the read: its shards are
covered again, first by another replica of the same group, then by another active group,
excluding every node that already failed during this read. Only shards no remaining node
can serve are reported as degraded.

A 4xx answer is the request's fault, not the node's: every replica would say the same, so
the first one (in covering order) is raised as `NodeRefused`, to be passed through.

With hedging on (`hedging.py`), `gather` also covers a node that is merely slow: once its
call has run for the hedge delay, the same shards are asked of other replicas, and whichever
complete answer comes first is used; the other call is cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import Any, TypeVar

import orjson

from miroir_proxy.core.covering import NodeAssignment, covering_set
from miroir_proxy.dispatch.broadcast import NodeRefused
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.nodes.client import NodeResponse, QueryParams
from miroir_proxy.nodes.errors import NodeUnavailable

JSON = "application/json"

BodyFor = Callable[[NodeAssignment], bytes | None]
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Gathered:
    """The parsed answers of one scattered read, one per node call, in covering order."""

    answers: list[Any]
    assignments: list[NodeAssignment]  # the one behind each answer
    degraded: tuple[int, ...]
    fanout: int


@dataclasses.dataclass(slots=True)
class Round:
    """One parallel call per assignment: parsed answers, failed nodes, first refusal."""

    answers: list[tuple[NodeAssignment, Any]]
    failed: list[NodeAssignment]
    rejection: NodeResponse | None
    hedges: int = 0  # extra node calls hedging made


async def _call(
    cluster: Cluster,
    assignment: NodeAssignment,
    method: str,
    path: str,
    body: bytes | None,
    params: QueryParams | None,
    timeout_ms: int,
) -> NodeResponse | None:
    """The node's answer, or None when the node (not the request) failed."""
    try:
        response = await cluster.call(
            assignment.node_id,
            method,
            path,
            timeout_ms=timeout_ms,
            params=params,
            body=body,
            content_type=JSON if body is not None else None,
        )
    except NodeUnavailable:
        return None
    return None if response.is_node_failure else response


async def call_all(
    cluster: Cluster,
    assignments: Sequence[NodeAssignment],
    method: str,
    path: str,
    body_for: BodyFor,
    params: QueryParams | None,
    timeout_ms: int,
    hedge_shards: int | None = None,
) -> Round:
    """One call per assignment in parallel; with `hedge_shards` (the index's shard count)
    and hedging on, slow calls are hedged."""
    if not assignments:
        return Round([], [], None)
    if hedge_shards is not None and cluster.hedging.enabled:
        return await _call_all_hedged(
            cluster, assignments, method, path, body_for, params, timeout_ms, hedge_shards
        )
    # The last call runs in the caller's own task: a task per node call is a measurable
    # share of a search's CPU, and so was a TaskGroup around them (~4 us a search).
    *others, last = assignments
    bodies = [body_for(a) for a in assignments]
    tasks = [
        asyncio.create_task(_call(cluster, a, method, path, body, params, timeout_ms))
        for a, body in zip(others, bodies[:-1], strict=True)
    ]
    try:
        last_response = await _call(cluster, last, method, path, bodies[-1], params, timeout_ms)
        responses = [await task for task in tasks]
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    responses.append(last_response)
    return _judge(list(zip(assignments, responses, strict=True)))


def _judge(pairs: Sequence[tuple[NodeAssignment, NodeResponse | None]]) -> Round:
    outcome = Round([], [], None)
    for assignment, response in pairs:
        if response is None:
            outcome.failed.append(assignment)
        elif not response.ok:
            if outcome.rejection is None:
                outcome.rejection = response
        else:
            try:
                outcome.answers.append((assignment, orjson.loads(response.body)))
            except orjson.JSONDecodeError:
                # Not a Meilisearch answer (a misrouted URL, a proxy in between): another
                # replica is the only way to get this shard read.
                outcome.failed.append(assignment)
    return outcome


Pairs = list[tuple[NodeAssignment, NodeResponse | None]]


async def _call_all_hedged(
    cluster: Cluster,
    assignments: Sequence[NodeAssignment],
    method: str,
    path: str,
    body_for: BodyFor,
    params: QueryParams | None,
    timeout_ms: int,
    shards: int,
) -> Round:
    hedged = [0]

    async def one(assignment: NodeAssignment) -> Pairs:
        return await _hedged(
            cluster, assignment, (method, path, body_for, params, timeout_ms), shards, hedged
        )

    results = await _all([one(a) for a in assignments])
    outcome = _judge([pair for pairs in results for pair in pairs])
    outcome.hedges = hedged[0]
    return outcome


CallSpec = tuple[str, str, BodyFor, QueryParams | None, int]


async def _attempt(
    cluster: Cluster, assignments: Sequence[NodeAssignment], spec: CallSpec
) -> Pairs | None:
    """Every assignment's answer, or None when any node failed (the attempt is no answer)."""
    method, path, body_for, params, timeout_ms = spec
    hedging = cluster.hedging

    async def one(assignment: NodeAssignment) -> NodeResponse | None:
        started = time.perf_counter()
        response = await _call(
            cluster, assignment, method, path, body_for(assignment), params, timeout_ms
        )
        if response is not None and hedging.adaptive:
            hedging.observe(assignment.node_id, time.perf_counter() - started)
        return response

    responses = await _all([one(a) for a in assignments])
    if any(r is None for r in responses):
        return None
    return list(zip(assignments, responses, strict=True))


async def _all(calls: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Every call's result; if one raises (or the caller is cancelled), the rest are cancelled."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return [await task for task in tasks]
    except BaseException:
        await _cancel(tasks)
        raise


async def _cancel(tasks: Collection[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _hedged(
    cluster: Cluster, assignment: NodeAssignment, spec: CallSpec, shards: int, hedged: list[int]
) -> Pairs:
    """`assignment`'s answer: from its node, or from the replicas asked once it was slow."""
    hedging = cluster.hedging
    node_id = assignment.node_id
    primary = asyncio.ensure_future(_attempt(cluster, [assignment], spec))
    running: set[asyncio.Task[Pairs | None]] = {primary}
    try:
        done, _ = await asyncio.wait(running, timeout=hedging.delay_s(node_id))
        if done:
            return primary.result() or [(assignment, None)]
        others, uncovered = _cover(
            cluster, shards, assignment.shards, {node_id}, first_group=assignment.group_id
        )
        if uncovered or not others:
            return await primary or [(assignment, None)]
        hedged[0] += len(others)
        hedge = asyncio.ensure_future(_attempt(cluster, others, spec))
        running.add(hedge)
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                answer = task.result()
                if answer is not None:
                    hedging.record(node_id, "primary_won" if task is primary else "hedge_won")
                    return answer
        hedging.record(node_id, "failed")
        return [(assignment, None)]
    finally:
        await _cancel(running)


def _cover(
    cluster: Cluster,
    shards: int,
    wanted: Collection[int] | None,
    excluded: Collection[str],
    first_group: str | None = None,
) -> tuple[tuple[NodeAssignment, ...], tuple[int, ...]]:
    """A covering set that avoids `excluded` nodes, trying `first_group` first."""
    groups = sorted(cluster.topology.search_groups(), key=lambda g: g.id != first_group)
    covering = covering_set(
        [(g.id, cluster.placement(g, shards)) for g in groups],
        lambda node_id: node_id not in excluded and cluster.is_healthy(node_id),
        shards=wanted,
        behind=cluster.behind,
    )
    return covering.assignments, covering.uncovered


def _one_per_shard(assignments: Sequence[NodeAssignment]) -> list[NodeAssignment]:
    return [
        NodeAssignment(a.node_id, a.group_id, (shard,), a.restrict or len(a.shards) > 1)
        for a in assignments
        for shard in a.shards
    ]


async def gather(
    cluster: Cluster,
    *,
    shards: int,
    method: str,
    path: str,
    body_for: BodyFor,
    only: Collection[int] | None = None,
    params: QueryParams | None = None,
    timeout_ms: int | None = None,
    excluded: set[str] | None = None,
    first_group: str | None = None,
    per_shard: bool = False,
    pinned: bool = False,
) -> Gathered:
    """Read every shard of an index with `shards` shards (or only the `only` ones) once.

    Nodes in `excluded` are avoided, and every node that fails is added to it. With
    `first_group`, that group serves every shard it can (a read-your-writes session).
    With `per_shard`, each node gets one call per shard it serves; `pinned` reads the same
    replicas every time while health holds (`Cluster.covering`), never hedged. Raises
    `NodeRefused` with the first 4xx answer.
    """
    timeout = cluster.config.timeouts.node_read_ms if timeout_ms is None else timeout_ms
    wanted = sorted(only) if only is not None else None
    failed_nodes = set() if excluded is None else excluded
    pending: Sequence[NodeAssignment]
    if failed_nodes or first_group is not None:
        pending, uncovered = _cover(cluster, shards, wanted, failed_nodes, first_group)
    else:
        covering = cluster.covering(shards, wanted, pinned=pinned)
        pending, uncovered = covering.assignments, covering.uncovered
    degraded = list(uncovered)
    if per_shard:
        pending = _one_per_shard(pending)
    answers: list[Any] = []
    served: list[NodeAssignment] = []
    fanout = 0
    while pending:
        fanout += len(pending)
        outcome = await call_all(
            cluster,
            pending,
            method,
            path,
            body_for,
            params,
            timeout,
            hedge_shards=None if pinned else shards,  # a hedge would answer from elsewhere
        )
        fanout += outcome.hedges
        if outcome.rejection is not None:
            raise NodeRefused(outcome.rejection)
        for assignment, answer in outcome.answers:
            served.append(assignment)
            answers.append(answer)
        if not outcome.failed:
            break
        failed_nodes.update(a.node_id for a in outcome.failed)
        lost = [shard for assignment in outcome.failed for shard in assignment.shards]
        pending, uncovered = _cover(
            cluster, shards, lost, failed_nodes, first_group=outcome.failed[0].group_id
        )
        degraded.extend(uncovered)
        if per_shard:
            pending = _one_per_shard(pending)
    return Gathered(answers, served, tuple(sorted(degraded)), fanout)
