"""Many timers in one app: one scheduler wakes them all, in order, and stops at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reactor import Event, Reactor
from reactor.sources import timers
from reactor.sources.timers import MAX_BACKLOG
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)


def scheduled(event: Event) -> datetime:
    return datetime.fromisoformat(event.data["scheduled"])


class Log:
    """A handler for many timers: records (virtual time, timer, event) of every run."""

    def __init__(self, clock: VirtualClock, work: float = 0.0) -> None:
        self.clock = clock
        self.work = work
        self.runs: list[tuple[float, str, Event]] = []

    async def __call__(self, event: Event) -> None:
        assert event.subject is not None
        self.runs.append((self.clock.monotonic(), event.subject, event))
        if self.work:
            await self.clock.sleep(self.work)

    def times(self, name: str) -> list[float]:
        return [when for when, subject, _ in self.runs if subject == name]


def stats(app: Reactor, name: str) -> dict[str, int]:
    found = app.stats().sources[f"/reactor/timers/{name}"]
    return {key: value for key, value in found.items() if isinstance(value, int)}


async def test_a_thousand_timers_fire_at_their_times_in_order() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    log = Log(clock)
    # Periods of 1.00 s to 1.99 s, ten timers each: their grids interleave, and many
    # due times coincide (ten timers of one period, and k * p of different ones).
    periods = {f"t{i}": 1 + (i % 100) / 100 for i in range(1000)}
    for name, period in periods.items():
        timers.every(app, seconds=period, name=name)(log)
    async with app:
        # One sleeper for all of them, however many timers there are.
        assert clock.pending == 1
        await clock.advance(10)
    expected = sorted(
        (k * period, name)
        for name, period in periods.items()
        for k in range(1, int(10 / period) + 1)
    )
    assert len(log.runs) == len(expected) > 6000
    # Each run started at its due time, in the order of the due times.
    assert [when for when, _, _ in log.runs] == [when for when, _ in expected]
    for when, name, event in log.runs:
        assert scheduled(event) == START + timedelta(seconds=when)
        assert event.data["late"] is False and event.data["missed"] == 0
        assert event.source == f"/reactor/timers/{name}"
    counts = app.stats().sources
    for name, period in periods.items():
        assert log.times(name) == [k * period for k in range(1, int(10 / period) + 1)]
        assert counts[f"/reactor/timers/{name}"]["fired"] == int(10 / period)


async def test_every_kind_of_timer_shares_the_one_scheduler() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    log = Log(clock)
    for i in range(100):
        timers.every(app, seconds=7, name=f"interval{i}")(log)
        timers.cron(app, f"{i % 5}-59/5 * * * *", name=f"cron{i}")(log)
        timers.at(app, START + timedelta(seconds=30 + i), name=f"at{i}")(log)
    async with app:
        assert clock.pending == 1
        await clock.advance(600)
    for i in range(100):
        assert log.times(f"interval{i}") == [7.0 * k for k in range(1, 86)]
        minutes = [m for m in range(i % 5, 11, 5) if m]
        assert log.times(f"cron{i}") == [60.0 * m for m in minutes]
        assert log.times(f"at{i}") == [30.0 + i]
    assert [when for when, _, _ in log.runs] == sorted(when for when, _, _ in log.runs)


async def test_stopping_with_many_timers_and_runs_in_flight_is_prompt() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, graceful_timeout=0)
    log = Log(clock, work=3600)  # every run is still going when the app stops
    for i in range(1000):
        timers.every(app, seconds=1 + (i % 10) / 10, name=f"t{i}")(log)
    async with app:
        await clock.advance(2)
        assert len(log.runs) == 1000  # each timer's first run; the next ones skip it
        stopped_at = clock.monotonic()
    # Nothing waited for virtual time to pass, and nothing is left sleeping.
    assert clock.monotonic() == stopped_at
    assert clock.pending == 0
    counts = app.stats().sources
    assert [counts[f"/reactor/timers/t{i}"]["fired"] for i in range(1000)] == [1] * 1000
    await clock.advance(3600)  # nothing fires once the app has stopped
    assert app.stats().sources == counts


async def test_the_app_starts_again_with_all_its_timers() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    log = Log(clock)
    for i in range(200):
        timers.every(app, seconds=2, name=f"t{i}")(log)
    async with app:
        await clock.advance(3)
    await clock.advance(0.5)
    async with app:  # each grid starts again from the new start, at 3.5 s
        await clock.advance(4)
    for i in range(200):
        assert log.times(f"t{i}") == [2, 5.5, 7.5]


async def test_a_timer_added_while_the_app_runs_wakes_the_sleeping_scheduler() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    log = Log(clock)
    timers.every(app, seconds=3600, name="hourly")(log)
    async with app:
        await clock.advance(10)  # the scheduler sleeps toward 3600 s
        timers.every(app, seconds=1, name="fast")(log)
        await clock.advance(3)
        assert log.times("fast") == [11, 12, 13]
        for i in range(300):  # many more, one every 0.01 s, each on its own grid
            timers.every(app, seconds=5, name=f"later{i}")(log)
            await clock.advance(0.01)
        await clock.advance(10.5)
        assert clock.pending == 1
    assert log.times("hourly") == []
    assert log.times("fast") == [float(s) for s in range(11, 27)]
    for i in range(300):
        added = 13 + i * 0.01
        assert log.times(f"later{i}") == pytest.approx([added + 5, added + 10])


async def test_cancelled_subscriptions_leave_the_other_timers_running() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    log = Log(clock)
    for i in range(100):
        timers.every(app, seconds=1, name=f"t{i}")(log)
    async with app:
        await clock.advance(1)
        for subscription in app.subscriptions[::2]:
            subscription.cancel()
        await clock.advance(2)
    for i in range(100):
        assert log.times(f"t{i}") == ([1.0] if i % 2 == 0 else [1.0, 2.0, 3.0])
        assert stats(app, f"t{i}")["fired"] == 3


async def test_each_timer_keeps_its_own_policies_under_the_shared_scheduler() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, graceful_timeout=0)
    log = Log(clock, work=2.5)
    for i in range(50):
        timers.every(app, seconds=1, name=f"skip{i}")(log)
        timers.every(app, seconds=1, overlap="queue", name=f"queue{i}")(log)
        timers.every(app, seconds=1, overlap="concurrent", name=f"concurrent{i}")(log)
    async with app:
        for _ in range(126):
            await clock.advance(0.1)
    for i in range(50):
        # As each policy does for a single timer (see test_timers.py).
        assert log.times(f"skip{i}") == [1, 4, 7, 10]
        assert stats(app, f"skip{i}")["skipped"] == 8
        assert log.times(f"queue{i}") == [1, 3.5, 6, 8.5, 11]
        assert stats(app, f"queue{i}")["skipped"] == 0
        assert log.times(f"concurrent{i}") == [float(s) for s in range(1, 13)]
        assert stats(app, f"concurrent{i}")["skipped"] == 0


async def test_a_stall_gives_each_timer_one_late_run() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    log = Log(clock)
    for i in range(100):
        timers.every(app, seconds=1, name=f"coalesce{i}")(log)
        timers.every(app, seconds=1, misfire="skip", name=f"skip{i}")(log)
    async with app:
        await clock.advance(2.5)
        await clock.stall(5.2)
        await clock.advance(1)
    for i in range(100):
        assert log.times(f"coalesce{i}") == [1, 2, 7.7, 8]
        late = [e.data for _, name, e in log.runs if name == f"coalesce{i}"][2]
        assert late["late"] is True and late["missed"] == 4
        assert log.times(f"skip{i}") == [1, 2, 8]
        assert stats(app, f"skip{i}")["missed"] == 5


async def test_a_full_queue_backlog_is_bounded_per_timer() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock, graceful_timeout=0)
    log = Log(clock, work=1000)
    for i in range(20):
        timers.every(app, seconds=1, overlap="queue", name=f"q{i}")(log)
    async with app:
        await clock.advance(MAX_BACKLOG + 10)
        assert app.stats().queue.depth <= 20
    for i in range(20):
        counts = stats(app, f"q{i}")
        assert counts["fired"] == 1
        assert counts["coalesced"] == MAX_BACKLOG + 10 - 1 - MAX_BACKLOG


async def test_a_timer_runs_in_one_app_at_a_time() -> None:
    clock = VirtualClock(start=START)
    source = timers.IntervalSource(1, name="shared")
    first, second = Reactor(clock=clock), Reactor(clock=clock)
    first.add_source(source)
    second.add_source(source)
    async with first:
        with pytest.raises(RuntimeError, match="already running"):
            async with second:
                pass
        await clock.advance(1)
    assert source.statistics()["fired"] == 1
    async with second:  # free again once the first app stopped
        await clock.advance(1)
    assert source.statistics()["fired"] == 2
