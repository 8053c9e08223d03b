"""Hedged reads: what a hedge waits for, and what it did.

A scattered read asks one replica per shard; when that replica is slow (a long GC, a noisy
neighbour, a disk stall) the whole search waits for it up to the node deadline. With hedging
on, a node call still unanswered after the hedge delay is asked again of other replicas of
the same shards (the same group first, then another active group); the first complete answer
wins and the other call is cancelled. The delay is either fixed or the node's own observed
p95 of completed read calls, floored by `min_delay_ms` (and equal to it until the node has
`MIN_SAMPLES` calls on record), so on a healthy fleet about one call in twenty is hedged.

Only completed calls are recorded: a call cancelled because its hedge won says nothing about
how long it would have taken.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Literal

from miroir_proxy.config import HedgingConfig

HedgeOutcome = Literal["hedge_won", "primary_won", "failed"]

WINDOW = 256  # completed calls per node the p95 is computed over
MIN_SAMPLES = 20
_RECOMPUTE_EVERY = 16


class _NodeWindow:
    __slots__ = ("p95_s", "samples", "since")

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=WINDOW)
        self.p95_s: float | None = None
        self.since = 0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.since += 1
        if len(self.samples) >= MIN_SAMPLES and (
            self.p95_s is None or self.since >= _RECOMPUTE_EVERY
        ):
            ordered = sorted(self.samples)
            self.p95_s = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
            self.since = 0


class Hedging:
    """One pod's hedging policy and its counts (`miroir_hedged_reads_total`)."""

    def __init__(self, config: HedgingConfig) -> None:
        self.config = config
        self._windows: dict[str, _NodeWindow] = {}
        # (node the hedge went around, outcome) -> calls
        self.outcomes: Counter[tuple[str, str]] = Counter()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def adaptive(self) -> bool:
        return self.config.delay_ms == "p95"

    def observe(self, node_id: str, seconds: float) -> None:
        window = self._windows.get(node_id)
        if window is None:
            window = self._windows[node_id] = _NodeWindow()
        window.add(seconds)

    def p95_s(self, node_id: str) -> float | None:
        window = self._windows.get(node_id)
        return None if window is None else window.p95_s

    def delay_s(self, node_id: str) -> float:
        """How long a call to `node_id` runs alone before it is hedged."""
        if not self.adaptive:
            return int(self.config.delay_ms) / 1000
        floor = self.config.min_delay_ms / 1000
        p95 = self.p95_s(node_id)
        return floor if p95 is None else max(floor, p95)

    def record(self, node_id: str, outcome: HedgeOutcome) -> None:
        self.outcomes[(node_id, outcome)] += 1
