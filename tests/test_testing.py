"""The public testing helpers: VirtualClock and Capture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest

from reactor import Clock, SystemClock
from reactor.testing import Capture, VirtualClock

pytestmark = pytest.mark.anyio


async def test_virtual_time_moves_only_when_advanced() -> None:
    clock = VirtualClock(start=datetime(2026, 3, 1, 12, tzinfo=UTC))
    assert isinstance(clock, Clock)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async with anyio.create_task_group() as tg:
        for name, seconds in [("late", 3600), ("early", 1), ("tie-first", 60), ("tie-second", 60)]:
            tg.start_soon(sleeper, name, seconds)
            await anyio.wait_all_tasks_blocked()  # registered in this order
        await clock.advance(59)
        assert woke == [("early", 1.0)]
        await clock.advance(3600)
    assert woke == [("early", 1.0), ("tie-first", 60.0), ("tie-second", 60.0), ("late", 3600.0)]
    assert clock.monotonic() == 3659
    assert clock.now() == datetime(2026, 3, 1, 12, tzinfo=UTC) + timedelta(seconds=3659)


async def test_consequences_of_one_firing_happen_before_the_next() -> None:
    clock = VirtualClock()
    log: list[float] = []

    async def chain() -> None:
        for _ in range(5):
            await clock.sleep(10)
            log.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(chain)
        await clock.advance(45)
        assert log == [10, 20, 30, 40]
        await clock.advance(5)
    assert log == [10, 20, 30, 40, 50]


async def test_an_hour_of_virtual_time_is_fast() -> None:
    clock = VirtualClock()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        deadline = 0.0
        while True:
            deadline += 1
            await clock.sleep_until(deadline)
            ticks += 1

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await clock.advance(3600)
            tg.cancel_scope.cancel()
    assert ticks == 3600


async def test_deadline_scope_cancels_at_virtual_deadline() -> None:
    clock = VirtualClock()
    results: list[bool] = []

    async def guarded(limit: float, work: float) -> None:
        with clock.deadline_scope(clock.monotonic() + limit) as scope:
            await clock.sleep(work)
        results.append(scope.cancelled_caught)

    async with anyio.create_task_group() as tg:
        tg.start_soon(guarded, 5, 10)
        tg.start_soon(guarded, 5, 1)
        await clock.advance(20)
    assert sorted(results) == [False, True]
    assert clock.pending == 0
    with clock.deadline_scope(clock.monotonic()) as scope:
        await anyio.sleep_forever()  # an expired deadline cancels at once
    assert scope.cancelled_caught


async def test_virtual_clock_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="aware"):
        VirtualClock(start=datetime(2026, 1, 1))
    clock = VirtualClock(start=datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC) and clock.now().tzinfo is UTC
    with pytest.raises(ValueError, match="forward"):
        await clock.advance(-1)
    await clock.sleep(0)  # not in the future: returns at once
    assert clock.next_deadline() is None


async def test_system_clock() -> None:
    clock = SystemClock()
    assert isinstance(clock, Clock)
    assert clock.now().tzinfo is UTC
    before = clock.monotonic()
    await clock.sleep(0)
    await clock.sleep_until(before)
    assert clock.monotonic() >= before
    with clock.deadline_scope(clock.monotonic()) as scope:
        await anyio.sleep_forever()
    assert scope.cancelled_caught


async def test_capture_waits_for_events() -> None:
    from reactor import Event

    capture = Capture()
    async with anyio.create_task_group() as tg:

        async def feed() -> None:
            for n in range(3):
                await capture(Event(type="t", source="/s", data=n))
                await anyio.lowlevel.checkpoint()

        tg.start_soon(feed)
        with anyio.fail_after(5):
            events = await capture.wait_for(3)
    assert [e.data for e in events] == [0, 1, 2]
