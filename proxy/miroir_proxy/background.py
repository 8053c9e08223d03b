"""Background tasks a component owns: start them by name, restart the ones that die, stop
them all with a bounded wait.

Every long-lived loop of a pod (health probes, task aggregation, topology watch, leases,
peer heartbeats, job workers) is started and stopped the same way:

    self._background = BackgroundTasks(log)
    self._background.start("miroir-topology-watch", self._run)
    ...
    await self._background.stop()

Decisions a newcomer would otherwise get wrong:
- A loop started with `restart_s` never stays dead: when it raises (or returns) the reason is
  logged on the owner's logger and it runs again after `restart_s`. Without `restart_s` a
  death is logged and the task ends; nothing is left for `stop()` to re-raise.
- `stop()` cancels every task and waits at most `timeout_s`: a task that ignores the
  cancellation is logged and returned, never awaited forever, so a stuck loop cannot hang
  a pod's shutdown.
- Cancelling `stop()` itself propagates (the tasks stay cancelled); nothing else does.

This module sits outside the layers (like `config.py`): every layer may import it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

STOP_TIMEOUT_S = 5.0

Loop = Callable[[], Awaitable[Any]]


async def supervise(
    name: str, loop: Loop, restart_s: float | None, log: logging.Logger | logging.LoggerAdapter[Any]
) -> None:
    """Run `loop`; when it dies, log why and (with `restart_s`) run it again after that
    delay. Returns only when `loop` ends and `restart_s` is None."""
    while True:
        try:
            await loop()
            if restart_s is None:
                return
            log.error("%s returned; restarting in %.3f s", name, restart_s)
        except Exception:
            if restart_s is None:
                log.exception("%s died", name)
                return
            log.exception("%s died; restarting in %.3f s", name, restart_s)
        await asyncio.sleep(restart_s)


class BackgroundTasks:
    """The background tasks of one component, logged on its logger."""

    def __init__(
        self,
        log: logging.Logger | logging.LoggerAdapter[Any],
        *,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self._log = log
        self._stop_timeout_s = stop_timeout_s
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        """True between the first `start()` and `stop()`."""
        return bool(self._tasks)

    @property
    def names(self) -> list[str]:
        return [task.get_name() for task in self._tasks]

    def start(self, name: str, loop: Loop, *, restart_s: float | None = None) -> None:
        """Run `loop()` as task `name`; with `restart_s`, again after each death."""
        self._tasks.append(
            asyncio.create_task(supervise(name, loop, restart_s, self._log), name=name)
        )

    async def stop(self, timeout_s: float | None = None) -> set[asyncio.Task[None]]:
        """Cancel every task and wait for them at most `timeout_s` (default: the
        constructor's); returns, after logging them, the tasks that had not stopped."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return set()
        bound_s = self._stop_timeout_s if timeout_s is None else timeout_s
        for task in tasks:
            task.cancel()
        _, stuck = await asyncio.wait(tasks, timeout=bound_s)
        for task in stuck:
            self._log.error("%s did not stop within %g s", task.get_name(), bound_s)
        return stuck
