"""The public testing helpers: VirtualClock and Capture."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest

from reactor import Clock, SystemClock
from reactor.testing import Capture, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.uvloop]


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


async def test_jump_steps_the_wall_clock_only() -> None:
    clock = VirtualClock(start=datetime(2026, 3, 1, 12, tzinfo=UTC))
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(10)
        woke.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await clock.advance(1)
        clock.jump(3600)
        assert clock.now() == datetime(2026, 3, 1, 13, 0, 1, tzinfo=UTC)
        assert clock.monotonic() == 1 and woke == []  # nothing fires on a wall-clock step
        clock.jump(timedelta(hours=-2))
        assert clock.now() == datetime(2026, 3, 1, 11, 0, 1, tzinfo=UTC)
        await clock.advance(9)
    assert woke == [10]
    assert clock.now() == datetime(2026, 3, 1, 11, 0, 10, tzinfo=UTC)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            clock.jump(bad)
    for wrong_type in (True, "1"):
        with pytest.raises(TypeError, match="finite"):
            clock.jump(wrong_type)  # type: ignore[arg-type]


async def test_stall_fires_what_came_due_late_and_in_order() -> None:
    clock = VirtualClock(start=datetime(2026, 3, 1, 12, tzinfo=UTC))
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))
        if name == "first":  # a consequence of the first firing, before the second one
            woke.append(("consequence", clock.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "second", 2)
        tg.start_soon(sleeper, "later", 9)
        tg.start_soon(sleeper, "first", 1)
        await clock.advance(0.5)
        await clock.stall(5)  # the loop was blocked from 0.5 s to 5.5 s
        assert woke == [("first", 5.5), ("consequence", 5.5), ("second", 5.5)]
        assert clock.now() == datetime(2026, 3, 1, 12, 0, 5, 500000, tzinfo=UTC)
        await clock.advance(5)
    assert woke[-1] == ("later", 9.0)
    with pytest.raises(ValueError, match="forward"):
        await clock.stall(-1)


async def test_firings_whose_consequences_take_several_turns_stay_fast() -> None:
    # On asyncio, anyio.wait_all_tasks_blocked() polls every 0.1 s while a task is still
    # runnable: a firing whose consequences take several turns of the loop (a timer
    # publishing, the dispatcher routing, a handler running) would cost 0.1 s each.
    clock = VirtualClock()
    done: list[float] = []

    async def ticker() -> None:
        for _ in range(600):
            await clock.sleep(1)
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
            done.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        with anyio.fail_after(10):  # 600 firings x 0.1 s would take a minute
            await clock.advance(600)
    assert done == [float(n) for n in range(1, 601)]
