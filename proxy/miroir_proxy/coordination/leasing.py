"""Mode B: one leader per scope (`rebalance:<index>`, `group-sync`, ...) through a lease, and
a phase machine that survives the leader.

`LeaseKeeper.held` is this pod's local, conservative view: it is True only until the
moment the lease was last (re)granted plus the TTL minus a tenth, measured from when the
request was *sent*. The store expires the lease no earlier than that, and another pod can
only take it after it expired, so two keepers never both report `held` at once (clock rate
drift aside, which the tenth absorbs). A keeper whose renewals stall therefore stops
claiming leadership on its own, before anyone else can have it.

`PhaseMachine` persists, fenced by the lease, the next phase to run and the operation's
data after every step; a new holder re-runs only the step that was in flight (so steps
must be idempotent) and never a committed one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

from miroir_proxy.background import BackgroundTasks
from miroir_proxy.state.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

DONE = "done"
# Past the reported expiry: the store's clock ticks in whole milliseconds.
_EXPIRY_SLACK_S = 0.003


class LeaseLost(Exception):
    """This pod no longer holds the lease; whatever it was doing under it must stop."""


class LeaseKeeper:
    """Acquires and renews lease `scope` for `owner` while running (`async with` or `run()`).

    Leaving the `async with` block releases the lease so a successor need not wait for the
    TTL; a pod that dies without leaving simply lets it expire.
    """

    def __init__(
        self,
        store: Store,
        scope: str,
        owner: str,
        *,
        ttl_ms: int = 10_000,
        renew_ms: int = 3_000,
    ) -> None:
        if renew_ms >= ttl_ms:
            raise ValueError("a lease must be renewed more often than it expires")
        self.scope = scope
        self.owner = owner
        self._store = store
        self._ttl_ms = ttl_ms
        self._renew_s = renew_ms / 1000
        self._validity_s = (ttl_ms - ttl_ms // 10) / 1000
        self._valid_until = 0.0
        self._granted = asyncio.Condition()
        self._background = BackgroundTasks(log)

    @property
    def held(self) -> bool:
        return asyncio.get_running_loop().time() < self._valid_until

    async def attempt(self) -> bool:
        """One acquire-or-renew round; True if this pod holds the lease afterwards."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        was_held = self.held
        try:
            if was_held:
                granted = await self._store.lease_renew(self.scope, self.owner, self._ttl_ms)
            else:
                granted = await self._store.lease_acquire(self.scope, self.owner, self._ttl_ms)
        except StoreUnavailable as e:
            log.warning("lease %s: store unavailable, not renewed: %s", self.scope, e)
            return self.held
        if granted:
            self._valid_until = sent + self._validity_s
            if not was_held:
                log.info("lease %s acquired by %s", self.scope, self.owner)
            async with self._granted:
                self._granted.notify_all()
        elif was_held:
            log.warning("lease %s lost by %s", self.scope, self.owner)
            self._valid_until = 0.0
        return granted

    async def run(self) -> NoReturn:
        while True:
            granted = await self.attempt()
            await asyncio.sleep(self._renew_s if granted else await self._until_free_s())

    async def _until_free_s(self) -> float:
        """How long a contender waits before its next attempt: until the holder's lease
        expires (so a dead holder is replaced within the TTL, not TTL + one renew
        interval), but no longer than a renew interval."""
        try:
            remaining_ms = await self._store.lease_ttl_ms(self.scope)
        except StoreUnavailable:
            return self._renew_s
        if remaining_ms is None:  # released or expired since our attempt
            return _EXPIRY_SLACK_S
        return min(self._renew_s, remaining_ms / 1000 + _EXPIRY_SLACK_S)

    async def wait_held(self) -> None:
        """Return once this pod holds the lease (callers add their own deadline)."""
        async with self._granted:
            await self._granted.wait_for(lambda: self.held)

    async def hold(self, work: Callable[[], Awaitable[T]]) -> T:
        """Wait for the lease, then run `work` under it; if the lease is lost meanwhile,
        `work` is cancelled and `LeaseLost` raised."""
        await self.wait_held()
        task = asyncio.ensure_future(work())
        try:
            while True:
                remaining = self._valid_until - asyncio.get_running_loop().time()
                done, _ = await asyncio.wait({task}, timeout=max(remaining, 0.0))
                if done:
                    return task.result()
                if not self.held:
                    raise LeaseLost(f"lease {self.scope} lost while working")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})

    async def release(self) -> None:
        self._valid_until = 0.0
        try:
            await self._store.lease_release(self.scope, self.owner)
        except StoreUnavailable as e:
            log.warning("lease %s: could not release (it expires by itself): %s", self.scope, e)

    async def __aenter__(self) -> Self:
        if self._background.running:
            raise RuntimeError(f"lease keeper {self.scope} is already running")
        self._background.start(f"lease keeper {self.scope}", self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
        # Shielded: a successor should not wait out the TTL because our shutdown was cancelled.
        await asyncio.shield(self.release())


Step = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class PhaseState:
    operation: str
    phase: str
    data: dict[str, Any]

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> PhaseState:
        return cls(str(stored["operation"]), str(stored["phase"]), dict(stored["data"]))

    def to_stored(self) -> dict[str, Any]:
        return {"operation": self.operation, "phase": self.phase, "data": self.data}


class PhaseMachine:
    """Runs the named `steps` of `operation` in order under `lease`, resuming after the last
    committed one. Each step gets the operation's data and may return updated data, which
    is committed together with the next phase name. A new `operation` id on the same scope
    starts over from the first step.
    """

    def __init__(
        self, store: Store, lease: LeaseKeeper, operation: str, steps: Sequence[tuple[str, Step]]
    ) -> None:
        names = [name for name, _ in steps]
        if not steps or len(set(names)) != len(names) or DONE in names:
            raise ValueError(f"phase names must be unique, non-empty and not {DONE!r}")
        self._store = store
        self._lease = lease
        self.operation = operation
        self._steps = list(steps)
        self._names = names

    async def state(self) -> PhaseState | None:
        stored = await self._store.get_phase(self._lease.scope)
        return None if stored is None else PhaseState.from_stored(stored)

    async def run(self, initial: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run the remaining steps; returns the final data. Raises `LeaseLost` when a commit
        is refused because another pod holds the lease now."""
        state = await self.state()
        if state is None or state.operation != self.operation:
            state = PhaseState(self.operation, self._names[0], dict(initial or {}))
            await self._commit(state)
        if state.phase == DONE:
            return state.data
        if state.phase not in self._names:
            raise ValueError(f"{self._lease.scope}: unknown stored phase {state.phase!r}")
        data = state.data
        for position in range(self._names.index(state.phase), len(self._steps)):
            name, step = self._steps[position]
            log.info("%s: %s phase %s", self._lease.scope, self.operation, name)
            updated = await step(data)
            if updated is not None:
                data = dict(updated)
            following = self._names[position + 1] if position + 1 < len(self._names) else DONE
            await self._commit(PhaseState(self.operation, following, data))
        return data

    async def _commit(self, state: PhaseState) -> None:
        stored = await self._store.put_phase(
            self._lease.scope, state.to_stored(), owner=self._lease.owner
        )
        if not stored:
            raise LeaseLost(f"lease {self._lease.scope} is held by another pod; phase not saved")
