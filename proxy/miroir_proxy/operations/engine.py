"""The operations engine: long cluster changes as persisted phase machines.

An operation is a record in the store (`OperationRecord`: kind, state, phase, progress)
plus a phase machine (`coordination.leasing.PhaseMachine`) under the Mode B lease
`operation:<id>`. Every pod runs an `Operations` loop that contends for the lease of each
running operation; the holder runs the kind's steps from the last committed phase, so a
pod that dies mid-operation is replaced by another within the lease TTL, and a restarted
cluster resumes where it stopped. Heavy copying inside a step is cut into Mode C chunks
(`coordination.queueing`) that any pod claims.

A kind is an `OperationKind`: its steps, and how to undo what they did (`rollback`) when
the operation is canceled or fails for good. Steps must be idempotent: a new holder re-runs
the step that was in flight. `POST /_miroir/operations/{id}/cancel` sets a flag the steps
check at their safe points (`OperationContext.check_canceled`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

from miroir_proxy.background import STOP_TIMEOUT_S, BackgroundTasks
from miroir_proxy.config import MiroirConfig
from miroir_proxy.coordination.leasing import LeaseKeeper, LeaseLost, PhaseMachine, Step
from miroir_proxy.coordination.runtime import Coordination
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.dispatch.catalog import Catalog
from miroir_proxy.dispatch.cluster import Cluster
from miroir_proxy.state.store import OperationRecord, Store, StoreUnavailable

from .epochs import Epochs

log = logging.getLogger(__name__)

LEASE_PREFIX = "operation:"
# One topology-changing operation at a time: each plans from the layout the last left.
TOPOLOGY_SCOPE = "topology"
RETRY_S = 1.0
MAX_ATTEMPTS = 5


class Canceled(Exception):
    """The operation was asked to stop; the step unwinds to the rollback."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_operation_id() -> str:
    return f"op-{secrets.token_hex(8)}"


@dataclasses.dataclass(slots=True)
class OperationContext:
    """What a step sees: the record (params, progress), the pod's components, and the
    ways to publish progress and notice a cancel request."""

    record: OperationRecord
    store: Store
    cluster: Cluster
    catalog: Catalog
    epochs: Epochs
    pod: Coordination
    config: MiroirConfig

    @property
    def ack_timeout_s(self) -> float:
        return self.config.operations.ack_timeout_ms / 1000

    async def check_canceled(self) -> None:
        """Raise `Canceled` if a cancel was requested (a safe point)."""
        current = await self.store.get_operation(self.record.id)
        if current is not None and current.cancel_requested:
            raise Canceled(self.record.id)

    async def report(self, phase: str | None = None, **progress: Any) -> None:
        """Publish the phase and progress shown by `GET /_miroir/operations/{id}`."""
        if phase is not None:
            self.record.phase = phase
        self.record.progress = {**self.record.progress, **progress}
        if not await self.store.save_operation(self.record):
            raise Canceled(self.record.id)  # finished behind our back


StepFn = Callable[[OperationContext, dict[str, Any]], Awaitable[Mapping[str, Any] | None]]


class OperationKind(Protocol):
    name: str

    def steps(self) -> Sequence[tuple[str, StepFn]]: ...

    async def rollback(self, ctx: OperationContext, data: dict[str, Any]) -> None:
        """Leave the cluster as it was before the operation (idempotent)."""
        ...


class Operations:
    """This pod's part in running operations; `async with` runs the contention loop."""

    def __init__(
        self,
        store: Store,
        cluster: Cluster,
        catalog: Catalog,
        epochs: Epochs,
        pod: Coordination,
        config: MiroirConfig,
    ) -> None:
        self._store = store
        self._parts = (store, cluster, catalog, epochs, pod, config)
        self._pod = pod
        self._kinds: dict[str, OperationKind] = {}
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._poll_s = config.coordination.peer_heartbeat_ms / 1000
        self._background = BackgroundTasks(log)

    def register(self, kind: OperationKind) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"operation kind {kind.name!r} is already registered")
        self._kinds[kind.name] = kind

    async def start(
        self, kind: str, params: Mapping[str, Any], *, scope: str = TOPOLOGY_SCOPE
    ) -> OperationRecord:
        """Record a new running operation; 409 `miroir_operation_in_progress` when another
        one holds `scope`. Some pod (usually this one, at once) then runs it."""
        if kind not in self._kinds:
            raise ValueError(f"unknown operation kind {kind!r}")
        record = OperationRecord(
            id=new_operation_id(),
            kind=kind,
            scope=scope,
            phase="pending",
            params=dict(params),
            started_at=utc_now(),
        )
        holder = await self._store.create_operation(record)
        if holder is not None:
            raise _in_progress(holder)
        self._wake.set()
        return record

    async def ensure_idle(self, scope: str = TOPOLOGY_SCOPE) -> None:
        """409 `miroir_operation_in_progress` while an operation holds `scope`: checked
        before a request's own validation, which reads the layout that operation changes
        (`start` checks again, atomically)."""
        for record in await self._store.list_operations():
            if record.scope == scope and not record.finished:
                raise _in_progress(record.id)

    async def cancel(self, op_id: str) -> OperationRecord:
        """Ask the operation to stop; one that already ended is answered as it is."""
        current = await self._store.get_operation(op_id)
        record = current if current is not None and current.finished else None
        if record is None:
            record = await self._store.request_cancel(op_id)
        if record is None:
            raise MiroirError("miroir_operation_not_found", f"Operation `{op_id}` not found.")
        return record

    async def wait_finished(self, op_id: str, timeout_s: float) -> OperationRecord:
        """The operation once finished (tests and the CLI's `--wait`)."""
        async with asyncio.timeout(timeout_s):
            while True:
                record = await self._store.get_operation(op_id)
                if record is None:
                    raise MiroirError(
                        "miroir_operation_not_found", f"Operation `{op_id}` not found."
                    )
                if record.finished:
                    return record
                await asyncio.sleep(self._poll_s)

    # --- running ----------------------------------------------------------------------

    async def run(self) -> None:
        """Contend for every running operation of a known kind, forever."""
        while True:
            try:
                running = [
                    r
                    for r in await self._store.list_operations()
                    if not r.finished and r.kind in self._kinds
                ]
            except StoreUnavailable as e:
                log.warning("operations not polled: %s", e)
                running = []
            for record in running:
                driver = self._drivers.get(record.id)
                if driver is None or driver.done():
                    self._drivers[record.id] = asyncio.create_task(
                        self._drive(record.id), name=f"miroir-operation-{record.id}"
                    )
            for op_id in [i for i, t in self._drivers.items() if t.done()]:
                del self._drivers[op_id]
            self._wake.clear()
            try:
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def __aenter__(self) -> Self:
        self._background.start("operations", self.run, restart_s=RETRY_S)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
        drivers, self._drivers = list(self._drivers.values()), {}
        for task in drivers:
            task.cancel()
        if drivers:
            await asyncio.wait(drivers, timeout=STOP_TIMEOUT_S)

    async def _drive(self, op_id: str) -> None:
        """Hold the operation's lease while it runs; return once it finished."""
        async with self._pod.lease(LEASE_PREFIX + op_id) as keeper:
            while True:
                record = await self._store.get_operation(op_id)
                if record is None or record.finished:
                    return
                try:
                    await keeper.hold(lambda: self._run_held(op_id, keeper))
                except LeaseLost as e:
                    log.warning("operation %s: %s", op_id, e)
                except StoreUnavailable as e:
                    log.warning("operation %s: store unavailable: %s", op_id, e)
                    await asyncio.sleep(RETRY_S)

    async def _run_held(self, op_id: str, keeper: LeaseKeeper) -> None:
        record = await self._store.get_operation(op_id)
        if record is None or record.finished:
            return
        kind = self._kinds[record.kind]
        store, cluster, catalog, epochs, pod, config = self._parts
        ctx = OperationContext(record, store, cluster, catalog, epochs, pod, config)
        steps = [(name, _bind(ctx, name, step)) for name, step in kind.steps()]
        machine = PhaseMachine(store, keeper, op_id, steps)
        attempts = 0
        while True:
            try:
                if record.cancel_requested:
                    raise Canceled(op_id)
                await machine.run(initial=record.params)
            except Canceled:
                await self._finish(ctx, kind, machine, "canceled", None)
                return
            except (LeaseLost, StoreUnavailable, asyncio.CancelledError):
                raise
            except Exception as e:
                attempts += 1
                log.exception("operation %s: step failed (attempt %d)", op_id, attempts)
                if attempts < MAX_ATTEMPTS and not isinstance(e, MiroirError):
                    await asyncio.sleep(RETRY_S * attempts)
                    continue
                error = e.to_dict() if isinstance(e, MiroirError) else _internal(e)
                await self._finish(ctx, kind, machine, "failed", error)
                return
            ctx.record.state = "succeeded"
            ctx.record.phase = "done"
            ctx.record.finished_at = utc_now()
            await store.save_operation(ctx.record)
            log.info("operation %s (%s) succeeded", op_id, record.kind)
            return

    async def _finish(
        self,
        ctx: OperationContext,
        kind: OperationKind,
        machine: PhaseMachine,
        state: str,
        error: dict[str, Any] | None,
    ) -> None:
        stored = await machine.state()
        data = stored.data if stored is not None else dict(ctx.record.params)
        await ctx.report("rolling back")
        await kind.rollback(ctx, data)
        ctx.record.state = state
        ctx.record.error = error
        ctx.record.finished_at = utc_now()
        await ctx.store.save_operation(ctx.record)
        log.warning("operation %s (%s) %s", ctx.record.id, ctx.record.kind, state)


def _in_progress(holder: str) -> MiroirError:
    return MiroirError(
        "miroir_operation_in_progress",
        f"Operation `{holder}` is changing the cluster; wait for it to finish or cancel it first.",
    )


def _bind(ctx: OperationContext, name: str, step: StepFn) -> Step:
    async def bound(data: dict[str, Any]) -> Mapping[str, Any] | None:
        await ctx.check_canceled()
        await ctx.report(name)
        return await step(ctx, data)

    return bound


def _internal(error: Exception) -> dict[str, Any]:
    return MiroirError("internal", f"{type(error).__name__}: {error}"[:500]).to_dict()
