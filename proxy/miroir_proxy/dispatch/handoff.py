"""Hinted handoff on the write path: which nodes a write skips, and storing what they missed.

A write is never sent to a node the health prober already knows is down; with handoff on
it is not sent either to a node whose earlier hints are not replayed yet ("catching up"),
so a node applies its writes in the order they were acknowledged: first every hint, oldest
first, then new writes. Their node batches become hints instead (`Store.put_hint`), stored
before the client is answered; `core.quorum.judge_write` decides whether the write stands.

Which nodes are catching up comes from the store (`note_backlogs`, called by the replayer's
round on every pod) plus the hints this pod stored since: another pod's first hint for a
node reaches this pod's view within one replay interval (README "Writes with a node down"
says what that window means). Searches leave those nodes, and the ones past their hint
bound, to last (`Cluster.behind`): they lack acknowledged writes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Mapping

from miroir_proxy.config import HandoffConfig
from miroir_proxy.state.store import Hint, HintBacklog, Store, StoreUnavailable

from .cluster import Cluster

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    """What became of a write's missed node batches: `hinted` nodes have theirs stored as
    hints; `overflowed` nodes are past their bound (left to anti-entropy); the others could
    not be recorded (the store did not answer)."""

    hinted: frozenset[str] = frozenset()
    overflowed: frozenset[str] = frozenset()

    @property
    def recorded(self) -> frozenset[str]:
        return self.hinted | self.overflowed


class Handoff:
    def __init__(self, store: Store, cluster: Cluster, config: HandoffConfig) -> None:
        self.config = config
        self._store = store
        self._cluster = cluster
        self._catching_up: set[str] = set()
        self._overflowed: set[str] = set()  # past their hint bound: anti-entropy's to repair
        # Nodes hinted while a backlog refresh was reading the store: kept in the view.
        self._hinted_since_refresh: set[str] = set()
        # Counters of this pod (`/metrics`): hints stored and dropped past the bound.
        self.stored: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.backlogs: dict[str, HintBacklog] = {}

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def avoid(self, node_id: str) -> bool:
        """True when a write must not be sent to `node_id` now."""
        if not self._cluster.is_healthy(node_id):
            return True
        return self.config.enabled and node_id in self._catching_up

    def catching_up(self, node_id: str) -> bool:
        return node_id in self._catching_up

    def begin_refresh(self) -> None:
        self._hinted_since_refresh = set()

    def note_backlogs(self, backlogs: Mapping[str, HintBacklog]) -> None:
        """The store's backlogs, read after `begin_refresh`: the new catching-up view."""
        self.backlogs = dict(backlogs)
        pending = {node for node, backlog in backlogs.items() if backlog.pending}
        self._catching_up = pending | self._hinted_since_refresh
        self._overflowed = {node for node, backlog in backlogs.items() if backlog.overflowed}
        self._publish()

    def caught_up(self, node_id: str) -> None:
        """The replayer found no hint left for `node_id`."""
        self._catching_up.discard(node_id)
        self._publish()

    def _publish(self) -> None:
        """Tell searches which nodes missed acknowledged writes (`Cluster.behind`)."""
        self._cluster.behind = frozenset(self._catching_up | self._overflowed)

    async def record(self, hints: Iterable[Hint]) -> Recorded:
        """Store each hint (one per missed node batch); a store failure leaves that node
        unrecorded, so the write is judged without it."""
        hinted: set[str] = set()
        overflowed: set[str] = set()
        for hint in hints:
            try:
                got = await self._store.put_hint(hint, self.config.max_hints_per_node)
            except StoreUnavailable as e:
                log.warning("hint for node %s not stored: %s", hint.node, e)
                continue
            if got is None:
                overflowed.add(hint.node)
                self.dropped[hint.node] += 1
            else:
                hinted.add(hint.node)
                self.stored[hint.node] += 1
                self._catching_up.add(hint.node)
                self._hinted_since_refresh.add(hint.node)
        self._overflowed |= overflowed
        self._publish()
        if overflowed:
            log.warning(
                "nodes %s are past %d hints: hints dropped, anti-entropy must repair them",
                sorted(overflowed), self.config.max_hints_per_node,
            )  # fmt: skip
        return Recorded(frozenset(hinted), frozenset(overflowed))
