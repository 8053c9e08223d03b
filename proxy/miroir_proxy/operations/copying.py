"""The copy primitive every data-moving operation uses, and its verification.

A shard is read from a source replica in pages of `POST /indexes/{uid}/documents/fetch`
with `filter: _miroir_shard = N`, written to the destination nodes as they are (their
`_miroir_shard` and `_miroir_updated_at` included), and a page counts only once every
destination's node task succeeded (a 202 is not a write). The cursor after each page is
checkpointed by the caller, so a copy resumes where it stopped, on another replica if the
source died (replicas may order documents differently; verification closes that gap).

A replica that missed acknowledged writes is never a source (`fresh_sources`): one whose
hints are not all replayed yet, or that overflowed its hints (anti-entropy's to repair).
Verification against it would delete from the destination the documents it lacks and put
back the ones deleted meanwhile.

Verification compares a shard's documents between a source and a destination by primary
key and content digest (Miroir's `_miroir_*` fields excluded) and repairs the destination:
- a document the destination lacks, or holds in another version, gets the source's version,
  unless the destination's version is newer (`_miroir_updated_at`): that is a client write
  the source has not applied yet, and a copy must never put an older version over it;
- a document only the destination holds is deleted, unless it was written after the pass
  started: a copy must never bring back a document deleted during it.
Passes repeat until one finds nothing to repair.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

import orjson
from xxhash import xxh3_64_intdigest

from miroir_proxy.core.topology import Node
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.dispatch.writes import SHARD_FIELD, UPDATED_FIELD
from miroir_proxy.nodes.client import NodeResponse
from miroir_proxy.nodes.errors import NodeError
from miroir_proxy.state.store import HintBacklog, Store

log = logging.getLogger(__name__)

RESERVED_PREFIX = "_miroir_"
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
# A node that finished a page waits for nothing but our next poll: keep it short.
_TASK_POLL_S = (0.005, 0.05)


class CopyFailed(Exception):
    """A node refused or failed a copy step; the chunk is retried from its cursor."""


class Abandoned(Exception):
    """The destination left the topology (a canceled operation): stop writing to it."""


Wanted = Callable[[], bool]


@dataclasses.dataclass(frozen=True, slots=True)
class ShardRef:
    index: str
    primary_key: str
    shard: int

    @property
    def filter(self) -> str:
        return f"{SHARD_FIELD} = {self.shard}"


@dataclasses.dataclass(frozen=True, slots=True)
class CopySettings:
    page_size: int
    docs_per_s: float  # 0: as fast as the nodes take them
    read_timeout_ms: int
    write_timeout_ms: int
    task_timeout_ms: int


def digest(document: dict[str, Any]) -> int:
    """The content of a document, Miroir's bookkeeping fields excluded."""
    content = {k: v for k, v in document.items() if not k.startswith(RESERVED_PREFIX)}
    return int(xxh3_64_intdigest(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)))


def stamp(document: dict[str, Any]) -> int:
    value = document.get(UPDATED_FIELD)
    return value if type(value) is int else 0


NodeRef = str | Node  # a node id of the topology, or a node it may not name (any more)


class ShardIO:
    """Node calls of the copy and verification, each under a deadline."""

    def __init__(self, cluster: Cluster, settings: CopySettings) -> None:
        self._cluster = cluster
        self.settings = settings
        self._embedders: dict[tuple[str, str], bool] = {}

    async def fetch_body(self, node: str, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """A `documents/fetch` body that also returns the documents' `_vectors` when the
        index has embedders: a copy without them would lose user-provided embeddings (and
        re-embed the others). Asked once per (node, index) until `forget_embedders`."""
        key = (node, index)
        if key not in self._embedders:
            response = await self._request(
                node,
                "GET",
                f"/indexes/{index}/settings/embedders",
                timeout_ms=self.settings.read_timeout_ms,
            )
            self._embedders[key] = response.status == 200 and bool(orjson.loads(response.body))
        return {**body, "retrieveVectors": True} if self._embedders[key] else body

    def forget_embedders(self) -> None:
        self._embedders.clear()

    async def _request(self, node: NodeRef, method: str, path: str, **kwargs: Any) -> NodeResponse:
        if isinstance(node, Node):
            return await self._cluster.nodes.request(node.url, method, path, **kwargs)
        return await self._cluster.call(node, method, path, **kwargs)

    async def page(self, node: str, ref: ShardRef, offset: int, limit: int) -> list[dict[str, Any]]:
        response = await self._request(
            node,
            "POST",
            f"/indexes/{ref.index}/documents/fetch",
            json_body=await self.fetch_body(
                node, ref.index, {"filter": ref.filter, "offset": offset, "limit": limit}
            ),
            timeout_ms=self.settings.read_timeout_ms,
        )
        if response.status == 404:
            return []  # the index is not there yet: nothing to read
        body = _answer(node, response.status, response.body)
        results = body.get("results")
        if not isinstance(results, list):
            raise CopyFailed(f"node {node} answered a page without results")
        return results

    async def documents(self, node: str, ref: ShardRef) -> dict[str, dict[str, Any]]:
        """Every document of the shard on `node`, by primary key text."""
        found: dict[str, dict[str, Any]] = {}
        size = self.settings.page_size
        offset = 0
        while True:
            page = await self.page(node, ref, offset, size)
            for document in page:
                found[str(document.get(ref.primary_key))] = document
            if len(page) < size:
                return found
            offset += len(page)

    async def write(self, nodes: Sequence[str], ref: ShardRef, documents: list[Any]) -> None:
        """Add `documents` on every node of `nodes` and wait until each node applied them."""
        await self.wait_all(await self.send(nodes, ref, documents))

    async def send(
        self, nodes: Sequence[str], ref: ShardRef, documents: list[Any]
    ) -> list[tuple[str, int]]:
        """Enqueue the addition of `documents` on every node of `nodes`: (node, task uid)s."""
        body = orjson.dumps(documents)
        params = {"primaryKey": ref.primary_key}
        path = f"/indexes/{ref.index}/documents"
        async with asyncio.TaskGroup() as group:
            sent = [group.create_task(self._post(node, path, body, params)) for node in nodes]
        return [(node, task.result()) for node, task in zip(nodes, sent, strict=True)]

    async def send_each(
        self, path: str, params: dict[str, str], bodies: Mapping[str, bytes]
    ) -> list[tuple[str, int]]:
        """Enqueue one JSON array of documents per node (`bodies`: node -> body)."""
        nodes = list(bodies)
        async with asyncio.TaskGroup() as group:
            sent = [group.create_task(self._post(n, path, bodies[n], params)) for n in nodes]
        return [(node, task.result()) for node, task in zip(nodes, sent, strict=True)]

    async def wait_all(self, tasks: Sequence[tuple[str, int]]) -> None:
        async with asyncio.TaskGroup() as group:
            for node, uid in tasks:
                group.create_task(self.wait_task(node, uid))

    async def delete(self, nodes: Sequence[str], ref: ShardRef, ids: list[Any]) -> None:
        body = orjson.dumps(ids)
        await self._each(
            nodes,
            lambda node: self._enqueue(node, f"/indexes/{ref.index}/documents/delete-batch", body),
        )

    async def change(self, node: NodeRef, method: str, path: str, body: Any = None) -> None:
        """One enqueued change on `node` (index creation, settings, deletion), waited for."""
        await self._enqueue(node, path, None if body is None else orjson.dumps(body), method=method)

    async def _each(
        self, nodes: Sequence[str], call: Callable[[str], Coroutine[Any, Any, None]]
    ) -> None:
        async with asyncio.TaskGroup() as group:
            for node in nodes:
                group.create_task(call(node))

    async def _enqueue(
        self,
        node: NodeRef,
        path: str,
        body: bytes | None,
        params: dict[str, str] | None = None,
        *,
        method: str = "POST",
    ) -> None:
        response = await self._request(
            node,
            method,
            path,
            params=params,
            body=body,
            content_type=None if body is None else "application/json",
            timeout_ms=self.settings.write_timeout_ms,
        )
        answer = _answer(node, response.status, response.body)
        await self.wait_task(node, int(answer["taskUid"]))

    async def _post(self, node: str, path: str, body: bytes, params: dict[str, str]) -> int:
        response = await self._request(
            node,
            "POST",
            path,
            params=params,
            body=body,
            content_type="application/json",
            timeout_ms=self.settings.write_timeout_ms,
        )
        return int(_answer(node, response.status, response.body)["taskUid"])

    async def task_status(self, node: NodeRef, uid: int) -> bool:
        """Whether node task `uid` succeeded (False while it runs); `CopyFailed` if it
        failed or was canceled."""
        response = await self._request(
            node, "GET", f"/tasks/{uid}", timeout_ms=self.settings.read_timeout_ms
        )
        task = _answer(node, response.status, response.body)
        status = task.get("status")
        if status in TERMINAL and status != "succeeded":
            raise CopyFailed(f"node {node} task {uid} {status}: {task.get('error')}")
        return status == "succeeded"

    async def wait_task(self, node: NodeRef, uid: int) -> None:
        """Return once node task `uid` succeeded; `CopyFailed` if it did not."""
        pause, cap = _TASK_POLL_S
        deadline = time.monotonic() + self.settings.task_timeout_ms / 1000
        while True:
            response = await self._request(
                node, "GET", f"/tasks/{uid}", timeout_ms=self.settings.read_timeout_ms
            )
            task = _answer(node, response.status, response.body)
            if task.get("status") in TERMINAL:
                if task["status"] != "succeeded":
                    raise CopyFailed(
                        f"node {node} task {uid} {task['status']}: {task.get('error')}"
                    )
                return
            if time.monotonic() > deadline:
                raise CopyFailed(f"node {node} task {uid} still {task.get('status')}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, cap)


class Throttle:
    """At most `per_s` documents a second on average (0: no limit)."""

    def __init__(self, per_s: float) -> None:
        self._per_s = per_s
        self._started = time.monotonic()
        self._sent = 0

    async def take(self, count: int) -> None:
        if self._per_s <= 0:
            return
        self._sent += count
        ahead = self._sent / self._per_s - (time.monotonic() - self._started)
        if ahead > 0:
            await asyncio.sleep(ahead)


Checkpoint = Callable[[dict[str, Any]], Awaitable[None]]
Sources = Callable[[], Awaitable[Sequence[str]]]


def fresh_sources(store: Store, candidates: Callable[[], Sequence[str]]) -> Sources:
    """The replicas to read a shard from, asked anew before each page or pass:
    `candidates()` in their order, without those that missed acknowledged writes."""

    async def sources() -> list[str]:
        return up_to_date(await store.hint_backlogs(), candidates())

    return sources


def up_to_date(backlogs: Mapping[str, HintBacklog], nodes: Iterable[str]) -> list[str]:
    """`nodes` in their order, without those whose backlog says they are behind."""
    return [n for n in nodes if n not in backlogs or not backlogs[n].behind]


async def copy_shard(
    io: ShardIO,
    ref: ShardRef,
    sources: Sources,
    destinations: Sequence[str],
    cursor: dict[str, Any],
    checkpoint: Checkpoint,
    wanted: Wanted,
) -> dict[str, Any]:
    """Copy the shard page by page from the first source that answers, from `cursor`
    (`{"offset", "copied"}`) on; returns the final cursor. `Abandoned` as soon as
    `wanted()` turns false."""

    async def send(page: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return await io.send(destinations, ref, page)

    return await copy_pages(io, ref, sources, send, cursor, checkpoint, wanted)


Send = Callable[[list[dict[str, Any]]], Awaitable[list[tuple[str, int]]]]


async def copy_pages(
    io: ShardIO,
    ref: ShardRef,
    sources: Sources,
    send: Send,
    cursor: dict[str, Any],
    checkpoint: Checkpoint,
    wanted: Wanted,
) -> dict[str, Any]:
    """The paged copy behind `copy_shard`: each page read from the first of `sources()`
    that answers and enqueued by `send` (the node tasks it started)."""
    offset, copied = int(cursor.get("offset", 0)), int(cursor.get("copied", 0))
    size = io.settings.page_size
    throttle = Throttle(io.settings.docs_per_s)
    # One page stays in flight: the next page is read and enqueued while the nodes index
    # the previous one (they apply their tasks in order), and the cursor moves past a page
    # only once every destination applied it.
    in_flight: tuple[list[tuple[str, int]], dict[str, Any]] | None = None
    while True:
        page = await read_page(io, await sources(), ref, offset, size)
        sent: list[tuple[str, int]] = []
        if page:
            await throttle.take(len(page))
            if not wanted():
                raise Abandoned(ref.index)
            sent = await send(page)
        if in_flight is not None:
            await io.wait_all(in_flight[0])
            await checkpoint(in_flight[1])
        offset += len(page)
        copied += len(page)
        cursor = {**cursor, "offset": offset, "copied": copied}
        if len(page) < size:
            await io.wait_all(sent)
            await checkpoint(cursor)
            return cursor
        in_flight = (sent, cursor)


async def read_page(
    io: ShardIO, sources: Sequence[str], ref: ShardRef, offset: int, limit: int
) -> list[dict[str, Any]]:
    """A page from the first source that answers (`CopyFailed` when none does)."""
    reasons = []
    for node in sources:
        try:
            return await io.page(node, ref, offset, limit)
        except (NodeError, CopyFailed) as e:
            reasons.append(f"{node}: {e}")
    raise _no_source(ref, reasons)


@dataclasses.dataclass(slots=True)
class Repair:
    copied: int = 0
    deleted: int = 0


async def verify_shard(
    io: ShardIO,
    ref: ShardRef,
    sources: Sources,
    destination: str,
    wanted: Wanted,
    *,
    max_passes: int,
) -> Repair:
    """Repair `destination`'s copy of the shard from a source until a pass finds nothing
    (see the module docstring); returns what was repaired in all."""
    total = Repair()
    for _ in range(max_passes):
        started_ms = time.time_ns() // 1_000_000
        source, held = await asyncio.gather(
            read_documents(io, await sources(), ref), io.documents(destination, ref)
        )
        repair = _compare(source, held, ref.primary_key, started_ms)
        if not wanted():
            raise Abandoned(ref.index)
        if repair.copied:
            await io.write([destination], ref, repair.copied)
        if repair.deleted:
            await io.delete([destination], ref, repair.deleted)
        total.copied += len(repair.copied)
        total.deleted += len(repair.deleted)
        if not repair.copied and not repair.deleted:
            return total
    raise CopyFailed(f"shard {ref.shard} of `{ref.index}` still differs after {max_passes} passes")


async def read_documents(
    io: ShardIO, sources: Sequence[str], ref: ShardRef
) -> dict[str, dict[str, Any]]:
    reasons = []
    for node in sources:
        try:
            return await io.documents(node, ref)
        except (NodeError, CopyFailed) as e:
            reasons.append(f"{node}: {e}")
    raise _no_source(ref, reasons)


@dataclasses.dataclass(slots=True)
class _Diff:
    copied: list[dict[str, Any]]
    deleted: list[Any]


def _compare(
    source: dict[str, dict[str, Any]],
    held: dict[str, dict[str, Any]],
    primary_key: str,
    started_ms: int,
) -> _Diff:
    diff = _Diff([], [])
    for key, document in source.items():
        mine = held.get(key)
        if mine is None or (stamp(mine) <= stamp(document) and digest(mine) != digest(document)):
            diff.copied.append(document)
    for key, mine in held.items():
        if key not in source and stamp(mine) < started_ms:
            diff.deleted.append(mine[primary_key])
    return diff


def _no_source(ref: ShardRef, reasons: list[str]) -> CopyFailed:
    why = "; ".join(reasons) or "no live replica is up to date"
    return CopyFailed(f"no source of shard {ref.shard} of `{ref.index}` answered: {why}")


def _answer(node: NodeRef, status: int, body: bytes) -> dict[str, Any]:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if status >= 300 or not isinstance(answer, dict):
        name = node.id if isinstance(node, Node) else node
        raise CopyFailed(f"node {name} answered {status}: {body[:200]!r}")
    return answer
