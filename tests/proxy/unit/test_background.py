"""`BackgroundTasks`: a dying loop is logged and restarted, a task that ignores its
cancellation is reported without hanging `stop()`, and a loop without restart dies once."""

import asyncio
import logging

import pytest

from miroir_proxy.background import BackgroundTasks

DEADLINE_S = 5.0
log = logging.getLogger("test.background")


async def test_a_dead_loop_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    restarted = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("boom")
        restarted.set()
        await asyncio.Event().wait()

    background = BackgroundTasks(log)
    with caplog.at_level(logging.ERROR, logger=log.name):
        background.start("flaky loop", flaky, restart_s=0.001)
        await asyncio.wait_for(restarted.wait(), DEADLINE_S)
        assert await background.stop() == set()
    assert runs == 2
    (record,) = caplog.records
    assert record.name == log.name
    assert "flaky loop died; restarting" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert not background.running


async def test_a_loop_that_returns_is_restarted_too(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    third = asyncio.Event()

    async def short() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            third.set()
            await asyncio.Event().wait()

    background = BackgroundTasks(log)
    with caplog.at_level(logging.ERROR, logger=log.name):
        background.start("short loop", short, restart_s=0.001)
        await asyncio.wait_for(third.wait(), DEADLINE_S)
        await background.stop()
    assert [r.getMessage().split(";")[0] for r in caplog.records] == ["short loop returned"] * 2


async def test_without_restart_a_death_is_logged_once_and_stop_still_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0

    async def broken() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("bug")

    background = BackgroundTasks(log)
    with caplog.at_level(logging.ERROR, logger=log.name):
        background.start("one-shot", broken)
        async with asyncio.timeout(DEADLINE_S):
            while not caplog.records:
                await asyncio.sleep(0.001)
        assert background.running
        assert await background.stop() == set()
    assert runs == 1
    (record,) = caplog.records
    assert record.getMessage() == "one-shot died"


async def test_a_task_ignoring_cancellation_is_reported_and_does_not_hang_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            await release.wait()  # swallows the cancellation until the test lets go

    async def polite() -> None:
        await asyncio.Event().wait()

    background = BackgroundTasks(log, stop_timeout_s=DEADLINE_S)
    background.start("stubborn loop", stubborn)
    background.start("polite loop", polite)
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    with caplog.at_level(logging.ERROR, logger=log.name):
        async with asyncio.timeout(DEADLINE_S):
            stuck = await background.stop(timeout_s=0.05)
    try:
        assert cancelled.is_set()
        assert [task.get_name() for task in stuck] == ["stubborn loop"]
        assert not any(task.done() for task in stuck)
        assert [r.getMessage() for r in caplog.records] == [
            "stubborn loop did not stop within 0.05 s"
        ]
        assert not background.running
    finally:
        release.set()
        await asyncio.wait(stuck, timeout=DEADLINE_S)
    assert all(task.done() for task in stuck)


async def test_stop_without_start_is_a_no_op() -> None:
    assert await BackgroundTasks(log).stop() == set()
