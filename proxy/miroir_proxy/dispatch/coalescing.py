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


class _LeaderLeft(Exception):
    """The request running a flight's scatter was cancelled before the scatter landed."""


@dataclasses.dataclass(slots=True)
class _Flight(Generic[T]):
    result: asyncio.Future[T]
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

        The first caller runs `produce()` itself (a task per search was a measurable share
        of its CPU) and publishes the outcome in a future the others await through a
        shield: one joiner going away never cancels the flight. If the first caller is
        cancelled, its joiners start over: one of them runs the next flight.
        """
        if not self.enabled:
            return await produce()
        now = self._clock()
        flight = self._flights.get(key)
        if (
            flight is not None
            and now - flight.started < self._window_s
            and flight.subscribers < self._max_subscribers
        ):
            flight.subscribers += 1
            try:
                return await asyncio.shield(flight.result)
            except _LeaderLeft:
                return await self.run(key, produce)
        flight = _Flight(asyncio.get_running_loop().create_future(), now)
        self._flights[key] = flight
        try:
            value = await produce()
        except asyncio.CancelledError:
            self._land(key, flight, _LeaderLeft())
            raise
        except BaseException as e:
            self._land(key, flight, e)
            raise
        self._land(key, flight, None)
        flight.result.set_result(value)
        return value

    def _land(self, key: Hashable, flight: _Flight[T], error: BaseException | None) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if error is not None:
            flight.result.set_exception(error)
            # Mark the exception retrieved: the flight may have had no joiner to see it.
            flight.result.exception()
