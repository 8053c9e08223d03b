"""Health of every node, from a periodic `/health` probe and from the request path.

Two decisions a newcomer would otherwise get wrong:

- A node nobody has heard from yet is `unknown` and counts as healthy. Treating it as down
  would make every pod start (and every newly added node) look like an outage for a probe
  interval; a node that really is down is marked so after `unhealthy_after` failed probes
  or calls, which on a busy proxy takes milliseconds.
- Outcomes reported by the request path (`report_failure` / `report_success`) count exactly
  like probe results, on the same thresholds. A node whose search calls time out goes down
  without waiting for the next probe, yet one slow query alone does not evict it (unless
  `unhealthy_after` is 1). Recovery comes from probes, since an unhealthy node gets no
  traffic to report on.

The probe loop runs as one supervised task (`miroir_proxy.background`): if a round fails
unexpectedly (a bug, a topology callable raising) it is logged and the loop restarts after
one interval; `stop()` cancels it and waits for it to finish. Give the prober its own small
`NodeClient`: probes sharing the request pool would queue behind a busy node's traffic and
time out, and a node would be judged on our queue rather than on its health.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import NoReturn, Self

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.config import HealthConfig
from miroir_proxy.core.topology import Node
from miroir_proxy.nodes.client import NodeClient, excerpt
from miroir_proxy.nodes.errors import NodeUnavailable

logger = logging.getLogger(__name__)


class HealthState(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class NodeHealth:
    state: HealthState
    consecutive_failures: int
    consecutive_successes: int
    last_error: str | None

    @property
    def healthy(self) -> bool:
        return self.state is not HealthState.UNHEALTHY


# Called with (node_id, old_state, new_state) on every change, on the event loop: keep it quick.
HealthListener = Callable[[str, HealthState, HealthState], None]


class _Tracker:
    __slots__ = ("failures", "last_error", "state", "successes")

    def __init__(self) -> None:
        self.state = HealthState.UNKNOWN
        self.failures = 0
        self.successes = 0
        self.last_error: str | None = None


class HealthProber:
    def __init__(
        self,
        client: NodeClient,
        nodes: Callable[[], Iterable[Node]],
        config: HealthConfig,
        *,
        on_change: HealthListener | None = None,
    ) -> None:
        self._client = client
        self._nodes = nodes
        self._config = config
        self._on_change = on_change
        self._trackers: dict[str, _Tracker] = {}
        self._background = BackgroundTasks(logger)

    def is_healthy(self, node_id: str) -> bool:
        tracker = self._trackers.get(node_id)
        return tracker is None or tracker.state is not HealthState.UNHEALTHY

    def snapshot(self) -> dict[str, NodeHealth]:
        return {
            node_id: NodeHealth(t.state, t.failures, t.successes, t.last_error)
            for node_id, t in self._trackers.items()
        }

    def report_success(self, node_id: str) -> None:
        tracker = self._tracker(node_id)
        tracker.failures = 0
        tracker.successes += 1
        if tracker.state is HealthState.UNKNOWN or (
            tracker.state is HealthState.UNHEALTHY
            and tracker.successes >= self._config.healthy_after
        ):
            self._transition(node_id, tracker, HealthState.HEALTHY)

    def report_failure(self, node_id: str, reason: str = "request failed") -> None:
        """For `NodeUnavailable` and `is_node_failure` answers only; a 4xx is the request's."""
        tracker = self._tracker(node_id)
        tracker.successes = 0
        tracker.failures += 1
        tracker.last_error = reason
        if (
            tracker.state is not HealthState.UNHEALTHY
            and tracker.failures >= self._config.unhealthy_after
        ):
            self._transition(node_id, tracker, HealthState.UNHEALTHY)

    async def probe_once(self) -> None:
        """Probe every current node once, concurrently; forget nodes no longer listed."""
        nodes = list(self._nodes())
        current = {node.id for node in nodes}
        for gone in self._trackers.keys() - current:
            del self._trackers[gone]
        async with asyncio.TaskGroup() as group:
            for node in nodes:
                group.create_task(self._probe(node))

    def start(self) -> None:
        if self._background.running:
            raise RuntimeError("the health prober is already running")
        self._background.start(
            "health prober", self._run, restart_s=self._config.interval_ms / 1000
        )

    async def stop(self) -> None:
        await self._background.stop()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> NoReturn:
        loop = asyncio.get_running_loop()
        interval_s = self._config.interval_ms / 1000
        while True:
            # Rounds start on a fixed cadence, so slow probes do not stretch the interval.
            round_started = loop.time()
            await self.probe_once()
            await asyncio.sleep(max(0.0, round_started + interval_s - loop.time()))

    async def _probe(self, node: Node) -> None:
        try:
            response = await self._client.request(
                node.url, "GET", "/health", timeout_ms=self._config.timeout_ms
            )
        except NodeUnavailable as e:
            self.report_failure(node.id, e.reason)
            return
        if response.status == 200:
            self.report_success(node.id)
        else:
            self.report_failure(
                node.id, f"/health answered {response.status}: {excerpt(response.body)}"
            )

    def _tracker(self, node_id: str) -> _Tracker:
        tracker = self._trackers.get(node_id)
        if tracker is None:
            tracker = self._trackers[node_id] = _Tracker()
        return tracker

    def _transition(self, node_id: str, tracker: _Tracker, new: HealthState) -> None:
        old, tracker.state = tracker.state, new
        if new is HealthState.UNHEALTHY:
            logger.warning(
                "node %s is unhealthy after %d consecutive failures: %s",
                node_id, tracker.failures, tracker.last_error,
            )  # fmt: skip
        elif old is HealthState.UNHEALTHY:
            logger.info("node %s is healthy again", node_id)
        if self._on_change is not None:
            try:
                self._on_change(node_id, old, new)
            except Exception:
                logger.exception("health listener failed for node %s", node_id)
