"""``app.schedules``: list an app's timers with their next fire times, and steer them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reactor import Event, Reactor, ReactorNotRunning
from reactor.sources import timers
from reactor.sources.timers import Schedule, Schedules
from reactor.testing import VirtualClock

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


class Runs:
    def __init__(self, clock: VirtualClock, work: float = 0.0) -> None:
        self.clock = clock
        self.work = work
        self.starts: list[float] = []
        self.data: list[dict[str, object]] = []

    async def __call__(self, event: Event) -> None:
        self.starts.append(self.clock.monotonic())
        self.data.append(event.data)
        if self.work:
            await self.clock.sleep(self.work)


def state(schedule: Schedule) -> tuple[bool, datetime | None]:
    """Whether *schedule* is paused, and its next fire time (read afresh each call)."""
    return schedule.paused, schedule.next_fire_time


def counts(app: Reactor, name: str) -> dict[str, int | str | None]:
    return dict(app.stats().sources[f"/reactor/timers/{name}"])


async def test_the_timers_are_listed_by_name_with_their_next_fire_times() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    app.subscribe("other", Runs(clock), name="not a timer")
    timers.every(app, seconds=10, name="interval")(Runs(clock))
    timers.cron(app, "*/5 * * * *", name="cron")(Runs(clock))
    timers.at(app, at(90), name="once")(Runs(clock))
    timers.every(app, seconds=10, jitter=5, name="jittery")(Runs(clock))
    schedules = app.schedules
    assert isinstance(schedules, Schedules) and len(schedules) == 4
    assert list(schedules) == ["interval", "cron", "once", "jittery"]
    assert [s.kind for s in schedules.values()] == ["interval", "cron", "at", "interval"]
    # The grid of an interval starts with the app: nothing is known before.
    assert [s.next_fire_time for s in schedules.values()] == [None] * 4
    await clock.advance(3)
    async with app:
        assert schedules["interval"].next_fire_time == at(13)
        assert schedules["cron"].next_fire_time == at(300)
        assert schedules["once"].next_fire_time == at(90)
        jittery = schedules["jittery"].next_fire_time
        assert jittery is not None and at(13) <= jittery < at(18)
        await clock.advance(100)
        assert state(schedules["interval"]) == (False, at(113))
        assert state(schedules["once"]) == (False, None)  # fired: nothing left
    assert state(schedules["interval"]) == (False, None)
    assert timers.schedules(app).keys() == schedules.keys()
    with pytest.raises(KeyError, match="no timer named 'nope'"):
        schedules["nope"]


async def test_pause_skips_the_due_times_until_resume_and_keeps_the_grid() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=10, name="ticker")(runs)
    schedule = app.schedules["ticker"]
    async with app:
        await clock.advance(15)
        schedule.pause()
        assert state(schedule) == (True, None)
        await clock.advance(27)  # 20, 30 and 40 pass while paused
        schedule.resume()
        assert state(schedule) == (False, at(50))
        await clock.advance(20)
    assert runs.starts == [10, 50, 60]
    assert not any(d["late"] or d["missed"] for d in runs.data)
    assert counts(app, "ticker")["missed"] == 0


async def test_a_timer_paused_before_the_app_starts_starts_paused() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    timers.every(app, seconds=10, name="ticker")(runs)
    app.schedules["ticker"].pause()
    async with app:
        await clock.advance(35)
        assert runs.starts == []
        app.schedules["ticker"].resume()
        await clock.advance(10)
    assert runs.starts == [40]
    async with app:  # resumed for good
        await clock.advance(10)
    assert runs.starts == [40, 55]


async def test_paused_cron_and_one_shot_timers() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    cron, once = Runs(clock), Runs(clock)
    timers.cron(app, "* * * * *", name="cron")(cron)
    timers.at(app, at(90), name="once")(once)
    async with app:
        app.schedules["cron"].pause()
        app.schedules["once"].pause()
        await clock.advance(150)
        app.schedules["cron"].resume()
        app.schedules["once"].resume()  # its time passed while paused: it fires now, late
        await clock.advance(60)
    assert cron.starts == [180]
    assert once.starts == [150]
    assert once.data[0]["late"] is True and once.data[0]["scheduled"] == "2026-01-01T00:01:30Z"


async def test_remove_stops_a_timer_for_good_and_cancels_its_subscription() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs, other = Runs(clock), Runs(clock)
    timers.every(app, seconds=10, name="gone")(runs)
    timers.every(app, seconds=10, name="stays")(other)
    async with app:
        await clock.advance(15)
        schedule = app.schedules["gone"]
        schedule.remove()
        assert schedule.removed and schedule.next_fire_time is None
        assert list(app.schedules) == ["stays"]
        await clock.advance(20)
        with pytest.raises(ReactorNotRunning, match="removed"):
            schedule.run_now()
        schedule.resume()  # no effect on a removed timer
    async with app:
        await clock.advance(20)
    assert runs.starts == [10]
    assert other.starts == [10, 20, 30, 45, 55]
    assert [s.name for s in app.subscriptions] == ["stays"]
    assert counts(app, "gone")["fired"] == 1  # still counted among the app's sources


async def test_run_now_runs_off_the_schedule_through_the_overlap_policy() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock, work=5)
    timers.every(app, seconds=3600, name="hourly")(runs)
    schedule = app.schedules["hourly"]
    with pytest.raises(ReactorNotRunning, match="not running"):
        schedule.run_now()
    async with app:
        await clock.advance(100)
        schedule.run_now()
        await clock.advance(1)
        schedule.run_now()  # the first is still running: skipped (overlap="skip")
        await clock.advance(10)
        schedule.pause()
        schedule.run_now()  # a paused timer runs when told to
        assert schedule.next_fire_time is None
        schedule.resume()
        assert schedule.next_fire_time == at(3600)  # the grid did not move
        await clock.advance(3600)
    assert runs.starts == [100, 111, 3600]
    assert runs.data[0] == {
        "kind": "interval",
        "scheduled": "2026-01-01T00:01:40Z",
        "late": False,
        "missed": 0,
    }
    assert (counts(app, "hourly")["fired"], counts(app, "hourly")["skipped"]) == (3, 1)


async def test_many_timers_paused_and_resumed() -> None:
    clock = VirtualClock(start=START)
    app = Reactor(clock=clock)
    runs = Runs(clock)
    for i in range(1000):
        timers.every(app, seconds=1, name=f"t{i}")(runs)
    async with app:
        await clock.advance(1)
        for name, schedule in app.schedules.items():
            if int(name[1:]) % 2:
                schedule.pause()
        await clock.advance(2.5)
        assert len(runs.starts) == 1000 + 2 * 500
        for schedule in app.schedules.values():
            schedule.resume()
        await clock.advance(1)
    assert len(runs.starts) == 1000 + 2 * 500 + 1000
    assert runs.starts[-1000:] == [4.0] * 1000


async def test_the_schedule_api() -> None:
    app = Reactor(clock=VirtualClock(start=START))
    timers.every(app, seconds=1, name="t")(Runs(VirtualClock()))
    schedule = app.schedules["t"]
    assert isinstance(schedule, Schedule)
    assert (schedule.name, schedule.kind, schedule.paused, schedule.removed) == (
        "t",
        "interval",
        False,
        False,
    )
    assert schedule.timer is app.sources[0]
    assert repr(schedule) == "<Schedule 't' interval next=None>"
    assert repr(app.schedules) == "<Schedules of 1 timer(s)>"
    schedule.pause()
    schedule.pause()  # idempotent
    assert repr(schedule) == "<Schedule 't' interval paused next=None>"
