"""The operator's client of the proxies' admin API (`/_miroir/...`, ARCHITECTURE §6).

The operator never moves data: it reads the cluster's view and starts operations through
these calls. Answers are converted to frozen values here, once; failures are sorted by what
a handler does next: `AdminUnavailable` (no answer, a deadline, a 5xx: wait and retry with
`kopf.TemporaryError`) or `AdminRefused` (a 4xx with Meilisearch's error shape: the request
itself is wrong). Every call has a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

CALL_TIMEOUT_S = 10.0


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
