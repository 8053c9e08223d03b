"""Query coalescing: identical concurrent searches on one pod share one scatter.

While a scatter is in flight, an identical search (same index, canonical body, same
settings, same effective credentials) subscribes to its result instead of scattering
again. Two bounds keep answers fresh and fair: a search joins a flight only if that
flight started less than `coalesce_window_ms` ago (a joiner never gets an answer older
than the window, however slow the nodes are), and at most `coalesce_max_subscribers`
requests share one flight; past either bound the search starts a new flight. Results
are not kept after a flight lands. A window of 0 turns coalescing off.

"Same settings" is the catalog's settings version of the index, which changes with
every settings write, swap or deletion made through this pod (writes made through other
pods reach this pod's settings cache within its TTL, coalesced or not). "Same
credentials" is the tenant filter the credentials add: auth has already decided the
request may read the index, and nothing else about a key changes a search's answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import orjson

T = TypeVar("T")


def search_key(uid: str, body: Any, settings_version: int, tenant_filter: Any) -> Hashable:
    """What makes two searches identical."""
    return (
        uid,
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS),
        settings_version,
        orjson.dumps(tenant_filter, option=orjson.OPT_SORT_KEYS),
    )


@dataclasses.dataclass(slots=True)
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    started: float
    subscribers: int = 1


class Coalescer(Generic[T]):
    def __init__(
        self,
        window_ms: int,
        max_subscribers: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_ms / 1000
        self._max_subscribers = max_subscribers
        self._clock = clock
        self._flights: dict[Hashable, _Flight[T]] = {}

    @property
    def enabled(self) -> bool:
        return self._window_s > 0

    def in_flight(self) -> int:
        return len(self._flights)

    def subscribers(self) -> int:
        """Requests waiting on a flight that new requests may still join."""
        return sum(flight.subscribers for flight in self._flights.values())

    async def run(self, key: Hashable, produce: Callable[[], Awaitable[T]]) -> T:
        """`produce()`'s result, shared with identical calls made while it runs.

        Each caller awaits the shared task through a shield: one client going away never
        cancels the scatter the others wait for.
        """
        if not self.enabled:
            return await produce()
        now = self._clock()
        flight = self._flights.get(key)
        if (
            flight is None
            or flight.task.done()
            or now - flight.started >= self._window_s
            or flight.subscribers >= self._max_subscribers
        ):
            flight = _Flight(asyncio.ensure_future(produce()), now)
            self._flights[key] = flight
            flight.task.add_done_callback(functools.partial(self._land, key, flight))
        else:
            flight.subscribers += 1
        return await asyncio.shield(flight.task)

    def _land(self, key: Hashable, flight: _Flight[T], _task: object) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.task.cancelled():
            # Mark the exception retrieved: subscribers that left would leave it unobserved.
            flight.task.exception()
