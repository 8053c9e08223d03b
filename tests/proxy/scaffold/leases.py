"""Demo leaders with a phase machine, for driving Mode B from outside the process.

Every pod asked to join scope `demo:<name>` (`POST /_miroir/scaffold/leases/{name}`) contends
for its lease; whichever holds it runs a phase machine of `phases` steps of `step_ms` each, every
step appending `{"phase", "by"}` to the committed data, and keeps renewing the lease afterwards
until it leaves (`DELETE`). Multi-process tests kill the holder mid-phase and then read the
evidence (`GET`): the committed data (each phase once, in order), the phase each run started
from, and each pod's own view of when it held the lease.

That view is sampled from `LeaseKeeper.held` every `SAMPLE_S`, on `loop.time()` — the
system-wide monotonic clock on Linux — so the intervals of different processes can be
compared directly: they must never overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, NoReturn, Self

from aiohttp import web

from miroir_proxy.api.appkeys import COORDINATION, STORE
from miroir_proxy.api.responses import json_response, read_json
from miroir_proxy.api.routes.admin import require_admin
from miroir_proxy.background import BackgroundTasks
from miroir_proxy.coordination.leasing import LeaseKeeper, LeaseLost, PhaseMachine, Step
from miroir_proxy.coordination.runtime import Coordination
from miroir_proxy.core.errors import MiroirError
from miroir_proxy.state.store import Store, StoreUnavailable

from .body import bounded, non_empty

log = logging.getLogger(__name__)

SCOPE_PREFIX = "demo:"
SAMPLE_S = 0.002
# Enough for minutes of holding at a 2 ms resolution without growing unbounded.
MAX_INTERVALS = 1_000
RETRY_S = 0.1


def _step(name: str, step_ms: int, owner: str) -> Step:
    async def step(data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(step_ms / 1000)
        return {**data, "ran": [*data.get("ran", []), {"phase": name, "by": owner}]}

    return step


class LeaseDemo:
    """One pod's participation in one demo scope."""

    def __init__(
        self, store: Store, keeper: LeaseKeeper, operation: str, phases: int, step_ms: int
    ) -> None:
        self.keeper = keeper
        steps = [(f"p{i}", _step(f"p{i}", step_ms, keeper.owner)) for i in range(phases)]
        self.machine = PhaseMachine(store, keeper, operation, steps)
        self.intervals: list[list[float]] = []
        self.started_from: list[str | None] = []
        self.finished = False
        self._background = BackgroundTasks(log)

    def view(self) -> dict[str, Any]:
        return {
            "token": self.keeper.owner,
            "held": self.keeper.held,
            "heldIntervals": self.intervals,
            "startedFrom": self.started_from,
            "finished": self.finished,
        }

    async def _sample(self) -> NoReturn:
        loop = asyncio.get_running_loop()
        was_held = False
        while True:
            now, held = loop.time(), self.keeper.held
            if held and not was_held:
                self.intervals.append([now, now])
                del self.intervals[:-MAX_INTERVALS]
            elif held:
                self.intervals[-1][1] = now
            was_held = held
            await asyncio.sleep(SAMPLE_S)

    async def _lead(self) -> None:
        while not self.finished:
            try:
                await self.keeper.hold(self._run_machine)
            except LeaseLost as e:
                log.warning("demo %s: %s", self.keeper.scope, e)
            except StoreUnavailable as e:
                log.warning("demo %s: store unavailable, retrying: %s", self.keeper.scope, e)
                await asyncio.sleep(RETRY_S)

    async def _run_machine(self) -> None:
        state = await self.machine.state()
        self.started_from.append(None if state is None else state.phase)
        await self.machine.run()
        self.finished = True

    async def __aenter__(self) -> Self:
        await self.keeper.__aenter__()
        self._background.start(f"demo {self.keeper.scope} sampler", self._sample)
        self._background.start(f"demo {self.keeper.scope} leader", self._lead)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._background.stop()
        await self.keeper.__aexit__(exc_type, exc, tb)


class LeaseDemos:
    """This pod's demo scopes by name; `async with` leaves them all (releasing the leases)."""

    def __init__(self, store: Store, pod: Coordination) -> None:
        self._store = store
        self._pod = pod
        self._demos: dict[str, LeaseDemo] = {}

    def get(self, name: str) -> LeaseDemo | None:
        return self._demos.get(name)

    async def join(self, name: str, operation: str, phases: int, step_ms: int) -> bool:
        """Start contending for `demo:<name>`; False if this pod already does."""
        if name in self._demos:
            return False
        keeper = self._pod.lease(SCOPE_PREFIX + name)
        demo = LeaseDemo(self._store, keeper, operation, phases, step_ms)
        self._demos[name] = demo
        await demo.__aenter__()
        return True

    async def leave(self, name: str) -> bool:
        demo = self._demos.pop(name, None)
        if demo is None:
            return False
        await demo.__aexit__(None, None, None)
        return True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name in list(self._demos):
            await self.leave(name)


LEASE_DEMOS = web.AppKey("scaffold_lease_demos", LeaseDemos)
routes = web.RouteTableDef()


@routes.post("/_miroir/scaffold/leases/{name}")
async def join(request: web.Request) -> web.Response:
    """This pod starts contending for lease `demo:<name>` (and runs its phase machine when
    it holds it); `joined` is false if it already does."""
    require_admin(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise MiroirError("bad_request", "The body must be a JSON object.")
    operation = non_empty(body, "operation")
    name = request.match_info["name"]
    joined = await request.app[LEASE_DEMOS].join(
        name, operation, bounded(body, "phases", 1, 100), bounded(body, "stepMs", 0, 60_000)
    )
    return json_response({"name": name, "joined": joined}, status=202)


@routes.get("/_miroir/scaffold/leases/{name}")
async def view(request: web.Request) -> web.Response:
    """This pod's view of the demo: whether and when it held the lease, where its runs of
    the phase machine started, and the committed phase state."""
    require_admin(request)
    name = request.match_info["name"]
    demo = request.app[LEASE_DEMOS].get(name)
    if demo is None:
        raise MiroirError("miroir_job_not_found", f"This pod has not joined lease demo `{name}`.")
    state = await demo.machine.state()
    return json_response({**demo.view(), "state": None if state is None else state.to_stored()})


@routes.delete("/_miroir/scaffold/leases/{name}")
async def leave(request: web.Request) -> web.Response:
    """This pod stops contending and releases the lease if it held it."""
    require_admin(request)
    left = await request.app[LEASE_DEMOS].leave(request.match_info["name"])
    return json_response({"left": left})


async def _demos(app: web.Application) -> AsyncIterator[None]:
    async with LeaseDemos(app[STORE], app[COORDINATION]) as demos:
        app[LEASE_DEMOS] = demos
        yield


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app.cleanup_ctx.append(_demos)
