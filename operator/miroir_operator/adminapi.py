"""The operator's client of the proxies' admin API (`/_miroir/...`, ARCHITECTURE §6).

The operator never moves data: it reads the cluster's view and starts operations through
these calls. Answers are converted to frozen values here, once; failures are sorted by what
a handler does next: `AdminUnavailable` (no answer, a deadline, a 5xx: wait and retry with
`kopf.TemporaryError`) or `AdminRefused` (a 4xx with Meilisearch's error shape: the request
itself is wrong). Every call has a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

CALL_TIMEOUT_S = 10.0
IN_PROGRESS = "miroir_operation_in_progress"


class AdminError(Exception):
    pass


class AdminUnavailable(AdminError):
    """No usable answer (unreachable, timed out, 5xx): retry later."""


class AdminRefused(AdminError):
    """The proxy refused the request (4xx); `code` is Meilisearch-style (`invalid_api_key`)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class NodeView:
    id: str
    url: str
    health: str


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node as `GET /_miroir/nodes` shows it: its group, whether it drains, and how many
    shards (of indexes with the default shard count) it serves."""

    id: str
    group: str
    draining: bool
    shards: int


@dataclass(frozen=True, slots=True)
class GroupView:
    id: str
    state: str
    nodes: tuple[NodeView, ...]


@dataclass(frozen=True, slots=True)
class TopologyView:
    epoch: int
    shards: int
    replication_factor: int
    groups: tuple[GroupView, ...]


@dataclass(frozen=True, slots=True)
class OperationView:
    id: str
    kind: str
    state: str
    phase: str
    done: int = 0
    total: int = 0
    unit: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "canceled")


@dataclass(frozen=True, slots=True)
class GroupSync:
    """One group as `GET /_miroir/groups` shows it: state and, once an add ran, its sync."""

    id: str
    state: str
    shards_total: int = 0
    shards_synced: int = 0
    operation: str | None = None


def _operation(document: Any) -> OperationView:
    try:
        progress = document.get("progress") or {}
        return OperationView(
            id=str(document["id"]),
            kind=str(document["kind"]),
            state=str(document["state"]),
            phase=str(document.get("phase") or ""),
            done=int(progress.get("done", 0)),
            total=int(progress.get("total", 0)),
            unit=str(progress.get("unit", "")),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise AdminUnavailable(f"unexpected operation document: {exc!r}") from exc


def _group_sync(document: Any) -> GroupSync:
    try:
        shards = document.get("shards") or {}
        operation = document.get("operation") or {}
        return GroupSync(
            id=str(document["id"]),
            state=str(document["state"]),
            shards_total=int(shards.get("total", 0)),
            shards_synced=int(shards.get("synced", 0)),
            operation=str(operation["id"]) if "id" in operation else None,
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise AdminUnavailable(f"unexpected group document: {exc!r}") from exc


def _topology(document: Mapping[str, Any]) -> TopologyView:
    try:
        return TopologyView(
            epoch=int(document["epoch"]),
            shards=int(document["shards"]),
            replication_factor=int(document["replicationFactor"]),
            groups=tuple(
                GroupView(
                    id=str(group["id"]),
                    state=str(group["state"]),
                    nodes=tuple(
                        NodeView(str(n["id"]), str(n["url"]), str(n.get("health", "unknown")))
                        for n in group["nodes"]
                    ),
                )
                for group in document["groups"]
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AdminUnavailable(f"unexpected topology document: {exc!r}") from exc


class AdminClient:
    """One proxy Service's admin API. The session is the caller's (one per operator)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        admin_key: str | None,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _call(
        self, method: str, path: str, body: Any = None, accept: frozenset[int] = frozenset()
    ) -> tuple[int, Any]:
        """(status, decoded body) of a 2xx answer or of one whose status is in `accept`."""
        try:
            async with self._session.request(
                method,
                self._base + path,
                json=body,
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                text = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise AdminUnavailable(f"{method} {path}: {exc!r}") from exc
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = None
        if status in accept or status < 400:
            return status, payload
        if status >= 500:
            raise AdminUnavailable(f"{method} {path}: {status} {text[:200]}")
        error = payload if isinstance(payload, dict) else {}
        raise AdminRefused(
            status, str(error.get("code", "unknown")), str(error.get("message", text[:200]))
        )

    async def topology(self) -> TopologyView:
        _, payload = await self._call("GET", "/_miroir/topology")
        if not isinstance(payload, dict):
            raise AdminUnavailable("GET /_miroir/topology: not a JSON object")
        return _topology(payload)

    async def groups(self) -> tuple[GroupSync, ...]:
        _, payload = await self._call("GET", "/_miroir/groups")
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise AdminUnavailable("GET /_miroir/groups: no `results` array")
        return tuple(_group_sync(group) for group in results)

    async def add_group(self, group: str, nodes: Sequence[tuple[str, str]]) -> str:
        """Start adding `group` with its `(node id, url)` pairs; the operation's id.
        A 409 `miroir_operation_in_progress` is `AdminRefused`: another change runs."""
        body = {"id": group, "nodes": [{"id": node, "url": url} for node, url in nodes]}
        _, payload = await self._call("POST", "/_miroir/groups", body)
        if not isinstance(payload, dict) or "operation" not in payload:
            raise AdminUnavailable("POST /_miroir/groups: no operation in the answer")
        return str(payload["operation"])

    async def remove_group(self, group: str) -> str:
        """Start removing `group` (stop routing to it, then forget it); the operation's id."""
        _, payload = await self._call("DELETE", f"/_miroir/groups/{group}")
        if not isinstance(payload, dict) or "operation" not in payload:
            raise AdminUnavailable(f"DELETE /_miroir/groups/{group}: no operation in the answer")
        return str(payload["operation"])

    async def nodes(self) -> tuple[NodeState, ...]:
        _, payload = await self._call("GET", "/_miroir/nodes")
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise AdminUnavailable("GET /_miroir/nodes: no `results` array")
        try:
            return tuple(
                NodeState(str(n["id"]), str(n["group"]), n["draining"] is True, int(n["shards"]))
                for n in results
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AdminUnavailable(f"unexpected node document: {exc!r}") from exc

    async def add_node(self, node: str, url: str, group: str) -> str:
        """Start adding `node` to `group` (its replicas then move onto it)."""
        body = {"id": node, "url": url, "group": group}
        return await self._started("POST", "/_miroir/nodes", body)

    async def drain_node(self, node: str) -> str:
        """Start moving every replica off `node`."""
        return await self._started("POST", f"/_miroir/nodes/{node}/drain")

    async def remove_node(self, node: str) -> str:
        """Start forgetting a drained `node`."""
        return await self._started("DELETE", f"/_miroir/nodes/{node}")

    async def _started(self, method: str, path: str, body: Any = None) -> str:
        _, payload = await self._call(method, path, body)
        if not isinstance(payload, dict) or "operation" not in payload:
            raise AdminUnavailable(f"{method} {path}: no operation in the answer")
        return str(payload["operation"])

    async def operations(self) -> tuple[OperationView, ...]:
        _, payload = await self._call("GET", "/_miroir/operations")
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise AdminUnavailable("GET /_miroir/operations: no `results` array")
        return tuple(_operation(op) for op in results)

    async def operation(self, operation_id: str) -> OperationView:
        _, payload = await self._call("GET", f"/_miroir/operations/{operation_id}")
        return _operation(payload)

    async def ready(self) -> bool:
        """True once every shard has a live replica in some active group."""
        status, _ = await self._call("GET", "/_miroir/ready", accept=frozenset({503}))
        return status == 200


class Sessions:
    """The operator's one HTTP session for every cluster's admin API, opened on first use."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
