"""Fixtures of the store suites: each test runs on every backend (SQLite, a real Redis, a real
3-master Redis Cluster)."""

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from miroir_proxy.state.store import Store

from ..storekit import STORE_BACKENDS, FakeClock, Timeline, store_maker


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=STORE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Callable[[], Store]:
    return store_maker(backend, tmp_path, clock, request)


@pytest.fixture
def timeline(backend: str, clock: FakeClock) -> Timeline:
    return Timeline(backend, clock)


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    s = make_store()
    yield s
    await s.close()
