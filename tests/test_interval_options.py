"""Interval timers' options: ``start``, ``end`` and ``run_immediately`` (with ``jitter``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from reactor import Event, Reactor
from reactor.sources import timers
from reactor.sources.timers import IntervalSource
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def rfc3339(seconds: float) -> str:
    return at(seconds).isoformat().replace("+00:00", "Z")


class Runs:
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.starts: list[float] = []
        self.data: list[dict[str, object]] = []

    async def __call__(self, event: Event) -> None:
        self.starts.append(self.clock.monotonic())
        self.data.append(event.data)


async def test_run_immediately_runs_when_the_app_starts_then_on_the_grid() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=10, run_immediately=True, name="now")(runs)
    await clock.advance(5)
    async with app:
        await clock.advance(25)
    assert runs.starts == [5, 15, 25]
    assert runs.data[0] == {"kind": "interval", "scheduled": rfc3339(5), "late": False, "missed": 0}


async def test_start_sets_the_grid_in_wall_clock_time() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    # Grid at 100 + 30k (another time zone, the same instant), the first run one period
    # after it.
    start = at(100).astimezone(timezone(timedelta(hours=-5)))
    timers.every(app, seconds=30, start=start, name="later")(runs)
    async with app:
        await clock.advance(200)
    assert runs.starts == [130, 160, 190]
    assert [d["scheduled"] for d in runs.data] == [rfc3339(s) for s in (130, 160, 190)]


async def test_start_with_run_immediately_runs_at_start() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=30, start=at(100), run_immediately=True, name="t")(runs)
    async with app:
        await clock.advance(200)
    assert runs.starts == [100, 130, 160, 190]


async def test_a_past_start_keeps_its_grid_and_does_not_count_earlier_runs_as_missed() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs, immediate = Runs(clock), Runs(clock)
    timers.every(app, seconds=60, start=START - timedelta(hours=1), name="grid")(runs)
    timers.every(
        app, seconds=60, start=START - timedelta(seconds=90), run_immediately=True, name="now"
    )(immediate)
    await clock.advance(15)
    async with app:
        await clock.advance(100)
    assert runs.starts == [60]  # the grid: -3600 + 60k, the first after 15 s
    # At once when the app starts (run_immediately), then on the grid -90 + 60k.
    assert immediate.starts == [15, 30, 90]
    assert not any(d["late"] or d["missed"] for d in runs.data + immediate.data)
    assert app.stats().sources["/reactor/timers/grid"]["missed"] == 0


async def test_a_start_on_the_grid_with_run_immediately_runs_once() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(
        app, seconds=10, start=START - timedelta(seconds=20), run_immediately=True, name="t"
    )(runs)
    async with app:
        await clock.advance(15)
    assert runs.starts == [0, 10]


async def test_end_is_the_last_due_time_and_then_the_timer_is_done() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs, exact = Runs(clock), Runs(clock)
    timers.every(app, seconds=10, end=at(35), name="until")(runs)
    timers.every(app, seconds=10, end=at(30), name="exact")(exact)
    async with app:
        await clock.advance(100)
        assert clock.pending == 0  # both done: nothing sleeps for them
    assert runs.starts == [10, 20, 30]
    assert exact.starts == [10, 20, 30]  # a due time at the end runs


async def test_end_after_a_stall_coalesces_up_to_the_end_only() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=1, end=at(5), name="t")(runs)
    async with app:
        await clock.advance(1.5)
        await clock.stall(10)
        await clock.advance(10)
    assert runs.starts == [1, 11.5]
    assert runs.data[1] == {"kind": "interval", "scheduled": rfc3339(5), "late": True, "missed": 3}


async def test_an_end_that_passed_before_the_app_started_runs_nothing() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=1, end=at(5), run_immediately=True, name="t")(runs)
    await clock.advance(10)
    async with app:
        await clock.advance(10)
    assert runs.starts == []


async def test_jitter_with_start_and_end() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=10, jitter=5, start=at(20), end=at(60), name="t")(runs)
    async with app:
        await clock.advance(100)
    assert len(runs.starts) == 4
    for k, start in enumerate(runs.starts, start=3):
        assert 10 * k <= start < 10 * k + 5


async def test_the_options_are_checked_when_registered() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    with pytest.raises(ValueError, match="aware"):
        timers.every(app, 1, start=datetime(2026, 1, 1))
    with pytest.raises(TypeError, match="end"):
        timers.every(app, 1, end="tomorrow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end must be after start"):
        timers.every(app, 1, start=at(10), end=at(10))
    with pytest.raises(TypeError, match="run_immediately"):
        timers.every(app, 1, run_immediately=1)  # type: ignore[arg-type]
    source = IntervalSource(5, name="x", start=at(1), end=at(2), run_immediately=True)
    assert (source.start, source.end, source.run_immediately) == (at(1), at(2), True)
    assert app.sources == ()
